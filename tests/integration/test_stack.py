"""swctl stack: up is idempotent, status tells the truth, down stops what up started."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import smtplib
import ssl
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from singlewindow import stack
from singlewindow.config import Config, Console, Listeners, Metrics
from tests.support.local import free_port, short_state_dir
from tests.support.world import wait_until


def swctl(config: Config, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "singlewindow.cli", "--state-dir",
                           str(config.paths.state_dir), *argv],
                          capture_output=True, text=True, timeout=120, check=False)


def test_status_lists_every_component_running(sw_stack: Config) -> None:
    result = swctl(sw_stack, "stack", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    names = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert names == ["postgresql", "postfix", "dovecot", "supervisor", "policyd", "transport",
                     "milter", "metrics", "console"]
    assert all("running pid" in line for line in result.stdout.splitlines())
    # The console with the URL a browser opens; the others have none to show.
    host, port = sw_stack.console.address
    assert result.stdout.splitlines()[-1].split("\t")[2] == f"https://{host}:{port}/"
    assert all(line.count("\t") == 1 for line in result.stdout.splitlines()[:-1])


def test_the_console_serves_https_with_the_stacks_certificate(sw_stack: Config) -> None:
    """The stack's certificate (issued by its own CA for 127.0.0.1 and localhost) is the
    console's: a client that trusts DIR/tls/ca.pem verifies it by either name."""
    _, port = sw_stack.console.address
    context = ssl.create_default_context(cafile=str(sw_stack.ca_file))
    for host in ("127.0.0.1", "localhost"):
        client = http.client.HTTPSConnection(host, port, timeout=30, context=context)
        try:
            client.request("GET", "/login")
            response = client.getresponse()
            assert response.status == 200
            assert "Strict-Transport-Security" in response.headers
        finally:
            client.close()


def test_demo_credentials_hold_the_operator_who_logs_in(sw_stack: Config) -> None:
    """``up --demo``: the console's operator, its password beside the mail client's in
    the 0600 file; the console takes it (POST /api/session)."""
    credentials = sw_stack.paths.demo_credentials
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    fields = dict(line.split("=", 1) for line in credentials.read_text().split())
    assert fields["login"] == "brightline" and fields["operator"] == "operator"
    assert fields["operator_password"] != fields["password"]
    _, port = sw_stack.console.address
    context = ssl.create_default_context(cafile=str(sw_stack.ca_file))
    client = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    try:
        client.request("POST", "/api/session", json.dumps(
            {"login": "operator", "password": fields["operator_password"]}),
            {"Content-Type": "application/json"})
        response = client.getresponse()
        body = json.loads(response.read())
    finally:
        client.close()
    assert response.status == 200, body
    assert (body["kind"], body["login"]) == ("operator", "operator")


def test_up_again_restarts_nothing(sw_stack: Config) -> None:
    before = dict(stack.status(sw_stack.paths.state_dir))
    result = swctl(sw_stack, "stack", "up", "--demo")
    assert result.returncode == 0, result.stderr
    assert dict(stack.status(sw_stack.paths.state_dir)) == before


def test_system_configuration_untouched(sw_stack: Config) -> None:
    assert not Path("/etc/postfix/main.cf").exists() or \
        str(sw_stack.paths.state_dir) not in Path("/etc/postfix/main.cf").read_text()
    assert str(sw_stack.paths.state_dir) not in Path("/etc/dovecot/dovecot.conf").read_text()


def _processes() -> dict[int, tuple[int, str]]:
    """Every live process: pid → (parent pid, start time), zombies left out."""
    found: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            found[int(entry.name)] = (int(fields[1]), fields[19])
    return found


def _trees(roots: list[int]) -> set[tuple[int, str]]:
    """The processes under ``roots``, roots included, each as (pid, start time)."""
    processes = _processes()
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in processes:
            found.add((pid, processes[pid][1]))
            todo += [child for child, (parent, _) in processes.items() if parent == pid]
    return found


def test_down_stops_exactly_what_up_started() -> None:
    state = short_state_dir()
    base = replace(Config(), listeners=Listeners(
        mta_port=free_port(), msa_port=free_port(), pop3_port=free_port(),
        pop3s_port=free_port(), reinject_port=free_port()),
        metrics=Metrics(listen=f"127.0.0.1:{free_port()}"),
        console=Console(listen=f"127.0.0.1:{free_port()}"))
    try:
        stack.up(state, base=base, say=lambda _: None)
        # One daemon restarted by the supervisor, so down meets it as well.
        killed = dict(stack.status(state))["transport"]
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: dict(stack.status(state))["transport"] not in (None, killed))
        pids = dict(stack.status(state))
        assert all(pids.values()), pids
        started = _trees([pid for pid in pids.values() if pid is not None])
        assert len(started) > len(pids)  # Postfix, Dovecot and PostgreSQL have children
        stack.down(state, say=lambda _: None)
        assert all(pid is None for pid in dict(stack.status(state)).values())
        left = {(pid, start) for pid, (_, start) in _processes().items()} & started
        assert not left, f"still running after down: {sorted(left)}"
    finally:
        stack.down(state, say=lambda _: None)
        shutil.rmtree(state, ignore_errors=True)


def test_a_config_written_before_up_need_only_move_the_ports() -> None:
    """Issue 14: an operator writes singlewindow.toml with other ports before the first
    ``up``; the stack, its daemons and swctl find the stack's own database socket."""
    state = short_state_dir()
    ports = {name: free_port() for name in ("mta_port", "msa_port", "pop3_port",
                                            "pop3s_port", "reinject_port")}
    text = "[listeners]\n" + "".join(f"{k} = {v}\n" for k, v in ports.items())
    # The exporter's and the console's ports too: never the defaults another stack holds.
    text += (f'[metrics]\nlisten = "127.0.0.1:{free_port()}"\n'
             f'[console]\nlisten = "127.0.0.1:{free_port()}"\n')
    (state / "singlewindow.toml").write_text(text)
    try:
        config = stack.up(state, say=lambda _: None)
        assert config.listeners.mta_port == ports["mta_port"]
        assert (state / "singlewindow.toml").read_text() == text  # the operator's, as written
        added = swctl(config, "party", "add", "acme", "--kind", "company")
        assert added.returncode == 0, added.stderr
        # The policy daemon reads the directory: an unknown peer is refused (5.7.1), not
        # deferred because the database is unreachable (451 4.3.0).
        with smtplib.SMTP(config.listeners.bind, ports["mta_port"], timeout=30) as client:
            client.ehlo("test.example")
            assert client.mail("x@acme.example")[0] == 250
            code, text_ = client.rcpt("acme@sw.test")
        assert code == 554 and b"5.7.1" in text_, (code, text_)
    finally:
        stack.down(state, say=lambda _: None)
        shutil.rmtree(state, ignore_errors=True)
