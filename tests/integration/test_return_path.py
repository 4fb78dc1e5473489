"""Responses back to companies, POP3 maildrops with the seed's delivery lock, and
agency-leg DSNs, on the real Postfix, Dovecot and PostgreSQL (issue 5)."""

from __future__ import annotations

import base64
import email
import poplib
import secrets
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from singlewindow import stack
from singlewindow.config import Config
from singlewindow.store import connect, messages
from tests.support import factory
from tests.support.local import free_port
from tests.support.pop3 import REMOTE, logged_in, maildrop_messages
from tests.support.sinks import Received, delivery_status, dsn_about
from tests.support.world import Party, World, faulty_transport, message, wait_until


@pytest.fixture(scope="module")
def world(sw_stack: Config) -> Iterator[World]:
    with World(sw_stack) as world:
        world.add("co", "company")
        world.add_mail_client("mc")
        world.add_mail_client("mc2")
        world.add_mail_client("mc3")
        world.add("ag", "agency")
        world.add("agbad", "agency", refuse="550 5.1.1 No such mailbox here")
        world.add("agdown", "agency", relay_port=free_port())
        yield world


def subject() -> str:
    return "resp " + secrets.token_hex(6)


def respond(world: World, to: Party, subj: str, headers: list[str] | None = None) -> None:
    ag = world["ag"]
    data = message(ag, to.logical, subj, factory.declaration_response(), headers=headers)
    assert world.submit(ag, [to.logical], data) == {}


def maildrop_files(config: Config, client: Party) -> list[Path]:
    root = config.paths.maildrop_dir / client.login / "Maildir"
    return [p for d in ("new", "cur") if (root / d).is_dir() for p in (root / d).iterdir()]


def test_response_reaches_mta_company_with_logical_addresses(world: World) -> None:
    co, ag = world["co"], world["ag"]
    subj = subject()
    respond(world, co, subj)
    [copy] = co.sink.wait_for(lambda r: subj.encode() in r.data)
    assert copy.mail_from == ag.logical
    assert copy.rcpt_tos == [co.physical]
    assert ag.physical not in copy.data.decode() and ag.peer not in copy.data.decode()
    assert copy.message["From"].addresses[0].addr_spec == ag.logical


