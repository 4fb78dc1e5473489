"""The routing transport without Postfix: real LMTP server and store, driven by
smtplib.LMTP; an SMTP sink stands where Postfix's re-injection listener would be."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from singlewindow import mig, origin, replies
from singlewindow.config import Config, Listeners
from singlewindow.store import directory, snapshot
from singlewindow.transport import router, server, translate
from singlewindow.transport.forward import Injector
from singlewindow.transport.lmtp import LmtpServer
from tests.support import factory
from tests.support.local import free_port, lmtp_send, short_state_dir
from tests.support.sinks import Sink

D = "sw.test"
#: The origin stamp's MAC key: written to the transport's key file by the fixture, so the
#: stamps these tests write are the milter's (issue 12).
KEY = b"0123456789abcdef" * 4


@pytest.fixture
def transport(database_config: Config, conn: psycopg.Connection[Any]) -> Iterator[
        tuple[Config, Sink]]:
    directory.add_party(conn, "acme", "company", ["10.1.0.0/24"], "127.0.0.1:1")
    directory.add_address(conn, f"acme@{D}", "acme", "edi@acme.example", None, D)
    directory.add_party(conn, "customs", "agency", [], "127.0.0.1:2")
    directory.add_address(conn, f"customs@{D}", "customs", "in@customs.example", None, D)
    directory.add_address(conn, f"later@{D}", "customs", "later@customs.example", None, D,
                          active=False)
    sink = Sink(free_port()).start()
    state = short_state_dir()
    config = replace(database_config,
                     paths=replace(database_config.paths, state_dir=state),
                     listeners=Listeners(reinject_port=sink.port))
    config.paths.run_dir.mkdir()
    config.stamp_key_file.parent.mkdir()
    config.stamp_key_file.write_bytes(KEY)
    router, pool = server.make_router(config)
    # A plain SMTP sink stands where Postfix's re-injection listener (TLS with the
    # transport's client certificate) would be.
    router.injector = Injector("127.0.0.1", sink.port, config.hub.hostname)
    pool.open()
    lmtp_server = LmtpServer(config.paths.lmtp_socket, router)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(lmtp_server.start(), loop).result(10)
    try:
        yield config, sink
    finally:
        asyncio.run_coroutine_threadsafe(lmtp_server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        pool.close()
        sink.stop()
        shutil.rmtree(state, ignore_errors=True)


def stamped(body: bytes, to: str = f"customs@{D}") -> bytes:
    stamp = origin.Origin(origin.new_message_id(), "mta", "acme", "10.1.0.5", "", "Q1")
    return (f"{origin.HEADER}: {stamp.signed(KEY)}\r\nFrom: <edi@acme.example>\r\n"
            f"To: <{to}>\r\nSubject: unit\r\nContent-Type: application/xml\r\n\r\n"
            ).encode() + body


def test_one_reply_per_recipient(transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    replies = lmtp_send(config, f"acme@{D}", [f"customs@{D}", f"later@{D}"],
                   stamped(factory.gendec()))
    assert replies[0][0] == 250 and replies[0][1].startswith(b"2.0.0 Delivered")
    assert replies[1][0] == 554 and replies[1][1].startswith(b"5.2.1 ")
    [copy] = sink.wait_for(lambda r: True, timeout=10)
    assert copy.mail_from == f"acme@{D}" and copy.rcpt_tos == ["in@customs.example"]
    assert copy.message["From"].addresses[0].addr_spec == f"acme@{D}"


def test_unstamped_submission_is_deferred(transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    data = b"From: <edi@acme.example>\r\nSubject: x\r\n\r\n<a/>\r\n"
    [(code, text)] = lmtp_send(config, "edi@acme.example", [f"customs@{D}"], data)
    assert (code, text[:6]) == (451, b"4.3.5 ")
    assert sink.received == []


# --- issue 12: the header sender is the submitter's; reports matched only by what the hub
# put on the copy and only from where a genuine one comes --------------------------------

Transport = tuple[Config, Sink]


def stamped_by(party: str, headers: str, body: bytes) -> bytes:
    stamp = origin.Origin(origin.new_message_id(), "mta", party, "10.1.0.5", "", "Q1")
    return f"{origin.HEADER}: {stamp.signed(KEY)}\r\n{headers}\r\n".encode() + body


def submit(config: Config, headers: str) -> tuple[int, bytes]:
    [reply] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], stamped_by(
        "acme", f"To: <customs@{D}>\r\nSubject: unit\r\nMessage-ID: <m@acme.example>\r\n"
        f"Content-Type: application/xml\r\n{headers}", factory.gendec()))
    return reply


def test_from_of_another_party_is_refused_naming_the_header(transport: Transport) -> None:
    config, sink = transport
    code, text = submit(config, "From: <in@customs.example>\r\n")
    assert (code, text[:6]) == (554, b"5.7.1 ")
    assert b"The address <in@customs.example> in header From is not one of your " \
        b"addresses" in text
    code, text = submit(config, f"From: <edi@acme.example>\r\nSender: customs@{D}\r\n")
    assert (code, text[:6]) == (554, b"5.7.1 ") and b"in header Sender" in text
    code, text = submit(config, "From: <edi@acme.example>\r\n"
                        "Reply-To: a <edi@acme.example>, b <in@customs.example>\r\n")
    assert (code, text[:6]) == (554, b"5.7.1 ") and b"in header Reply-To" in text
    assert sink.wait_for(lambda r: True, timeout=1) == []
    # The party's own addresses, physical or logical; To and Cc may name anyone known.
    code, _ = submit(config, f"From: <edi@acme.example>\r\nReply-To: <acme@{D}>\r\n"
                     "Cc: <in@customs.example>\r\n")
    assert code == 250
    # An address Single Window does not know at all is still reason #8.
    code, text = submit(config, "From: <someone@elsewhere.example>\r\n")
    assert (code, text[:6]) == (554, b"5.1.0 ") and b"unknown to Single Window" in text


# --- delivery reports ------------------------------------------------------------------

def report(*, envid: str, returned: str = "<x@y>", action: str = "failed") -> str:
    return ('From: MAILER-DAEMON@mx.customs.example\r\nMIME-Version: 1.0\r\n'
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n'
            '\r\n--b\r\nContent-Type: text/plain\r\n\r\nsorry\r\n'
            '--b\r\nContent-Type: message/delivery-status\r\n\r\n'
            f'Reporting-MTA: dns; mx.customs.example\r\nOriginal-Envelope-Id: {envid}\r\n'
            f'\r\nFinal-Recipient: rfc822; in@customs.example\r\nAction: {action}\r\n'
            'Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n'
            '--b\r\nContent-Type: text/rfc822-headers\r\n\r\n'
            f'Message-ID: {returned}\r\nSubject: unit\r\n\r\n--b--\r\n')


def forwarded(config: Config, conn: psycopg.Connection[Any]) -> tuple[str, str, str]:
    """A copy to customs: (Single Window id, its ENVID, its Message-ID)."""
    assert submit(config, "From: <edi@acme.example>\r\n")[0] == 250
    row = conn.execute("SELECT message_id, envid, copy_message_id FROM forward"
                       " ORDER BY id DESC LIMIT 1").fetchone()
    assert row is not None
    return row["message_id"], row["envid"], row["copy_message_id"]


def reported(conn: psycopg.Connection[Any], swid: str) -> int:
    row = conn.execute("SELECT count(*) AS n FROM event WHERE message_id = %s"
                       " AND kind = 'agency-dsn'", (swid,)).fetchone()
    assert row is not None
    return int(row["n"])


def test_copy_envid_is_a_token_of_its_own(transport: Transport,
                                          conn: psycopg.Connection[Any]) -> None:
    config, _ = transport
    swid, envid, _ = forwarded(config, conn)
    _, other_envid, _ = forwarded(config, conn)
    assert swid not in envid and other_envid != envid and len(envid) >= 32


def test_report_from_the_copys_receiver_is_recorded(transport: Transport,
                                                    conn: psycopg.Connection[Any]) -> None:
    config, sink = transport
    swid, envid, _ = forwarded(config, conn)
    [(code, text)] = lmtp_send(config, "", [f"acme@{D}"], stamped_by("customs", report(envid=envid),
                                                             b""))
    assert code == 250 and text.endswith(f"recorded on {swid}".encode())
    assert reported(conn, swid) == 1
    # The submitter hears of the failure (its notice goes where its copies go).
    assert sink.wait_for(lambda r: b"X-SingleWindow-Notice: agency-dsn" in r.data, timeout=10)


def test_forged_reports_are_refused_and_not_recorded(transport: Transport,
                                                     conn: psycopg.Connection[Any]) -> None:
    config, _ = transport
    swid, envid, copy_id = forwarded(config, conn)
    directory.add_party(conn, "coast", "agency", ["10.9.0.2/32"], "127.0.0.1:3")
    directory.add_address(conn, f"coast@{D}", "coast", "in@coast.example", None, D)
    forged = [
        ("customs", f"acme@{D}", report(envid=swid)),  # the id the submitter reads
        ("acme", f"acme@{D}", report(envid=envid, returned=copy_id)),  # not the receiver
        ("coast", f"acme@{D}", report(envid="", returned=copy_id)),  # guessed Message-ID
        ("customs", f"customs@{D}", report(envid=envid)),  # not the copy's sender
    ]
    for party, rcpt, data in forged:
        [(code, text)] = lmtp_send(config, "", [rcpt], stamped_by(party, data, b""))
        assert (code, text[:6]) == (554, b"5.7.1 "), (party, rcpt)
        assert text.startswith(b"5.7.1 " + replies.REPORT_UNMATCHED.text.encode())
    assert reported(conn, swid) == 0
    # Each refusal is on the reporter's own message in the log.
    rows = conn.execute("SELECT r.status FROM message m JOIN message_recipient r"
                        " ON r.message_id = m.id WHERE m.envelope_from = ''").fetchall()
    assert [r["status"] for r in rows] == ["554 5.7.1"] * len(forged)


def test_postfix_dsn_of_ones_own_submission_is_not_a_report_on_another(
        transport: Transport, conn: psycopg.Connection[Any]) -> None:
    """Postfix's own DSN (unstamped, null sender) goes to the sender of what it is about;
    one sent to bright carrying acme's copy's identifiers is bright's own DSN."""
    config, sink = transport
    swid, envid, copy_id = forwarded(config, conn)
    directory.add_party(conn, "bright", "company", ["10.1.1.0/24"], "127.0.0.1:4")
    directory.add_address(conn, f"bright@{D}", "bright", "edi@bright.example", None, D)
    data = report(envid=envid, returned=copy_id).encode()
    [(code, text)] = lmtp_send(config, "", [f"bright@{D}"], data)
    assert code == 250 and text.startswith(b"2.0.0 Delivered to bright@")
    assert reported(conn, swid) == 0
    # The same DSN to the copy's own sender is Postfix's report on the outbound leg.
    [(code, text)] = lmtp_send(config, "", [f"acme@{D}"], data)
    assert code == 250 and text.endswith(f"recorded on {swid}".encode())
    assert reported(conn, swid) == 1
    assert sink.wait_for(lambda r: r.rcpt_tos == ["edi@bright.example"], timeout=10)


