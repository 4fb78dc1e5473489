"""Issue 10: a terminal answer for every input. Through the real LMTP server and store
(the ``transport`` fixture, :mod:`tests.support.transport`): inputs that once deferred
forever (4.3.0 until the queue lifetime) now get a precise 2xx or 5xx per recipient."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import psycopg.errors
import pytest
from psycopg_pool import ConnectionPool, PoolTimeout

from singlewindow import origin, store
from singlewindow.config import OWNER_ROLE, Config
from singlewindow.transport import terminal, translate
from singlewindow.transport.forward import InjectError, Injector
from tests.support import factory
from tests.support.local import free_port, lmtp_send
from tests.support.sinks import Sink
from tests.support.transport import KEY, D, stamped

HEADERS = "From: <edi@acme.example>\r\nTo: <customs@sw.test>\r\nContent-Type: application/xml"


def submission(headers: str, body: bytes, swid: str | None = None, party: str = "acme",
               peer: str = "10.1.0.5") -> bytes:
    """A stamped submission with exactly the given headers (CRLF-separated lines)."""
    stamp = origin.Origin(swid or origin.new_message_id(), "mta", party, peer, "", "Q1")
    return (f"{origin.HEADER}: {stamp.signed(KEY)}\r\n{headers}\r\n\r\n").encode() + body


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


# --- a. RFC 5322 groups -------------------------------------------------------------------

def test_empty_group_is_forwarded(transport: tuple[Config, Sink],
                                  caplog: pytest.LogCaptureFixture) -> None:
    config, sink = transport
    data = submission("From: <edi@acme.example>\r\nTo: undisclosed-recipients:;\r\n"
                      "Subject: bcc only\r\nContent-Type: application/xml", factory.gendec())
    [(code, text)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], data)
    assert (code, text[:15]) == (250, b"2.0.0 Delivered")
    [copy] = sink.wait_for(lambda r: True, timeout=10)
    assert copy.message["To"] == "undisclosed-recipients:;"
    no_tracebacks(caplog)


def test_group_members_are_translated(transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    data = submission("From: Acme EDI <edi@acme.example>\r\n"
                      f"To: Authorities: in@customs.example, \"C\" <customs@{D}>;, "
                      "edi@acme.example\r\nCc: (a comment) Empty:;\r\n"
                      "Content-Type: application/xml", factory.gendec())
    [(code, _)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], data)
    assert code == 250
    [copy] = sink.wait_for(lambda r: True, timeout=10)
    raw_to = translate.header(copy.data, "to")
    assert raw_to == f'Authorities: <customs@{D}>, "C" <customs@{D}>;, <acme@{D}>'
    assert translate.header(copy.data, "cc") == "Empty:;"
    [group, single] = copy.message["To"].groups
    assert group.display_name == "Authorities"
    assert [a.addr_spec for a in group.addresses] == [f"customs@{D}"] * 2
    assert single.addresses[0].addr_spec == f"acme@{D}"
    assert b"physical" not in copy.data and b"in@customs.example" not in copy.data


@pytest.mark.parametrize(("to", "shown"), [
    ("Group: stranger@elsewhere.example;", "<stranger@elsewhere.example> in header To"),
    ("Group: in@customs.example, <>;", "<<>> in header To"),
    ("in@customs.example, not an address", "<not an address> in header To"),
])
def test_unknown_or_unreadable_group_member_is_refused(
        transport: tuple[Config, Sink], to: str, shown: str) -> None:
    config, sink = transport
    data = submission(f"From: <edi@acme.example>\r\nTo: {to}\r\n"
                      "Content-Type: application/xml", factory.gendec())
    [(code, text)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], data)
    assert (code, text[:6]) == (554, b"5.1.0 ")
    assert shown.encode() in text and b"unknown to Single Window" in text
    assert sink.received == []


# --- b. an 8-bit Message-ID in a MIG-invalid message ---------------------------------------

def test_control_message_for_8bit_message_id(transport: tuple[Config, Sink],
                                             caplog: pytest.LogCaptureFixture) -> None:
    config, sink = transport
    data = submission("From: <edi@acme.example>\r\nTo: <customs@sw.test>\r\n"
                      "Message-ID: <caf\xe9-1@acme.example>\r\nContent-Type: application/xml",
                      factory.gendec(imo="x"))
    [(code, text)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], data)
    assert (code, text[:6]) == (250, b"2.0.0 ")
    assert b"not forwarded: 1 MIG error(s)" in text
    [control] = sink.wait_for(lambda r: True, timeout=10)
    assert control.rcpt_tos == [f"acme@{D}"]
    message = control.message
    # Not a valid ASCII msg-id: no threading header rather than an 8-bit one.
    assert message["In-Reply-To"] is None and message["References"] is None
    assert control.data.isascii()
    no_tracebacks(caplog)


def test_control_message_threads_under_an_ascii_message_id(
        transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    data = submission("From: <edi@acme.example>\r\nTo: <customs@sw.test>\r\n"
                      "Message-ID:\r\n <ok-1@acme.example>\r\nContent-Type: application/xml",
                      factory.gendec(imo="x"))
    [(code, _)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], data)
    assert code == 250
    [control] = sink.wait_for(lambda r: True, timeout=10)
    assert control.message["In-Reply-To"] == "<ok-1@acme.example>"


# --- c. the null sender -------------------------------------------------------------------

def test_null_sender_with_mig_errors_gets_a_failure_and_no_mail(
        transport: tuple[Config, Sink], conn: psycopg.Connection[Any],
        caplog: pytest.LogCaptureFixture) -> None:
    config, sink = transport
    swid = origin.new_message_id()
    data = submission("From: <edi@acme.example>\r\nTo: <customs@sw.test>\r\n"
                      "Content-Type: application/xml", factory.gendec(imo="x"), swid)
    [(code, text)] = lmtp_send(config, "", [f"customs@{D}"], data)
    assert (code, text[:6]) == (554, b"5.6.0 ")
    assert b"Not forwarded: 1 MIG error," in text
    assert b"ImoNumber" in text  # the first error, named
    assert swid.encode() in text
    assert sink.wait_for(lambda r: True, timeout=1) == []
    [row] = conn.execute("SELECT status, reason FROM message_recipient WHERE message_id = %s",
                         (swid,)).fetchall()
    assert row["status"] == "554 5.6.0" and "MIG error" in row["reason"]
    no_tracebacks(caplog)


def test_null_sender_valid_message_is_forwarded(transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    [(code, _)] = lmtp_send(config, "", [f"customs@{D}"], stamped(factory.gendec()))
    assert code == 250
    [copy] = sink.wait_for(lambda r: True, timeout=10)
    assert copy.mail_from in ("", "<>") and copy.rcpt_tos == ["in@customs.example"]
    assert translate.header(copy.data, "to") == f"<customs@{D}>"


# --- what may defer, what may not ---------------------------------------------------------

def test_unforeseen_failure_is_permanent_and_recorded(
        transport: tuple[Config, Sink], conn: psycopg.Connection[Any],
        caplog: pytest.LogCaptureFixture) -> None:
    """A party deleted while its message waited in the queue: the store has no such party
    any more, which no retry changes."""
    config, sink = transport
    swid = origin.new_message_id()
    data = submission(HEADERS, factory.gendec(), swid, party="gone")
    [(code, text)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], data)
    assert (code, text[:6]) == (554, b"5.3.0 ")
    assert text.startswith(b"5.3.0 Single Window cannot process this message: StoreError")
    assert swid.encode() in text
    assert sink.received == []
    [row] = conn.execute("SELECT status FROM message_recipient WHERE message_id = %s",
                         (swid,)).fetchall()
    assert row["status"] == "554 5.3.0"
    [logged] = [r for r in caplog.records
                if r.getMessage().startswith(f"event=recipient sw_id={swid} ")
                and "action=reject" in r.getMessage()]
    assert logged.exc_info is not None  # the operator gets the traceback


def test_a_value_the_store_refuses_is_permanent(transport: tuple[Config, Sink],
                                                caplog: pytest.LogCaptureFixture) -> None:
    """psycopg.DataError (here an address column refusing the stamp's peer): permanent;
    the outcome cannot be recorded (the message row itself was refused), the answer stands."""
    config, _ = transport
    data = submission(HEADERS, factory.gendec(), peer="999.1.1.1")
    [(code, text)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], data)
    assert (code, text[:6]) == (554, b"5.3.0 ")
    assert b"InvalidTextRepresentation" in text


def test_a_doubled_origin_stamp_is_refused(transport: tuple[Config, Sink]) -> None:
    """The milter writes exactly one stamp: two mean it did not come through the milter
    alone (issue 12), so nothing vouches for the sender: refused, nothing forwarded."""
    config, sink = transport
    data = submission(HEADERS, factory.gendec())
    data = data.split(b"\r\n", 1)[0] + b"\r\n" + data
    [(code, text)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], data)
    assert (code, text[:6]) == (554, b"5.7.1 ")
    assert b"2 X-SingleWindow-Origin headers" in text
    assert sink.received == []


def test_reinjection_listener_unreachable_defers(transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    sink.stop()
    try:
        replies = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], stamped(factory.gendec()))
    finally:
        sink.start()
    assert [(code, text[:6]) for code, text in replies] == [(451, b"4.3.0 ")]


def _error(conn: psycopg.Connection[Any], sql: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql)  # type: ignore[arg-type]
    return info.value


def test_transient_classification(database_config: Config,
                                  conn: psycopg.Connection[Any]) -> None:
    """Real exceptions from the real components, each classified."""
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(host="127.0.0.1", port=free_port(), connect_timeout=2)
    pool: ConnectionPool[Any] = store.pool(database_config.database, 1)
    pool.open()
    try:
        with pool.connection(), pytest.raises(PoolTimeout) as timeout:
            pool.getconn(timeout=0.1)
    finally:
        pool.close()
    # As the fixture's role: only a member of a backend's role may terminate it.
    victim = store.connect(database_config.database, autocommit=True, role=OWNER_ROLE)
    conn.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))
    shutdown = _error(victim, "SELECT 1")
    victim.close()
    injector = Injector("127.0.0.1", free_port(), "test")
    with pytest.raises(InjectError) as unreachable:
        injector.send("a@b.c", "d@e.f", b"x", envid=None, notify="NEVER", orcpt=None)
    with pytest.raises(OSError) as disk:
        open("/tmp/sw-no/such/file", "rb")  # noqa: SIM115
    conn.execute("CREATE TEMP TABLE t (x text)")
    conn.execute("CREATE INDEX ON t (x)")
    too_big = _error(conn, "INSERT INTO t SELECT string_agg(md5(i::text), '')"
                           " FROM generate_series(1, 400) i")
    with pytest.raises(psycopg.DataError) as nul:
        conn.execute("SELECT %s::text", ("a\x00b",))
    with pytest.raises(UnicodeEncodeError) as unicode:
        "caf\xe9".encode("ascii")

    for exc in (refused.value, timeout.value, shutdown, unreachable.value, disk.value,
                _error(conn, "SELECT * FROM no_such_table"), MemoryError()):
        assert terminal.transient(exc), repr(exc)
    for exc in (too_big, nul.value, _error(conn, "SELECT 1/0"), unicode.value,
                KeyError("x"), ValueError("x"), RecursionError(), AssertionError()):
        assert not terminal.transient(exc), repr(exc)
    assert isinstance(shutdown, psycopg.OperationalError)
    assert isinstance(too_big, psycopg.errors.ProgramLimitExceeded)


def test_multiparts_nested_past_the_recursion_limit_get_an_answer(
        transport: tuple[Config, Sink]) -> None:
    """Postfix refuses MIME nested deeper than mime_nesting_limit (100); the transport
    must still answer for itself. Today the technical checks hit Python's recursion
    limit: a permanent answer, not a retry (which of 5.3.0 or a checks reason is up to
    the checks)."""
    config, sink = transport
    inner = b"Content-Type: application/xml\r\n\r\n" + factory.gendec()
    for level in range(1200):
        b = f"l{level}".encode()
        inner = (b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b
                 + b"\r\n" + inner + b"\r\n--" + b + b"--\r\n")
    swid = origin.new_message_id()
    data = submission("From: <edi@acme.example>\r\nTo: <customs@sw.test>", b"", swid)
    data = data[:-2] + inner  # the last header line ends the block: the multipart's own
    [(code, text)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], data)
    assert code == 554 and text[:2] == b"5.", text
    assert swid.encode() in text
    assert sink.received == []
