"""The routing transport's process: Postfix's lmtp(8) reaches it on a unix socket (D3).

Owns the socket, the connection pool and the re-injection client; the decisions are in
:mod:`singlewindow.transport.router`. A long-running service, so a message costs no
interpreter start-up, and a crash means Postfix retries (defer), never a bounce.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from typing import Any

from psycopg_pool import ConnectionPool

from singlewindow import daemon, mig, store
from singlewindow.config import Config
from singlewindow.origin import StampKeyError
from singlewindow.transport.forward import Injector, client_context
from singlewindow.transport.lmtp import LmtpServer
from singlewindow.transport.retry import Retrier
from singlewindow.transport.router import Router

log = logging.getLogger("sw-transport")


def make_router(config: Config) -> tuple[Router, ConnectionPool[Any]]:
    pool = store.pool(config.database, config.transport.workers)
    injector = Injector("127.0.0.1", config.listeners.reinject_port, config.hub.hostname,
                        tls=functools.partial(client_context, config.reinject_cert_file,
                                              config.reinject_key_file, config.cert_file))
    retrier = Retrier(config.transport.postqueue, config.postfix_config)
    return Router(config, pool, injector, retrier), pool


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    try:
        router, pool = make_router(config)
    except StampKeyError as exc:
        raise SystemExit(f"configuration: {exc}") from None
    pool.open(wait=False)
    if not log.isEnabledFor(logging.DEBUG):
        # aiosmtpd logs every LMTP command at INFO (peer, sender, each recipient, the
        # connection's end): ~10 records per message that Postfix's log already holds.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
    # Deliveries a POP3 session's lock deferred are retried once it is gone (D6).
    if router.retrier is not None:
        router.retrier.start()
    path = config.paths.lmtp_socket
    daemon.prepare_socket_path(path)
    server = LmtpServer(path, router, finish=router.finish, hostname=config.hub.hostname,
                        data_size_limit=config.transport.lmtp_size_limit)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The MIG is compiled once at start and again on SIGHUP (an operator added a message
    # type); a MIG with errors leaves the previous one in force.
    loop.add_signal_handler(signal.SIGHUP, reload_mig)
    mig.registry()
    async with server:
        daemon.restrict_socket(path)
        daemon.notify("READY=1")
        if ready is not None:
            ready.set()
        await stop.wait()
    daemon.notify("STOPPING=1")
    if router.retrier is not None:
        router.retrier.stop()
    pool.close()


def reload_mig() -> None:
    try:
        registry = mig.reload()
    except Exception:
        log.exception("MIG reload failed; the previous MIG stays in force")
        return
    log.info("MIG reloaded: %d message types", len(registry.types))


def main(argv: list[str] | None = None) -> None:
    daemon.run_asyncio("sw-transport", "Single Window routing transport (LMTP)", serve, argv)


if __name__ == "__main__":
    main()
