"""The routing transport's process: Postfix's lmtp(8) reaches it on a unix socket (D3).

Owns the socket, the connection pool and the re-injection client; the decisions are in
:mod:`singlewindow.transport.router`. A long-running service, so a message costs no
interpreter start-up, and a crash means Postfix retries (defer), never a bounce.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from singlewindow import daemon
from singlewindow.config import Config
from singlewindow.transport.forward import Injector
from singlewindow.transport.lmtp import LmtpServer
from singlewindow.transport.router import Router

log = logging.getLogger("sw-transport")


def make_router(config: Config) -> tuple[Router, ConnectionPool[Any]]:
    db = config.database
    pool: ConnectionPool[Any] = ConnectionPool(
        db.conninfo, min_size=0, max_size=config.transport.workers, timeout=db.connect_timeout,
        open=False, kwargs={"row_factory": dict_row, "connect_timeout": db.connect_timeout},
        check=ConnectionPool.check_connection)
    injector = Injector("127.0.0.1", config.listeners.reinject_port, config.hub.hostname)
    return Router(config, pool, injector), pool


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    router, pool = make_router(config)
    pool.open(wait=False)
    path = config.paths.lmtp_socket
    daemon.prepare_socket_path(path)
    server = LmtpServer(path, router, hostname=config.hub.hostname)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        daemon.restrict_socket(path)
        daemon.notify("READY=1")
        if ready is not None:
            ready.set()
        await stop.wait()
    daemon.notify("STOPPING=1")
    pool.close()


def main(argv: list[str] | None = None) -> None:
    parser = daemon.argument_parser("Single Window routing transport (LMTP)")
    args = parser.parse_args(argv)
    daemon.setup_logging("sw-transport", args.verbose)
    config = daemon.load_config(args)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
