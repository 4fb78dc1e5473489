"""A real submission leaves one decision line per component, each naming the message as
``swctl trace`` shows it; and no password reaches any log of the stack."""

from __future__ import annotations

import base64
import json
import poplib
import secrets
import smtplib
from pathlib import Path

import pytest

from singlewindow import cli, logs
from singlewindow.config import Config
from tests.support import factory
from tests.support.clients import swaks, tls_context
from tests.support.world import Party, World, message, message_id, wait_until, world_fixture

world = world_fixture(("co", "company"), ("ag", "agency"))


def trace(config: Config, ident: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert cli.main(["--state-dir", str(config.paths.state_dir), "trace", ident, "--json"]) == 0
    found: dict[str, object] = json.loads(capsys.readouterr().out)
    return found


def decisions(config: Config, daemon: str) -> list[dict[str, str]]:
    text = (config.paths.log_dir / f"{daemon}.log").read_text(errors="replace")
    return [logs.parse(line) for line in text.splitlines() if " event=" in line]


def lines_about(config: Config, daemon: str, **wanted: str) -> list[dict[str, str]]:
    return [d for d in decisions(config, daemon)
            if all(d.get(k) == v for k, v in wanted.items())]


def expect(config: Config, daemon: str, **wanted: str) -> dict[str, str]:
    """The first decision line of ``daemon`` with these fields (waiting for it)."""
    wait_until(lambda: bool(lines_about(config, daemon, **wanted)))
    return lines_about(config, daemon, **wanted)[0]


def test_each_component_logs_its_decision_with_the_trace_ids(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    co, ag, config = world["co"], world["ag"], world.config
    subject = "logged " + secrets.token_hex(4)
    data = message(co, ag.logical, subject, factory.gendec())
    assert world.submit(co, [ag.logical], data) == {}
    assert ag.sink.wait_for(lambda r: f"Subject: {subject}".encode() in r.data)
    found = trace(config, message_id(data), capsys)
    sw_id, queue_id = str(found["id"]), str(found["queue_id"])
    assert sw_id.startswith("SW") and queue_id

    policy = expect(config, "policyd", event="policy", queue_id=queue_id)
    assert policy["action"] == "accept" and policy["listener"] == "mta"
    assert policy["recipient"] == ag.logical and policy["sw_id"] == "-"
    milter = expect(config, "milter", event="milter", sw_id=sw_id)
    assert milter["queue_id"] == queue_id and milter["action"] == "accept"
    assert milter["party"] == co.name
    recipient = expect(config, "transport", event="recipient", sw_id=sw_id)
    assert recipient["queue_id"] == queue_id and recipient["action"] == "accept"
    assert recipient["reply"].startswith("250 2.0.0 Delivered to Single Window as " + sw_id)
    copy = expect(config, "transport", event="copy", sw_id=sw_id)
    assert copy["destination"] == ag.logical and copy["state"] == "injected"
    [forward] = found["forwards"]  # type: ignore[misc]
    assert copy["copy"] == forward["copy_message_id"]
    dsn = expect(config, "transport", event="dsn", sw_id=sw_id)
    assert dsn["kind"] == "delivered" and dsn["to"] == co.logical and dsn["state"] == "sent"


def _encodings(login: str, password: str) -> list[str]:
    """The password as it travels in each SASL mechanism the hub offers (RFC 4616 PLAIN,
    the LOGIN draft's base64), and bare."""
    return [password, base64.b64encode(password.encode()).decode(),
            base64.b64encode(f"\0{login}\0{password}".encode()).decode(),
            base64.b64encode(f"{login}\0{login}\0{password}".encode()).decode()]


def _every_log(config: Config) -> dict[Path, str]:
    return {path: path.read_text(errors="replace")
            for path in config.paths.log_dir.rglob("*") if path.is_file()}


def test_a_mail_client_session_leaves_no_password_in_any_log(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    config, ag = world.config, world["ag"]
    client: Party = world.add_mail_client("mc")
    wrong = "wrong-" + secrets.token_urlsafe(9)
    server = f"{config.listeners.bind}:{config.listeners.msa_port}"
    # The submission (PLAIN, smtplib's choice), then each other mechanism up to RCPT,
    # and a wrong password.
    data = message(client, ag.logical, "clerk " + secrets.token_hex(4), factory.gendec())
    with smtplib.SMTP_SSL(config.listeners.bind, config.listeners.msa_port, timeout=30,
                          context=tls_context(config)) as smtp:
        smtp.login(client.login, client.password)
        assert smtp.sendmail(client.physical, [ag.logical], data) == {}
    for mechanism in ("DIGEST-MD5", "LOGIN"):
        result = swaks("--server", server, "--tlsc", "--auth", mechanism, "--auth-user",
                       client.login, "--from", client.physical, "--to", ag.logical,
                       "--quit-after", "RCPT", password=client.password)
        assert "235 2.7.0" in result.stdout, result.stdout
    result = swaks("--server", server, "--tlsc", "--auth", "PLAIN", "--auth-user",
                   client.login, "--quit-after", "AUTH", password=wrong)
    assert "535 5.7.8" in result.stdout, result.stdout
    # POP3: USER/PASS after STLS.
    session = poplib.POP3(config.listeners.bind, config.listeners.pop3_port, timeout=30)
    session.stls(tls_context(config))
    session.user(client.login)
    session.pass_(client.password)
    session.quit()

    sw_id = str(trace(config, message_id(data), capsys)["id"])
    policy = expect(config, "policyd", event="policy", listener="msa", login=client.login,
                    state="END-OF-MESSAGE")
    assert policy["action"] == "accept"
    assert expect(config, "milter", event="milter", sw_id=sw_id)["login"] == client.login
    expect(config, "transport", event="recipient", sw_id=sw_id)

    secrets_ = [*_encodings(client.login, client.password), *_encodings(client.login, wrong),
                (config.stamp_key_file.read_text().strip())]
    for path, text in _every_log(config).items():
        for secret in secrets_:
            assert secret not in text, f"{path} holds a credential"
