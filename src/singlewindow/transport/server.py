"""The routing transport's process: Postfix's lmtp(8) reaches it on a unix socket (D3).

Owns the socket, the connection pool and the re-injection client; the decisions are in
:mod:`singlewindow.transport.router`. A long-running service, so a message costs no
interpreter start-up, and a crash means Postfix retries (defer), never a bounce.

With ``[transport] processes`` above 1 the process binds the socket once and pre-forks
that many workers that accept on it (the kernel hands each connection to one of them), as
Postfix's own master(8) does for its services: one GIL per worker, so the transport's CPU
spreads over cores. The parent only supervises: it starts a worker again
:data:`RESTART_SEC` after one dies (a delivery the dead worker had in hand is deferred by
Postfix's lmtp client and retried, SPEC D4 keeps the copy single), passes SIGHUP (MIG
reload) on, and on SIGTERM stops every worker and waits for it. It gives up, and exits
with an error for systemd or the local supervisor to act on, when workers keep dying
(:data:`START_LIMIT_BURST` starts within :data:`START_LIMIT_INTERVAL` seconds).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import functools
import logging
import os
import signal
import socket
import time
from typing import Any

from psycopg_pool import ConnectionPool

from singlewindow import daemon, mig, store
from singlewindow.config import Config
from singlewindow.origin import StampKeyError
from singlewindow.transport import heap
from singlewindow.transport.forward import Injector, client_context
from singlewindow.transport.lmtp import LmtpServer
from singlewindow.transport.retry import Retrier
from singlewindow.transport.router import Router

log = logging.getLogger("sw-transport")

#: Seconds between a worker's death and its successor's start.
RESTART_SEC = 0.5
#: The parent gives up when workers were started this often within START_LIMIT_INTERVAL
#: seconds (beyond the first start of each): a worker that cannot run.
START_LIMIT_BURST = 5
START_LIMIT_INTERVAL = 10.0
#: Seconds the workers get between SIGTERM and SIGKILL when the parent stops: less than
#: the 10 s the local stack and its supervisor give the parent itself.
STOP_TIMEOUT = 8.0
#: prctl(2) option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1
#: Connections the kernel queues on the shared socket before a worker accepts them.
BACKLOG = 128


def make_router(config: Config) -> tuple[Router, ConnectionPool[Any]]:
    pool = store.pool(config.database, config.transport.workers)
    injector = Injector("127.0.0.1", config.listeners.reinject_port, config.hub.hostname,
                        tls=functools.partial(client_context, config.reinject_cert_file,
                                              config.reinject_key_file, config.cert_file))
    retrier = Retrier(config.transport.postqueue, config.postfix_config)
    return Router(config, pool, injector, retrier), pool


async def serve(config: Config, ready: asyncio.Event | None = None,
                sock: socket.socket | None = None) -> None:
    """Serve LMTP until SIGTERM; on ``sock`` (bound by the parent) as a worker, else on
    the configured socket path."""
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
    if sock is None:
        daemon.prepare_socket_path(path)
    server = LmtpServer(path, router, finish=router.finish, hostname=config.hub.hostname,
                        data_size_limit=config.transport.lmtp_size_limit, sock=sock)
    loop = asyncio.get_running_loop()
    # The MIG is compiled once at start and again on SIGHUP (an operator added a message
    # type); a MIG with errors leaves the previous one in force.
    loop.add_signal_handler(signal.SIGHUP, reload_mig)
    mig.registry()
    async with server:
        if sock is None:
            daemon.restrict_socket(path)
        await daemon.serve_until_stopped(ready)
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


def bind(config: Config) -> socket.socket:
    """The LMTP socket, bound and listening, for the workers to share."""
    path = config.paths.lmtp_socket
    daemon.prepare_socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(BACKLOG)
    # Mode 0660 last: it tells the local stack that the socket is ready (services.serving).
    daemon.restrict_socket(path)
    return sock


#: What the parent waits for; blocked in the parent, unblocked again in each worker.
PARENT_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}


def start_worker(config: Config, sock: socket.socket) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    # The worker: a fresh event loop, pool and threads of its own (none exist before the
    # fork: the parent starts none). Only the parent talks to systemd (NotifyAccess=main).
    status = 1
    try:
        # A parent killed outright (SIGKILL) takes its workers with it: no orphan keeps
        # serving a socket whose path a new transport replaces.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            return status
        os.environ.pop("NOTIFY_SOCKET", None)
        for sig in PARENT_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, PARENT_SIGNALS)
        asyncio.run(serve(config, sock=sock))
        status = 0
    except SystemExit as exc:
        log.error("worker %d: %s", os.getpid(), exc)
    except BaseException:
        log.exception("worker %d failed", os.getpid())
    finally:
        logging.shutdown()
        os._exit(status)


def supervise(config: Config) -> None:
    """The parent of ``[transport] processes`` workers (see the module docstring)."""
    count = config.transport.processes
    signal.pthread_sigmask(signal.SIG_BLOCK, PARENT_SIGNALS)
    sock = bind(config)
    workers: set[int] = set()
    starts: collections.deque[float] = collections.deque()
    due: list[float] = []  # when each replacement is to start
    for _ in range(count):
        workers.add(start_worker(config, sock))
    log.info("LMTP on %s served by %d worker processes: %s", config.paths.lmtp_socket,
             count, " ".join(map(str, sorted(workers))))
    # The socket listens already: a connection waits in its queue until a worker takes it.
    daemon.notify("READY=1")
    # Only this process talks to systemd, so it pings the watchdog, from this loop; a
    # worker that dies is its business (below).
    interval = daemon.watchdog_interval()
    pinged = 0.0
    failed = False
    try:
        while True:
            now = time.monotonic()
            if interval is not None and now - pinged >= interval:
                daemon.notify("WATCHDOG=1")
                pinged = now
            while due and due[0] <= now:
                due.pop(0)
                starts.append(now)
                while starts and starts[0] < now - START_LIMIT_INTERVAL:
                    starts.popleft()
                if len(starts) > START_LIMIT_BURST:
                    log.error("workers keep dying (%d starts within %.0f s); giving up",
                              len(starts), START_LIMIT_INTERVAL)
                    failed = True
                    return
                pid = start_worker(config, sock)
                workers.add(pid)
                log.info("worker %d started", pid)
            timeout = max(0.0, due[0] - now) if due else 60.0
            if interval is not None:
                timeout = min(timeout, interval)
            info = signal.sigtimedwait(PARENT_SIGNALS, timeout)
            if info is None:
                continue
            if info.si_signo in (signal.SIGTERM, signal.SIGINT):
                log.info("stopping %d workers", len(workers))
                return
            if info.si_signo == signal.SIGHUP:
                for pid in workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGHUP)
                continue
            for pid, status in reap():
                if pid in workers:
                    workers.discard(pid)
                    log.error("worker %d %s; starting another in %.1f s", pid,
                              describe(status), RESTART_SEC)
                    due.append(time.monotonic() + RESTART_SEC)
    finally:
        daemon.notify("STOPPING=1")
        stop(workers)
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            config.paths.lmtp_socket.unlink()
        if failed:
            raise SystemExit(1)


def reap() -> list[tuple[int, int]]:
    """The workers that have exited, with their wait statuses."""
    done: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done.append((pid, status))


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def stop(workers: set[int]) -> None:
    """SIGTERM to each worker, then wait; SIGKILL what is left after STOP_TIMEOUT."""
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while workers and time.monotonic() < deadline:
        for pid, _status in reap():
            workers.discard(pid)
        time.sleep(0.05)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def main(argv: list[str] | None = None) -> None:
    heap.tune()  # before any thread: large messages give their memory back (issue 13)
    description = "Single Window routing transport (LMTP)"
    args = daemon.argument_parser(description).parse_args(argv)
    config = daemon.load_config(args)
    daemon.use_notices(config)  # the transport writes the notices (issue 17)
    daemon.setup_logging("sw-transport", args.verbose, config.log.format)
    if config.transport.processes < 1:
        raise SystemExit("configuration: transport.processes must be at least 1")
    if config.transport.processes == 1:
        asyncio.run(serve(config))
    else:
        supervise(config)


if __name__ == "__main__":
    main()
