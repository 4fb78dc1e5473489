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
from singlewindow.transport import server
from singlewindow.transport.forward import Injector
from singlewindow.transport.lmtp import LmtpServer

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
    return (f"{origin.HEADER}: {stamp.signed(KEY)}\r\nFrom: <edi@acme.example>\r\n"
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
