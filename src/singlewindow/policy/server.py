"""The policy daemon's socket: Postfix's smtpd processes connect here (check_policy_service).

Owns the unix socket and the connection pool; each request is decided in a worker thread
by :func:`singlewindow.policy.decide.decide`. When the store fails, the answer is a
deferral (451 4.3.0): Postfix keeps the client retrying, never accepting blindly and
never rejecting for our fault.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from singlewindow import daemon, replies, store
from singlewindow.config import Config
from singlewindow.policy import codec
from singlewindow.policy.decide import Request, decide

log = logging.getLogger("sw-policyd")


class PolicyService:
    """Answers policy requests; the pool is opened lazily so start-up needs no database."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pool: ConnectionPool[Any] = store.pool(config.database, config.policy.workers)
        self.executor = ThreadPoolExecutor(config.policy.workers, thread_name_prefix="policy")

    def answer(self, attrs: dict[str, str]) -> str:
        """Decide one request (runs in a worker thread)."""
        request = Request.from_attrs(attrs)
        try:
            with self.pool.connection() as conn:
                result = decide(conn, request, self.config.policy, self.config.hub.sasl_realm)
        except (psycopg.Error, PoolTimeout) as exc:
            log.error("store unavailable, deferring: %s", exc.__class__.__name__)
            result = replies.STORE_UNAVAILABLE.line()
        log.info("policy context=%s state=%s client=%s sender=<%s> recipient=<%s> login=%s "
                 "action=%s", request.context, request.protocol_state or "-",
                 request.client_address, request.sender, request.recipient,
                 request.sasl_username or "-", result)
        return result

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        decoder = codec.Decoder()
        try:
            while data := await reader.read(4096):
                for attrs in decoder.feed(data):
                    result = await loop.run_in_executor(self.executor, self.answer, attrs)
                    writer.write(codec.encode_reply(result))
                    await writer.drain()
        except codec.ProtocolError as exc:
            log.warning("closing connection: %s", exc)
        except ConnectionError:
            pass
        finally:
            writer.close()

    def close(self) -> None:
        self.pool.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    """Listen on the policy socket until cancelled or signalled."""
    service = PolicyService(config)
    path = config.paths.policy_socket
    daemon.prepare_socket_path(path)
    service.pool.open(wait=False)
    server = await asyncio.start_unix_server(service.handle, path=str(path))
    daemon.restrict_socket(path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening on %s", path)
    daemon.notify("READY=1")
    if ready is not None:
        ready.set()
    try:
        async with server:
            await stop.wait()
    finally:
        daemon.notify("STOPPING=1")
        service.close()


def main(argv: list[str] | None = None) -> None:
    daemon.run_asyncio("sw-policyd", "Single Window Postfix policy daemon", serve, argv)


if __name__ == "__main__":
    main()
