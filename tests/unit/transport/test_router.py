"""The routing transport without Postfix: real LMTP server and store, driven by
smtplib.LMTP; an SMTP sink stands where Postfix's re-injection listener would be."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from tests.conftest import free_port, short_state_dir
from tests.integration.sinks import Sink
from tests.unit.mig import factory

from singlewindow import origin
from singlewindow.config import Config, Listeners
from singlewindow.store import directory
from singlewindow.transport import router, server, translate
from singlewindow.transport.lmtp import LmtpServer

D = "sw.test"


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
    router, pool = server.make_router(config)
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


def lmtp(config: Config, sender: str, rcpts: list[str], data: bytes) -> list[tuple[int, bytes]]:
    with smtplib.LMTP(str(config.paths.lmtp_socket)) as client:
        client.ehlo_or_helo_if_needed()
        client.mail(sender)
        for rcpt in rcpts:
            assert client.rcpt(rcpt)[0] == 250
        client.putcmd("data")
        assert client.getreply()[0] == 354
        client.send(data.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
        return [client.getreply() for _ in rcpts]


def stamped(body: bytes, to: str = f"customs@{D}") -> bytes:
    stamp = origin.Origin(origin.new_message_id(), "mta", "acme", "10.1.0.5", "", "Q1")
    return (f"{origin.HEADER}: {stamp.header_value()}\r\nFrom: <edi@acme.example>\r\n"
            f"To: <{to}>\r\nSubject: unit\r\nContent-Type: application/xml\r\n\r\n"
            ).encode() + body


def test_one_reply_per_recipient(transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    replies = lmtp(config, f"acme@{D}", [f"customs@{D}", f"later@{D}"],
                   stamped(factory.gendec()))
    assert replies[0][0] == 250 and replies[0][1].startswith(b"2.0.0 Delivered")
    assert replies[1][0] == 554 and replies[1][1].startswith(b"5.2.1 ")
    [copy] = sink.wait_for(lambda r: True, timeout=10)
    assert copy.mail_from == f"acme@{D}" and copy.rcpt_tos == ["in@customs.example"]
    assert copy.message["From"].addresses[0].addr_spec == f"acme@{D}"


def test_unstamped_submission_is_deferred(transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    data = b"From: <edi@acme.example>\r\nSubject: x\r\n\r\n<a/>\r\n"
    [(code, text)] = lmtp(config, "edi@acme.example", [f"customs@{D}"], data)
    assert (code, text[:6]) == (451, b"4.3.5 ")
    assert sink.received == []


def received(n: int) -> bytes:
    return b"".join(f"Received: from r{i}.acme.example by r{i + 1}.acme.example; "
                    "Sun, 29 Nov 2026 12:00:00 +0000\r\n".encode() for i in range(n))


def test_past_the_hop_limit_the_recipient_is_refused_as_a_loop(
        transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    limit = config.transport.hop_limit
    [(code, text)] = lmtp(config, f"acme@{D}", [f"customs@{D}"],
                          received(limit + 1) + stamped(factory.gendec()))
    assert (code, text[:6]) == (554, b"5.4.6 ")
    assert f"Routing loop detected: the message has passed {limit + 1} hops, more than " \
           f"the {limit} Single Window allows".encode() in b" ".join(text.split())
    assert sink.received == []


def test_the_copy_carries_the_hop_count_on(transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    limit = config.transport.hop_limit
    [(code, _)] = lmtp(config, f"acme@{D}", [f"customs@{D}"],
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
    [(code, text)] = lmtp(config, f"acme@{D}", [f"customs@{D}"], data)
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
    [(code, _)] = lmtp(config, "", [f"acme@{D}"], data)
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
    [(code, text)] = lmtp(config, config.hub.system_sender, [f"acme@{D}"], data)
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
    [(code, _)] = lmtp(config, f"acme@{D}", [f"customs@{D}"],
                       received(first) + stamped(factory.gendec()))
    assert code == 250
    [copy] = sink.wait_for(lambda r: True, timeout=10)
    # A new message that answers the copy: its own 11 hops and the copy's 20 make 31.
    answer = received(11) + f"In-Reply-To: {copy.message['Message-ID']}\r\n".encode() \
        + stamped(factory.gendec())
    [(code, text)] = lmtp(config, f"acme@{D}", [f"customs@{D}"], answer)
    assert (code, text[:6]) == (554, b"5.4.6 ")
    assert f"passed {first + 11} hops (counting the messages it answers within " \
           f"{config.transport.reply_window:g} s)".encode() in b" ".join(text.split())
    assert len(sink.wait_for(lambda r: True, timeout=2, count=2)) == 1