def test_response_into_maildrop_fetched_with_pop3_and_curl(world: World) -> None:
    mc, ag = world["mc"], world["ag"]
    subj = subject()
    respond(world, mc, subj)
    wait_until(lambda: any(subj.encode() in m for m in maildrop_messages(world.config, mc)),
               timeout=60)
    [fetched] = [m for m in maildrop_messages(world.config, mc) if subj.encode() in m]
    text = fetched.decode()
    assert ag.physical not in text and ag.peer not in text
    assert f"From: <{ag.logical}>" in text
    payload = text.split("\r\n\r\n", 1)[1]
    assert b"DeclarationResponse" in base64.b64decode(payload)
    # The same maildrop over POP3S with curl (password from stdin, never argv).
    result = subprocess.run(
        ["curl", "-sS", "--cacert", str(world.config.cert_file), "--config", "-",
         "--interface", REMOTE, f"pop3s://127.0.0.1:{world.config.listeners.pop3s_port}/1"],
        input=f'user = "{mc.login}:{mc.password}"\n', capture_output=True, text=True,
        timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "Subject: resp " in result.stdout and ag.physical not in result.stdout


def test_maildrop_locked_while_pop3_session_is_open(world: World) -> None:
    mc2 = world["mc2"]
    config = world.config
    respond(world, mc2, subject())  # creates the Maildir
    wait_until(lambda: len(maildrop_files(config, mc2)) == 1, timeout=60)
    session = logged_in(config, mc2)  # TRANSACTION state: holds the maildrop
    try:
        # A second session is refused while the first lives (R3.2).
        with pytest.raises(poplib.error_proto, match=r"IN-USE"):
            logged_in(config, mc2)
        subj = subject()
        respond(world, mc2, subj)
        log = config.paths.log_dir / "postfix.log"
        wait_until(lambda: f"to=<{mc2.logical}>" in log.read_text()
                   and "4.2.1" in log.read_text(), timeout=60)
        assert len(maildrop_files(config, mc2)) == 1  # nothing delivered meanwhile
    finally:
        session.quit()
    world.flush()
    wait_until(lambda: len(maildrop_files(config, mc2)) == 2, timeout=60)
    fetched = maildrop_messages(config, mc2)
    assert sum(subj.encode() in m for m in fetched) == 1


@pytest.mark.parametrize(("fault", "fetched"), [
    ("after-inject", False), ("after-inject", True), ("after-record", False)])
def test_crash_after_maildrop_delivery_delivers_exactly_once(world: World, fault: str,
                                                             fetched: bool) -> None:
    """kill -9 of the transport between dovecot-lda and its bookkeeping or its reply to
    Postfix (SPEC D4): Postfix retries, and the maildrop gets the copy once, also when
    the company fetched and deleted it before the retry."""
    config, mc3 = world.config, world["mc3"]
    subj = subject()

    def mine() -> list[Path]:
        return [f for f in maildrop_files(config, mc3) if subj.encode() in f.read_bytes()]

    with faulty_transport(config, fault) as faulty:
        respond(world, mc3, subj)
        assert faulty.wait(timeout=60) == -signal.SIGKILL
    [copy] = mine()
    copy_id = email.message_from_bytes(copy.read_bytes())["Message-ID"]
    if fetched:  # what a POP3 DELE does
        copy.unlink()
    stack.up(config.paths.state_dir, say=lambda _: None)  # restarts the transport
    world.flush()

    def recorded() -> bool:
        with connect(config.database) as conn:
            rows = conn.execute("SELECT state FROM forward WHERE copy_message_id = %s",
                                (copy_id,)).fetchall()
        return [r["state"] for r in rows] == ["injected"]

    # The retry is done when the agency has the "delivered" DSN of its response: the
    # transport answers Postfix only after delivering and recording.
    [report] = world["ag"].sink.wait_for(lambda r: dsn_about(r, subj))
    assert [s["action"] for s in delivery_status(report)] == ["delivered"]
    assert recorded()
    assert len(mine()) == (0 if fetched else 1)


def test_dele_then_quit_removes_and_dropped_connection_keeps(world: World) -> None:
    mc = world["mc"]
    config = world.config
    subj = subject()
    respond(world, mc, subj)
    wait_until(lambda: any(subj.encode() in m for m in maildrop_messages(config, mc)), 60)
    before = len(maildrop_messages(config, mc))
    # DELE, then the connection drops without QUIT: no UPDATE state, nothing removed.
    session = logged_in(config, mc)
    session.dele(1)
    session.sock.shutdown(socket.SHUT_RDWR)
    session.sock.close()
    wait_until(lambda: _can_login(config, mc), timeout=30)
    assert len(maildrop_messages(config, mc)) == before
    # DELE, then QUIT: removed in UPDATE.
    session = logged_in(config, mc)
    session.dele(1)
    assert session.quit().startswith(b"+OK")
    assert len(maildrop_messages(config, mc)) == before - 1


def _can_login(config: Config, client: Party) -> bool:
    try:
        logged_in(config, client).quit()
    except poplib.error_proto:
        return False
    return True


def _agency_failure(world: World, role: str, timeout: float) -> tuple[Received, str]:
    co, target = world["co"], world[role]
    subj = "decl " + secrets.token_hex(6)
    assert world.submit(co, [target.logical],
                        message(co, target.logical, subj, factory.gendec())) == {}
    found = co.sink.wait_for(
        lambda r: b"X-SingleWindow-Notice: agency-dsn" in r.data
        and target.logical.encode() in r.data, timeout=timeout)
    assert len(found) == 1, f"expected one agency-leg failure DSN for {role}"
    return found[0], subj


@pytest.mark.parametrize("role,timeout", [("agbad", 60), ("agdown", 120)])
def test_agency_leg_failure_reaches_submitter_as_dsn(world: World, role: str,
                                                     timeout: float) -> None:
    target = world[role]
    report, _ = _agency_failure(world, role, timeout)
    [status] = delivery_status(report)
    assert status["action"] == "failed"
    assert status["final-recipient"].endswith(target.logical)
    assert report.mail_from in ("", "<>")
    assert report.rcpt_tos == [world["co"].physical]
    text = report.data.decode("utf-8", "replace")
    for party in world.parties.values():
        if party is not world["co"]:
            assert party.physical not in text
    # The agency's MTA is not named either (Single Window's own Received lines may be).
    assert "127.0.0.1" not in status.get("diagnostic-code", "")
    swid = text.split("X-SingleWindow-Message: ", 1)[1].split()[0]
    with connect(world.config.database) as conn:
        found = messages.trace(conn, swid)
    assert found is not None
    kinds = [e["kind"] for e in found["events"]]
    assert "agency-dsn" in kinds and "agency-failure-reported" in kinds


def test_response_threads_under_the_companys_own_message_id(world: World) -> None:
    co, ag = world["co"], world["ag"]
    subj = "decl " + secrets.token_hex(6)
    data = message(co, ag.logical, subj, factory.gendec())
    original_id = data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
    assert world.submit(co, [ag.logical], data) == {}
    [copy] = ag.sink.wait_for(lambda r: subj.encode() in r.data)
    copy_id = copy.message["Message-ID"]
    assert copy_id != original_id
    answer = subject()
    respond(world, co, answer, headers=[f"In-Reply-To: {copy_id}", f"References: {copy_id}"])
    [response] = co.sink.wait_for(lambda r: answer.encode() in r.data)
    assert response.message["In-Reply-To"] == original_id
    assert response.message["References"] == original_id
    # The agency still gets its own "delivered" DSN: a response that names a copy in
    # In-Reply-To is not mistaken for a report about that copy.
    [dsn] = ag.sink.wait_for(lambda r: dsn_about(r, answer))
    assert [s["action"] for s in delivery_status(dsn)] == ["delivered"]

