"""``swctl trace`` shows every step of a message (issue 14): the DSN back to the
submitter, whichever path delivers it; each wait for a POP3 session's maildrop lock;
the type of a message the MIG refused. Real Postfix, Dovecot, PostgreSQL and clients."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from typing import Any

from singlewindow.config import Config
from singlewindow.store import connect
from tests.support import factory
from tests.support.clients import msa
from tests.support.pop3 import logged_in
from tests.support.sinks import dsn_about
from tests.support.world import Party, World, message, message_id, wait_until, world_fixture

world = world_fixture(("co", "company"), ("ag", "agency"))


def subject() -> str:
    return "trace " + secrets.token_hex(6)


def swctl(config: Config, *argv: str) -> str:
    result = subprocess.run([sys.executable, "-m", "singlewindow.cli", *argv, "--state-dir",
                             str(config.paths.state_dir)],
                            capture_output=True, text=True, check=True, timeout=60)
    return result.stdout


def trace(config: Config, ident: str) -> str:
    return swctl(config, "trace", ident)


def traced(config: Config, ident: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(swctl(config, "trace", ident, "--json"))
    return found


def submit(world: World, sender: Party, to: Party, body: bytes, **kwargs: Any) -> str:
    """Submit as ``sender``'s MTA and wait for its DSN; the submission's Message-ID."""
    subj = subject()
    data = message(sender, to.logical, subj, body, **kwargs)
    assert world.submit(sender, [to.logical], data) == {}
    assert sender.sink.wait_for(lambda r: dsn_about(r, subj))
    return message_id(data)


def test_the_delivered_dsn_back_to_an_mta_company(world: World) -> None:
    co, ag = world["co"], world["ag"]
    mid = submit(world, co, ag, factory.gendec())
    shown = re.compile(
        rf"\n  DSN back to the submitter {re.escape(co.logical)} \(injected at "
        r"[0-9:]{8}, queue id (\w+), Message-ID <SWN\w+@sw\.test>\)\n"
        rf"    postfix: to=<{re.escape(co.logical)}> status=sent dsn=2\.0\.0 ")
    wait_until(lambda: shown.search(trace(world.config, mid)) is not None, timeout=60)
    text = trace(world.config, mid)
    # The submission's own leg into the transport, where the "delivered" DSN began.
    assert re.search(rf"\n  in Postfix as \w+:\n    postfix: to=<{re.escape(ag.logical)}> "
                     r"status=sent dsn=2\.0\.0 relay=[^\n]*Delivered to Single Window", text)
    assert co.physical not in text


def test_postfixs_failure_dsn_back_to_an_mta_company(world: World) -> None:
    co, ag = world["co"], world["ag"]
    mid = submit(world, co, ag, b"PNG", content_type="image/png")
    shown = re.compile(
        rf"\n    postfix: to=<{re.escape(ag.logical)}> status=bounced dsn=5\.6\.1 [^\n]*\n"
        r"    postfix: sender non-delivery notification: (\w+)\n"
        rf"      postfix: to=<{re.escape(co.logical)}> status=sent dsn=2\.0\.0 [^\n]*"
        rf"Delivered to {re.escape(co.logical)}\)\n"
        rf"  DSN back to the submitter {re.escape(co.logical)} \(injected at [^\n]*\n"
        rf"    postfix: to=<{re.escape(co.logical)}> status=sent ")
    wait_until(lambda: shown.search(trace(world.config, mid)) is not None, timeout=60)
    found = traced(world.config, mid)
    [notified] = found["postfix"]["notifications"]
    assert notified["what"] == "sender non-delivery notification"
    assert [n["kind"] for n in found["notices"]] == ["dsn"]


def test_a_message_the_mig_refused_shows_its_type(world: World) -> None:
    co, ag = world["co"], world["ag"]
    broken = factory.gendec().replace(b"<Flag>PA</Flag>", b"<Flag>Panama</Flag>")
    mid = submit(world, co, ag, broken)
    text = trace(world.config, mid)
    assert ", type GENDEC-1, " in text
    assert re.search(rf"\n  control message to {re.escape(co.logical)}, into Postfix "
                     r"\(injected at ", text)
    swid = traced(world.config, mid)["id"]
    assert re.search(rf" {swid} mta {re.escape(co.name)} <[^>]*> type=GENDEC-1 ",
                     swctl(world.config, "log"))


def deferrals(config: Config, login: str) -> list[dict[str, Any]]:
    with connect(config.database) as conn:
        rows: list[dict[str, Any]] = conn.execute(
            "SELECT message_id, detail FROM event WHERE kind = 'maildrop-deferred'"
            " AND detail->>'login' = %s ORDER BY id", (login,)).fetchall()
    return rows


def test_a_pop3_session_holding_the_maildrop_shows_as_deferrals(world: World) -> None:
    """A mail client logged in over POP3 holds its maildrop (SPEC R3.2): the agency's
    answer to it and the DSN back about its own submission wait, each wait is in the
    trace, and both arrive once the session ends."""
    config, ag = world.config, world["ag"]
    mc = world.add_mail_client("mc")
    answer = message(ag, mc.logical, subject(), factory.declaration_response())
    own = message(mc, ag.logical, subject(), factory.gendec())
    session = logged_in(config, mc)
    try:
        assert world.submit(ag, [mc.logical], answer) == {}
        with msa(config) as client:
            client.login(mc.login, mc.password)
            assert client.sendmail(mc.physical, [ag.logical], own) == {}
        wait_until(lambda: {d["detail"]["leg"] for d in deferrals(config, mc.login)}
                   >= {"copy", "notice"}, timeout=60)
        for d in deferrals(config, mc.login):
            assert d["detail"]["recipient"] == mc.logical
            assert d["detail"]["status"] == "4.2.1"
        waiting = trace(config, message_id(answer))
        assert re.search(r"\n  [0-9:.]{15} maildrop-deferred \{[^\n]*\"leg\": \"copy\", "
                         rf"\"login\": \"{mc.login}\", [^\n]*\"status\": \"4\.2\.1\"\}}",
                         waiting)
        assert re.search(rf"\n  copy to {re.escape(mc.logical)} \(pending, queue id -, "
                         r"[^\n]*deferred \d+x: a POP3 session held the maildrop", waiting)
        own_trace = trace(config, message_id(own))
        assert "maildrop-deferred" in own_trace and '"leg": "notice"' in own_trace
    finally:
        session.quit()
    # The session ended: both are delivered, and the trace keeps the waits.
    saved = re.compile(r"\(saved into the POP3 maildrop at [0-9:]{8}[^\n]*deferred \d+x")
    wait_until(lambda: saved.search(trace(config, message_id(answer))) is not None, 60)
    wait_until(lambda: re.search(
        rf"\n  DSN back to the submitter {re.escape(mc.logical)} \(saved into the POP3 "
        r"maildrop at [0-9:]{8}, [^\n]*deferred \d+x", trace(config, message_id(own)))
        is not None, 60)
