"""The milter's socket: Postfix's smtpd processes connect here (``smtpd_milters``).

libmilter owns the unix socket and runs one thread per SMTP connection; this module gives
those threads the process's in-memory directory (no statement per message, issue 13),
restricts the socket to the postfix
group once libmilter has created it, and tells systemd when it is ready. libmilter stops
on SIGTERM, SIGINT or SIGHUP (its own signal thread, smfi_main(3)). There is no event loop
of ours to ping systemd's watchdog from: a thread says ``WATCHDOG=1`` each time libmilter
answers an option negotiation on the socket (:mod:`singlewindow.milter.probe`), so a
libmilter that stops accepting or serving connections stops the pings.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import Milter
import milter

from singlewindow import daemon
from singlewindow.config import Config
from singlewindow.milter import handler, probe
from singlewindow.milter.decide import Directory, SnapshotDirectory
from singlewindow.origin import StampKeyError, load_key
from singlewindow.store.snapshot import LiveDirectory

log = logging.getLogger("sw-milter")

#: The name libmilter registers (smfi_register(3)); Postfix does not use it.
NAME = "singlewindow"
#: Signals libmilter's signal thread waits for; every other thread must block them.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
#: How long to wait for libmilter to create the socket before giving up on READY.
SOCKET_WAIT_SECONDS = 30.0


class MilterService:
    """The directory side of the milter: loaded in the background, so start-up needs no
    database (a message before the first load waits for it, or defers)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.live = LiveDirectory(config.database, "sw-milter")
        self.lookups = SnapshotDirectory(self.live)

    @contextmanager
    def directory(self) -> Iterator[Directory]:
        yield self.lookups

    def close(self) -> None:
        self.live.close()


def _announce(path: Path, umask: int, ready: threading.Event | None) -> None:
    """Wait for libmilter's socket, open it to the postfix group, then report READY."""
    deadline = time.monotonic() + SOCKET_WAIT_SECONDS
    try:
        while not path.is_socket():
            if time.monotonic() > deadline:
                log.error("libmilter did not create %s", path)
                return
            time.sleep(0.02)
        daemon.restrict_socket(path)
    finally:
        os.umask(umask)
    log.info("listening on %s", path)
    daemon.notify("READY=1")
    if ready is not None:
        ready.set()
    interval = daemon.watchdog_interval()
    if interval is not None:
        _watchdog(path, interval)


def _watchdog(path: Path, interval: float) -> None:
    """Say WATCHDOG=1 after each negotiation libmilter answers, every ``interval``."""
    while True:
        started = time.monotonic()
        try:
            probe.negotiate(path, interval)
        except (OSError, probe.ProbeError) as exc:
            log.warning("watchdog: the milter did not answer on %s: %s", path, exc)
        else:
            daemon.notify("WATCHDOG=1")
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def run(config: Config, ready: threading.Event | None = None) -> None:
    """Serve until libmilter stops (a stop signal)."""
    # Threads started below (the directory's listener, the socket watcher) inherit this mask, so
    # a stop signal always reaches libmilter's sigwait thread and stops smfi_main cleanly.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        key = load_key(config.stamp_key_file)  # before anything starts: no key, no milter
    except StampKeyError as exc:
        raise SystemExit(f"configuration: {exc}") from None
    service = MilterService(config)
    path = config.paths.milter_socket
    daemon.prepare_socket_path(path)
    service.live.start()
    Milter.factory = handler.factory(service.directory, config.hub.sasl_realm, key)
    Milter.set_flags(handler.ACTIONS)
    # An exception escaping a callback defers the message rather than accepting it.
    milter.set_exception_policy(milter.TEMPFAIL)
    # libmilter binds the socket with the process umask: owner-only until _announce has
    # given it to the postfix group, so no other user can connect in between.
    previous = os.umask(0o077)
    threading.Thread(target=_announce, args=(path, previous, ready),
                     name="announce", daemon=True).start()
    try:
        Milter.runmilter(NAME, f"unix:{path}", timeout=config.milter.timeout)
    finally:
        daemon.notify("STOPPING=1")
        service.close()
        log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    parser = daemon.argument_parser("Single Window milter")
    args = parser.parse_args(argv)
    config = daemon.load_config(args)
    daemon.setup_logging("sw-milter", args.verbose, config.log.format)
    run(config)


if __name__ == "__main__":
    main()
