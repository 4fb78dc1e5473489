"""The routing transport without Postfix, for the unit tests of ``tests/unit/transport``:
a real LMTP server and store, driven by smtplib.LMTP; an SMTP sink stands where Postfix's
re-injection listener would be. The ``transport`` fixture (that directory's conftest.py)
runs :func:`running`; the messages are stamped as the milter would."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import psycopg

from singlewindow import origin
from singlewindow.config import Config, Listeners
from singlewindow.store import directory
from singlewindow.transport import server
from singlewindow.transport.forward import Injector
from singlewindow.transport.lmtp import LmtpServer
from tests.support import factory
from tests.support.local import free_port, lmtp_send, short_state_dir
from tests.support.sinks import Sink

D = "sw.test"
#: The origin stamp's MAC key: written to the transport's key file by the fixture, so the
#: stamps these tests write are the milter's (issue 12).
KEY = b"0123456789abcdef" * 4

Transport = tuple[Config, Sink]


@contextmanager
def running(database_config: Config, conn: psycopg.Connection[Any]) -> Iterator[Transport]:
    """Two parties (the company acme, the agency customs with an inactive ``later``
    address) and the transport serving its LMTP socket, re-injecting into a sink."""
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


def stamped_by(party: str, headers: str, body: bytes) -> bytes:
    stamp = origin.Origin(origin.new_message_id(), "mta", party, "10.1.0.5", "", "Q1")
    return f"{origin.HEADER}: {stamp.signed(KEY)}\r\n{headers}\r\n".encode() + body


def submit(config: Config, headers: str) -> tuple[int, bytes]:
    [reply] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], stamped_by(
        "acme", f"To: <customs@{D}>\r\nSubject: unit\r\nMessage-ID: <m@acme.example>\r\n"
        f"Content-Type: application/xml\r\n{headers}", factory.gendec()))
    return reply
