"""``sw-console``: the web console served over HTTPS (issue 18), as the other daemons are
run: ``python -m singlewindow.console.server [--config FILE] [-v]``.

uvicorn serves :func:`singlewindow.console.app.create_app` on ``[console] listen`` with
the console's certificate (TLS 1.2 or later, no plain HTTP), says ``READY=1`` once it
listens and ``WATCHDOG=1`` while its event loop runs (sd_notify(3), like the other
daemons), and stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Generator

import uvicorn

from singlewindow import config as configmod
from singlewindow import daemon
from singlewindow.console.app import create_app

NAME = "console"


class Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: :func:`serve` stops it, and a
    SIGTERM is not raised again after the shutdown (the exit is clean)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def server(config: configmod.Config) -> Server:
    host, port = config.console.address
    settings = uvicorn.Config(
        create_app(config), host=host, port=port, ssl_certfile=str(config.console_cert_file),
        ssl_keyfile=str(config.console_key_file), server_header=False, proxy_headers=False,
        log_config=None, lifespan="on", timeout_graceful_shutdown=5)
    settings.load()
    # No TLS 1.0 or 1.1, whatever the OpenSSL defaults of the node.
    assert settings.ssl is not None
    settings.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    return Server(settings)


async def serve(config: configmod.Config) -> None:
    """Serve until SIGTERM or SIGINT; ``READY=1`` once the socket listens."""
    running = server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(running, "should_exit", True))
    task = asyncio.create_task(running.serve())
    while not running.started and not task.done():
        await asyncio.sleep(0.05)
    if task.done():
        await task  # the error that kept it from listening
        raise SystemExit(f"{NAME}: could not serve on {config.console.listen}")
    daemon.notify("READY=1")
    pinging = asyncio.create_task(daemon.watchdog())
    try:
        await task
    finally:
        pinging.cancel()
        daemon.notify("STOPPING=1")


def main(argv: list[str] | None = None) -> None:
    daemon.run_asyncio(NAME, "Single Window web console (HTTPS)", serve, argv)


if __name__ == "__main__":
    main()
