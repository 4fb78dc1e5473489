"""The policy daemon's socket: Postfix's smtpd processes connect here (check_policy_service).

Owns the unix socket, the in-memory directory and a connection pool for the MSA's
allowance. A request the current directory snapshot accepts is answered at once in the
event loop, with no statement (issue 13: p99 <= 2 ms at 500 requests/s); everything
else (a refusal, which first checks for a newer directory, and the MSA's allowance) is
decided in a worker thread by :func:`singlewindow.policy.decide.decide`. When the store
fails, the answer is a deferral (451 4.3.0): Postfix keeps the client retrying, never
accepting blindly and never rejecting for our fault.

The policy daemon runs beside every Postfix, so it also keeps Postfix's lookup tables
(:mod:`singlewindow.maps`) current: its directory listener rewrites them after each
change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from prometheus_client import Counter
from psycopg_pool import ConnectionPool, PoolTimeout

from singlewindow import daemon, logs, maps, replies, store
from singlewindow.config import Config
from singlewindow.identity import LISTENERS, MTA
from singlewindow.policy import codec, socketmap
from singlewindow.policy.decide import Request, decide, decide_mta, outcome
from singlewindow.store.snapshot import LiveDirectory, Snapshot

T = TypeVar("T")

log = logging.getLogger("sw-policyd")


def decision_counter() -> Counter:
    """The policy daemon's decisions (issue 14). Only this process knows them, so they
    are counted in its memory, in prometheus_client's multiprocess mode when the daemon
    runs (:func:`singlewindow.daemon.count_in_files`); not registered anywhere here: the
    exporter reads every process's file."""
    return Counter("singlewindow_policy_decisions", "Policy decisions at RCPT and at the "
                   "end of DATA, by listener and action (accept, reject, defer)",
                   ["listener", "action"], registry=None)


async def _converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    feed: Callable[[bytes], Iterable[T]],
                    respond: Callable[[T], Awaitable[bytes]],
                    malformed: type[Exception], what: str) -> None:
    """One client connection, request after request in order, for both protocols this
    daemon speaks (policy delegation and socketmap): a malformed request closes it."""
    try:
        while data := await reader.read(4096):
            for request in feed(data):
                writer.write(await respond(request))
                await writer.drain()
    except malformed as exc:
        log.warning("closing %s: %s", what, exc)
    except ConnectionError:
        pass
    finally:
        writer.close()


class PolicyService:
    """Answers policy requests; the pool is opened lazily so start-up needs no database."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pool: ConnectionPool[Any] = store.pool(config.database, config.policy.workers,
                                                    application_name="sw-policyd")
        self.directory = LiveDirectory(config.database, "sw-policyd",
                                       on_load=self.write_maps)
        self.executor = ThreadPoolExecutor(config.policy.workers, thread_name_prefix="policy")
        self.decisions = decision_counter()

    def write_maps(self, snapshot: Snapshot) -> None:
        """Postfix's lookup tables for this node (runs in the directory's thread)."""
        maps.write(snapshot, self.config, self.config.postfix_config)

    def table_answer(self, request: bytes) -> str:
        """One socketmap lookup (runs in a worker thread: a miss checks the store)."""
        try:
            return socketmap.answer(request, self.directory, self.config.hub.domain,
                                    maps.lmtp_transport(self.config))
        except (psycopg.Error, PoolTimeout) as exc:
            log.error("store unavailable, table lookup deferred: %s",
                      exc.__class__.__name__)
            return "TEMP store unavailable"

    async def handle_table(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()

        async def respond(request: bytes) -> bytes:
            result = await loop.run_in_executor(self.executor, self.table_answer, request)
            log.info("table %s: %s", request.decode("utf-8", "replace")[:300], result)
            return socketmap.encode(result)

        await _converse(reader, writer, socketmap.Decoder().feed, respond,
                        socketmap.NetstringError, "table connection")

    def quick(self, request: Request) -> str | None:
        """The answer when the current snapshot accepts an MTA request, else None (the
        request then goes to :meth:`answer`). No I/O: runs in the event loop."""
        snapshot = self.directory.fresh()
        if request.context != MTA or snapshot is None:
            return None
        result = decide_mta(snapshot, request)
        return result if result == replies.POLICY_DUNNO else None

    def answer(self, request: Request) -> str:
        """Decide one request (runs in a worker thread)."""
        try:
            return decide(self.directory, self.pool.connection, request, self.config.policy,
                          self.config.hub.sasl_realm)
        except (psycopg.Error, PoolTimeout) as exc:
            log.error("store unavailable, deferring: %s", exc.__class__.__name__)
            return replies.STORE_UNAVAILABLE.line()

    def logged(self, request: Request, result: str) -> str:
        listener = request.context if request.context in LISTENERS else "unknown"
        action = outcome(result)  # accept, defer or reject
        self.decisions.labels(listener, action).inc()
        logs.decision(log, "policy", sw_id=None, queue_id=request.queue_id,
                      listener=request.context, state=request.protocol_state or "-",
                      action=action, client=request.client_address,
                      sender=request.sender, recipient=request.recipient,
                      login=request.sasl_username or None,
                      reply=None if result == replies.POLICY_DUNNO else result)
        return result

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()

        async def respond(attrs: dict[str, str]) -> bytes:
            request = Request.from_attrs(attrs)
            result = self.quick(request)
            if result is None:
                result = await loop.run_in_executor(self.executor, self.answer, request)
            return codec.encode_reply(self.logged(request, result))

        await _converse(reader, writer, codec.Decoder().feed, respond, codec.ProtocolError,
                        "connection")

    def close(self) -> None:
        self.directory.close()
        self.pool.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    """Listen on the policy socket until cancelled or signalled."""
    service = PolicyService(config)
    path = config.paths.policy_socket
    daemon.prepare_socket_path(path)
    daemon.prepare_socket_path(config.paths.table_socket)
    service.pool.open(wait=False)
    service.directory.start()
    server = await asyncio.start_unix_server(service.handle, path=str(path))
    tables = await asyncio.start_unix_server(service.handle_table,
                                             path=str(config.paths.table_socket))
    daemon.restrict_socket(config.paths.table_socket)
    daemon.restrict_socket(path)
    log.info("listening on %s", path)
    try:
        async with server, tables:
            await daemon.serve_until_stopped(ready)
    finally:
        service.close()


async def _serve_counted(config: Config) -> None:
    daemon.count_in_files(config.metrics_dir)
    await serve(config)


def main(argv: list[str] | None = None) -> None:
    daemon.run_asyncio("sw-policyd", "Single Window Postfix policy daemon", _serve_counted,
                       argv)


if __name__ == "__main__":
    main()