def received(n: int) -> bytes:
    return b"".join(f"Received: from r{i}.acme.example by r{i + 1}.acme.example; "
                    "Sun, 29 Nov 2026 12:00:00 +0000\r\n".encode() for i in range(n))


def test_past_the_hop_limit_the_recipient_is_refused_as_a_loop(
        transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    limit = config.transport.hop_limit
    [(code, text)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"],
                          received(limit + 1) + stamped(factory.gendec()))
    assert (code, text[:6]) == (554, b"5.4.6 ")
    assert f"Routing loop detected: the message has passed {limit + 1} hops, more than " \
           f"the {limit} Single Window allows".encode() in b" ".join(text.split())
    assert sink.received == []


def test_the_copy_carries_the_hop_count_on(transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    limit = config.transport.hop_limit
    [(code, _)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"],
                       received(limit) + stamped(factory.gendec()))
    assert code == 250
    [copy] = sink.wait_for(lambda r: True, timeout=10)
    trace = copy.message.get_all("Received")
    assert len(trace) == limit
    assert all(value.startswith("by sw.test (Single Window, hop ") for value in trace)
    assert b"acme.example" not in copy.data.split(b"\r\n\r\n", 1)[0]


def test_auto_submitted_mig_errors_get_no_control_message(
        transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    broken = factory.gendec().replace(b"<Flag>PA</Flag>", b"<Flag>Panama</Flag>")
    data = b"Auto-Submitted: auto-replied\r\n" + stamped(broken)
    [(code, text)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], data)
    assert (code, text[:6]) == (554, b"5.6.0 ")
    assert b"no control message is sent, as it is marked Auto-Submitted: auto-replied" \
        in b" ".join(text.split())
    assert sink.wait_for(lambda r: True, timeout=2) == []


def test_the_hubs_notice_goes_out_with_the_null_sender(
        transport: tuple[Config, Sink], conn: psycopg.Connection[Any]) -> None:
    config, sink = transport
    data = (b"From: Single Window <single-window@sw.test>\r\nTo: <acme@sw.test>\r\n"
            b"X-SingleWindow-Notice: control SW1\r\nAuto-Submitted: auto-replied\r\n"
            b"Subject: Control message SW1\r\n\r\nerrors\r\n")
    [(code, _)] = lmtp_send(config, "", [f"acme@{D}"], data)
    assert code == 250
    [notice] = sink.wait_for(lambda r: True, timeout=10)
    assert notice.mail_from in ("", "<>") and notice.rcpt_tos == ["edi@acme.example"]
    assert notice.message["Auto-Submitted"] == "auto-replied"
    # Recorded as what its notice header says it is, not by its sender.
    row = conn.execute("SELECT kind FROM notice_delivery").fetchone()
    assert row is not None and row["kind"] == "control"


def test_unstamped_mail_from_the_old_system_sender_is_not_taken_as_the_hubs(
        transport: tuple[Config, Sink]) -> None:
    # The hub's own mail has the null sender now; a sender does not make mail the hub's.
    config, sink = transport
    data = b"From: <single-window@sw.test>\r\nSubject: x\r\n\r\nbody\r\n"
    [(code, text)] = lmtp_send(config, config.hub.system_sender, [f"acme@{D}"], data)
    assert (code, text[:6]) == (451, b"4.3.5 ")
    assert sink.received == []


@pytest.mark.parametrize("notice,kind", [(None, "dsn"), ("control SW1", "control"),
                                         ("agency-dsn SW1", "agency-failure"),
                                         ("something SW1", "notice")])
def test_generated_kind_is_told_by_the_hubs_header(notice: str | None, kind: str) -> None:
    head = (f"X-SingleWindow-Notice: {notice}\r\n" if notice else "") + "Subject: s\r\n\r\n"
    fields = translate.head(head.encode())[0]
    assert router.generated_kind("", fields) == kind
    assert router.generated_kind("single-window@sw.test", fields) is None


def test_a_quick_answer_to_a_copy_continues_its_hop_count(
        transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    limit = config.transport.hop_limit
    first = limit - 10
    [(code, _)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"],
                       received(first) + stamped(factory.gendec()))
    assert code == 250
    [copy] = sink.wait_for(lambda r: True, timeout=10)
    # A new message that answers the copy: its own 11 hops and the copy's 20 make 31.
    answer = received(11) + f"In-Reply-To: {copy.message['Message-ID']}\r\n".encode() \
        + stamped(factory.gendec())
    [(code, text)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], answer)
    assert (code, text[:6]) == (554, b"5.4.6 ")
    assert f"passed {first + 11} hops (counting the messages it answers within " \
           f"{config.transport.reply_window:g} s)".encode() in b" ".join(text.split())
    assert len(sink.wait_for(lambda r: True, timeout=2, count=2)) == 1


def test_a_releases_own_route_wins_over_its_messages(conn: psycopg.Connection[Any]) -> None:
    """Issue 14: routes for a message name (PAXLST) serve every release the MIG
    classifies, unless that release has routes of its own."""
    directory.add_party(conn, "customs", "agency", [], None)
    directory.add_address(conn, f"customs@{D}", "customs", "in@customs.example", None, D)
    directory.add_party(conn, "coast", "agency", [], None)
    directory.add_address(conn, f"coast@{D}", "coast", "in@coast.example", None, D)
    directory.add_route(conn, f"customs@{D}", "PAXLST", [f"customs@{D}", f"coast@{D}"])
    directory.add_route(conn, f"customs@{D}", "PAXLST-D05B", [f"coast@{D}"])
    where, registry = snapshot.load(conn), mig.registry()

    def routed(message_type: str | None) -> list[str]:
        return [a.logical for a in router.routes(where, registry, f"customs@{D}",
                                                 message_type)]
    assert routed("PAXLST-D03B") == routed("PAXLST-D02B") == [f"coast@{D}", f"customs@{D}"]
    assert routed("PAXLST-D05B") == [f"coast@{D}"]
    assert routed("IFTDGN-D03A") == routed("GENDEC-1") == routed(None) == []
    assert routed("NOT-A-TYPE") == []


# --- issue 14: what the metrics exporter reads, written with the existing bookkeeping --

def _validations(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return [r["detail"] for r in conn.execute(
        "SELECT detail FROM event WHERE kind = 'mig-validated' ORDER BY id").fetchall()]


@pytest.mark.parametrize("control", [False, True])
def test_each_validation_is_recorded_once_with_its_time_and_findings(
        transport: tuple[Config, Sink], conn: psycopg.Connection[Any], control: bool) -> None:
    config, _ = transport
    payload = factory.gendec()
    if control:  # MIG errors: the control message's claim carries the event
        payload = payload.replace(b"<Flag>PA</Flag>", b"<Flag>Panama</Flag>")
    rcpts = [f"customs@{D}", f"customs@{D}".replace("customs", "later")]
    replies_ = lmtp_send(config, f"acme@{D}", rcpts, stamped(payload))
    assert [code for code, _ in replies_] == [250, 554]
    [detail] = _validations(conn)  # once per transaction, not per recipient
    # The body part as carried (its last line ends in CRLF on the wire).
    assert len(payload) <= detail["bytes"] <= len(payload) + 2
    assert 0 < detail["seconds"] < 10
    if control:
        assert detail["findings"] and all(
            isinstance(t, str) and isinstance(rule, str) and n >= 1
            for t, rule, n in detail["findings"])
    else:
        assert "findings" not in detail
    # The refusal's keyword, for singlewindow_dsn_failures_total{reason}.
    keys = {r["logical"]: r["reason_key"] for r in conn.execute(
        "SELECT logical, reason_key FROM message_recipient")}
    assert keys == {f"customs@{D}": None, f"later@{D}": "address-not-activated"}


def test_the_submission_time_is_the_milters(transport: tuple[Config, Sink],
                                            conn: psycopg.Connection[Any]) -> None:
    config, _ = transport
    lmtp_send(config, f"acme@{D}", [f"customs@{D}"], stamped(factory.gendec()))
    row = conn.execute("SELECT id, extract(epoch FROM submitted_at)::float8 AS at"
                       " FROM message").fetchone()
    assert row is not None
    expected = origin.new_message_id(row["at"] + 0.0005)  # whole milliseconds, as floats
    assert row["id"][:19] == expected[:19]  # SW + the time to the millisecond
