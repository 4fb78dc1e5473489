"""What every long-running Single Window service shares: logging, readiness, sockets.

The policy daemon, the milter and the transport each own one unix socket that a Postfix
process (running as ``postfix``) connects to, and each tells systemd when it is ready
(``Type=notify``, sd_notify(3)) without depending on libsystemd. When systemd (or the
local stack's supervisor, which plays its part) sets ``WATCHDOG_USEC``, each also says
``WATCHDOG=1`` every half of it from the loop that serves its socket, so a loop that
hangs stops saying it and is killed and restarted (systemd.service(5) ``WatchdogSec=``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import grp
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from singlewindow import config as configmod
from singlewindow import logs, notices

#: Group that Postfix's daemons run in; our sockets are group-writable for it only.
POSTFIX_GROUP = "postfix"


def setup_logging(name: str, verbose: bool = False, fmt: str = "keyvalue") -> logging.Logger:
    """Log in ``[log] format`` ``fmt`` (:mod:`singlewindow.logs`). A fatal signal — the
    watchdog's SIGABRT among them — first writes every thread's Python stack to standard
    error, which tells where a hung daemon was stuck."""
    faulthandler.enable(sys.stderr)
    return logs.configure(name, fmt, verbose)


def notify(state: str) -> None:
    """Send ``state`` (e.g. ``READY=1``) to systemd if it supervises us (sd_notify(3))."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return
    if target.startswith("@"):  # abstract namespace socket
        target = "\0" + target[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(target)
        s.sendall(state.encode())


def watchdog_interval() -> float | None:
    """Seconds between two ``WATCHDOG=1``: half of ``WATCHDOG_USEC`` when a watchdog
    watches this very process (``WATCHDOG_PID``, when set, names it), else None
    (sd_watchdog_enabled(3))."""
    usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


async def watchdog() -> None:
    """Say ``WATCHDOG=1`` every :func:`watchdog_interval` for as long as the event loop
    runs this task (returns at once when no watchdog is set)."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)


async def serve_until_stopped(ready: asyncio.Event | None = None) -> None:
    """Say ``READY=1`` (and set ``ready``), then ``WATCHDOG=1`` from this event loop, until
    SIGTERM or SIGINT; then ``STOPPING=1``. Call it once the daemon serves."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notify("READY=1")
    if ready is not None:
        ready.set()
    pinging = asyncio.create_task(watchdog())
    try:
        await stop.wait()
    finally:
        pinging.cancel()
        notify("STOPPING=1")


def prepare_socket_path(path: Path) -> None:
    """Make room for a listening unix socket at ``path`` (remove a stale one)."""
    if len(os.fsencode(path)) > 100:
        raise SystemExit(f"socket path too long for AF_UNIX: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def restrict_socket(path: Path, group: str = POSTFIX_GROUP) -> None:
    """Owner and ``group`` may connect; nobody else (mode 0660)."""
    with contextlib.suppress(KeyError, PermissionError):
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    os.chmod(path, 0o660)


def count_in_files(directory: Path) -> bool:
    """From now on, this process's prometheus_client metrics are counted in files under
    ``directory`` (the client library's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``),
    where the exporter (:mod:`singlewindow.metrics`) adds up every process's, the exited
    ones' included: a count survives its daemon's restart. Call it before any metric is
    made. False (and a warning) when the directory cannot be written: the daemon runs on,
    its metrics only in memory."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        logging.getLogger("singlewindow").warning(
            "metrics stay in memory, not exported: cannot write %s: %s", directory,
            exc.strerror)
        return False
    # The library reads the variable when it opens a process's file, and chooses the
    # value class when imported (prometheus_client/values.py); set both.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from prometheus_client import values
    # prometheus_client leaves this factory unannotated.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return True


def argument_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--state-dir", help="local stack state directory (or SW_STATE_DIR)")
    parser.add_argument("--config", metavar="FILE",
                        help="the configuration file of a deployed node (or SW_CONFIG; "
                             f"default {configmod.DEFAULT_CONFIG_FILE})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    return parser


def load_config(args: argparse.Namespace) -> configmod.Config:
    """The daemon's configuration, or exit saying what is wrong with it."""
    try:
        if getattr(args, "config", None) and not args.state_dir:
            return configmod.load(Path(args.config))
        return configmod.locate(args.state_dir)
    except configmod.ConfigError as exc:
        raise SystemExit(f"configuration: {exc}") from None


def use_notices(config: configmod.Config) -> None:
    """Check the notices' override templates (``[notices] templates_dir``) and use them
    from here on, or exit naming the file. Only the daemon that writes notices (the
    transport) calls this: a broken wording must not stop the policy daemon or the
    milter, so submissions keep being accepted while the transport waits for a fix
    (Postfix keeps what it cannot hand over)."""
    try:
        notices.use(config.notices.templates_dir)
    except notices.NoticeError as exc:
        raise SystemExit(f"configuration: notices.templates_dir: {exc}") from None


def run_asyncio(name: str, description: str,
                serve: Callable[[configmod.Config], Coroutine[Any, Any, None]],
                argv: list[str] | None = None) -> None:
    """The entry point of an asyncio daemon: arguments, logging, config, then ``serve``."""
    args = argument_parser(description).parse_args(argv)
    config = load_config(args)
    setup_logging(name, args.verbose, config.log.format)
    asyncio.run(serve(config))
