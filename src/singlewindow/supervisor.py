"""The local stack's supervisor: a project daemon that dies is started again.

On a deployed node systemd runs the policy daemon, the milter and the transport with
``Restart=on-failure`` (``ansible/roles/singlewindow_app``, ``sw-daemon.service.j2``). The
local stack has no systemd, so ``swctl stack up`` starts this process, detached, and it
does the same for :data:`singlewindow.services.DAEMONS`: it starts each one, keeps its pid
file current, and starts it again :data:`RESTART_SEC` after it exits, until it has been
started :data:`START_LIMIT_BURST` times within :data:`START_LIMIT_INTERVAL` seconds
(systemd.unit(5) ``StartLimitBurst=``, ``StartLimitIntervalSec=``). Each exit is logged
with its status in ``DIR/log/supervisor.log``.

It also plays the part of systemd's watchdog (systemd.service(5) ``WatchdogSec=``, the
deployed units' too): with ``[health] watchdog_sec`` set it starts each daemon with
``NOTIFY_SOCKET`` (a datagram socket ``DIR/run/NAME.notify`` it listens on) and
``WATCHDOG_USEC``; a daemon from which it hears no ``WATCHDOG=1`` (or ``READY=1``) for
that long is hung — a frozen event loop, a SIGSTOP — and gets SIGABRT (its threads' Python
stacks go to its log, :func:`singlewindow.daemon.setup_logging`), SIGKILL
:data:`WATCHDOG_KILL_TIMEOUT` seconds later if it is still there, and is started again
like any daemon that exits.

Stopping the supervisor (SIGTERM) leaves the daemons running: ``stack down`` stops it
first, then each daemon by pid; a new supervisor adopts the daemons its pid files name.
SIGHUP forgets the start limit and starts any daemon that was given up.

A test takes one daemon out of supervision with :func:`hold`, a conversation over the
control socket ``DIR/run/supervisor.sock``: ``hold NAME`` is answered ``held`` once the
daemon is stopped; ``release`` (or the holder closing the connection) is answered
``running PID`` once its successor's socket answers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from singlewindow import daemon, render, services, stack
from singlewindow.config import Config, Paths

#: Seconds between a daemon's exit and its restart (systemd.service(5) ``RestartSec=``);
#: the deployed units wait 2s, the local stack less, so crash tests finish sooner.
RESTART_SEC = 0.5
#: At most this many starts of one daemon within START_LIMIT_INTERVAL seconds; then it is
#: given up (systemd's defaults for ``StartLimitBurst=`` and ``StartLimitIntervalSec=``).
START_LIMIT_BURST = 5
START_LIMIT_INTERVAL = 10.0
#: Seconds a daemon gets between SIGTERM and SIGKILL when a hold stops it.
STOP_TIMEOUT = 10.0
#: Seconds a hung daemon gets between the watchdog's SIGABRT and SIGKILL (systemd's
#: ``TimeoutAbortSec=`` is shorter than its stop timeout too).
WATCHDOG_KILL_TIMEOUT = 5.0

# The control conversation, one line each way per step.
HOLD = "hold"  # hold NAME: stop NAME and do not restart it until released
HELD = "held"
RELEASE = "release"  # start the held daemon again (so does end of connection)
RUNNING = "running"  # running PID: the released daemon's socket answers
ERROR = "error"  # error TEXT: the request was refused or failed

log = logging.getLogger("sw-supervisor")


def describe(status: int | None) -> str:
    """An exit status as the log tells it (a Popen return code; None: not our child)."""
    if status is None:
        return "exited (status unknown: started by an earlier supervisor)"
    if status < 0:
        return f"was killed by {signal.Signals(-status).name}"
    return f"exited with status {status}"


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a daemon: its pid, and its exit status once it has exited."""

    pid: int
    exited: asyncio.Future[int | None]
    #: The daemon pings our watchdog (we gave it WATCHDOG_USEC; an adopted daemon
    #: whose environment has none, started before the watchdog was set, does not).
    watched: bool = False


def watch(pid: int, child: subprocess.Popen[bytes] | None, watched: bool = False) -> Run:
    """Watch ``pid`` until it exits: a pidfd (pidfd_open(2)) becomes readable then, for
    our own child and for a daemon adopted from an earlier supervisor alike."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[int | None] = loop.create_future()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        exited.set_result(child.wait() if child is not None else None)
        return Run(pid, exited, watched)

    def on_exit() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        exited.set_result(child.wait() if child is not None else None)

    loop.add_reader(fd, on_exit)
    return Run(pid, exited, watched)


def _has_watchdog(pid: int) -> bool:
    """Whether process ``pid`` was started with a WATCHDOG_USEC (proc(5) environ)."""
    try:
        return b"\0WATCHDOG_USEC=" in b"\0" + Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


class Supervised:
    """One daemon of the stack, started again whenever it exits unasked."""

    def __init__(self, name: str, daemon: services.Daemon, config: Config):
        self.name = name
        self.daemon = daemon
        self.module = daemon.module
        self.config = config
        self.paths = config.paths
        self.watchdog_sec = config.health.watchdog_sec
        #: When the daemon last said WATCHDOG=1 or READY=1 (monotonic clock).
        self.pinged = 0.0
        self.notify: socket.socket | None = None
        self.run: Run | None = None
        self.held = False
        self.given_up = False
        self.starts: collections.deque[float] = collections.deque()
        #: Set when ``held`` or ``given_up`` turns false.
        self.wake = asyncio.Event()

    @property
    def pid_file(self) -> Path:
        return self.paths.pid_file(self.name)

    async def supervise(self) -> None:
        if self.watchdog_sec > 0:
            self._listen()
        try:
            await self._supervise()
        finally:
            self._close()

    async def _supervise(self) -> None:
        self._adopt()
        while True:
            if self.run is None:
                await self._startable()
                self._start()
            assert self.run is not None
            run = self.run
            dog = asyncio.create_task(self._watchdog(run)) if run.watched else None
            try:
                # Shielded: cancelling supervision must not cancel the run's future, which
                # its pidfd callback resolves when the daemon exits.
                status = await asyncio.shield(run.exited)
            finally:
                if dog is not None:
                    dog.cancel()
            self._forget(run)
            if self.held:  # stopped for a hold, which logged it
                continue
            log.warning("%s (pid %d) %s; restarting in %.1fs", self.name, run.pid,
                        describe(status), RESTART_SEC)
            await asyncio.sleep(RESTART_SEC)

    async def hold(self) -> None:
        """Stop the daemon and keep it stopped until :meth:`release`."""
        self.held = True
        run = self.run
        if run is None:
            log.info("%s: held (not running)", self.name)
            return
        log.info("%s: held; stopping pid %d", self.name, run.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(run.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(run.exited), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(run.pid, signal.SIGKILL)
            await run.exited
        self._forget(run)

    async def release(self) -> int:
        """Start the daemon again; its pid once it answers (its socket, or its port)."""
        log.info("%s: released", self.name)
        self.held = False
        self.retry()
        deadline = time.monotonic() + stack.START_TIMEOUT
        while time.monotonic() < deadline:
            run = self.run
            if run is not None and not run.exited.done() and self.daemon.ready(self.config):
                return run.pid
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.name} did not answer on {self.daemon.where(self.config)} within "
                           f"{stack.START_TIMEOUT:.0f}s (see {self.name}.log)")

    def retry(self) -> None:
        """Forget the start limit (an operator's or a test's explicit start)."""
        self.starts.clear()
        self.given_up = False
        self.wake.set()

    async def _startable(self) -> None:
        while True:
            while self.held or self.given_up:
                self.wake.clear()
                await self.wake.wait()
            now = time.monotonic()
            while self.starts and now - self.starts[0] > START_LIMIT_INTERVAL:
                self.starts.popleft()
            if len(self.starts) < START_LIMIT_BURST:
                self.starts.append(now)
                return
            self.given_up = True
            log.error("%s: started %d times within %.0fs; not starting it again "
                      "(swctl stack up tries again)", self.name, START_LIMIT_BURST,
                      START_LIMIT_INTERVAL)

    def _listen(self) -> None:
        """The daemon's NOTIFY_SOCKET: its messages' sender checked (SO_PASSCRED)."""
        path = self.paths.notify_socket(self.name)
        daemon.prepare_socket_path(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.bind(str(path))
        os.chmod(path, 0o600)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._heard)
        self.notify = sock

    def _close(self) -> None:
        if self.notify is not None:
            asyncio.get_running_loop().remove_reader(self.notify.fileno())
            self.notify.close()
            self.notify = None
            self.paths.notify_socket(self.name).unlink(missing_ok=True)

    def _heard(self) -> None:
        assert self.notify is not None
        credentials = struct.calcsize("3i")
        while True:
            try:
                data, ancillary, _, _ = self.notify.recvmsg(4096, socket.CMSG_SPACE(credentials))
            except (BlockingIOError, InterruptedError):
                return
            sender = None
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    sender = struct.unpack("3i", value[:credentials])[0]
            run = self.run
            if run is None or sender != run.pid:
                continue  # not from the daemon we run now (systemd's NotifyAccess=main)
            if {b"WATCHDOG=1", b"READY=1"} & set(data.split(b"\n")):
                self.pinged = time.monotonic()

    async def _watchdog(self, run: Run) -> None:
        """Kill ``run`` once it has gone ``watchdog_sec`` without a ping; :meth:`supervise`
        cancels this when the run exits, and starts the next."""
        while (left := self.pinged + self.watchdog_sec - time.monotonic()) > 0:
            await asyncio.sleep(left)
        log.error("%s (pid %d) sent no WATCHDOG=1 for %.1fs: hung; killing it with SIGABRT",
                  self.name, run.pid, self.watchdog_sec)
        with contextlib.suppress(ProcessLookupError):
            os.kill(run.pid, signal.SIGABRT)
            os.kill(run.pid, signal.SIGCONT)  # a stopped process acts on it only then
        try:
            await asyncio.wait_for(asyncio.shield(run.exited), WATCHDOG_KILL_TIMEOUT)
        except TimeoutError:
            log.error("%s (pid %d) still there after SIGABRT: SIGKILL", self.name, run.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(run.pid, signal.SIGKILL)

    def _start(self) -> None:
        env = {}
        if self.notify is not None:
            env = {"NOTIFY_SOCKET": str(self.paths.notify_socket(self.name)),
                   "WATCHDOG_USEC": str(int(self.watchdog_sec * 1e6))}
        child = stack.spawn(self.paths, self.module, self.name, env)
        self.pinged = time.monotonic()
        self.run = watch(child.pid, child, watched=self.notify is not None)
        render.write_atomic(self.pid_file, f"{child.pid}\n")
        log.info("%s: started, pid %d", self.name, child.pid)

    def _adopt(self) -> None:
        pid = services.read_pid(self.pid_file)
        if pid is not None and services.alive(pid, self.module):
            self.pinged = time.monotonic()
            self.run = watch(pid, None, self.notify is not None and _has_watchdog(pid))
            log.info("%s: running, pid %d (adopted)", self.name, pid)

    def _forget(self, run: Run) -> None:
        if self.run is run:
            self.run = None
        if services.read_pid(self.pid_file) == run.pid:
            self.pid_file.unlink(missing_ok=True)


class Supervisor:
    def __init__(self, config: Config):
        self.paths = config.paths
        self.daemons = {name: Supervised(name, daemon, config)
                        for name, daemon in services.DAEMONS.items()}

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._retry_all)
        own_pid = self.paths.pid_file("supervisor")  # written by stack.up, as it spawned us
        path = self.paths.supervisor_socket
        daemon.prepare_socket_path(path)
        server = await asyncio.start_unix_server(self._control, str(path))
        os.chmod(path, 0o600)
        tasks = [asyncio.create_task(d.supervise(), name=d.name)
                 for d in self.daemons.values()]
        stopped = asyncio.create_task(stop.wait())
        log.info("supervising %s", ", ".join(self.daemons))
        done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        server.close()
        for task in tasks:
            task.cancel()
        path.unlink(missing_ok=True)
        if services.read_pid(own_pid) == os.getpid():
            own_pid.unlink(missing_ok=True)
        for task in tasks:
            if task in done:
                task.result()  # a supervising task ends only by a bug: let it show
        log.info("stopped; the daemons keep running")

    def _retry_all(self) -> None:
        log.info("SIGHUP: starting any daemon that was given up")
        for supervised in self.daemons.values():
            supervised.retry()

    async def _control(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        held: Supervised | None = None

        async def reply(line: str) -> None:
            writer.write(line.encode() + b"\n")
            await writer.drain()

        try:
            request = (await reader.readline()).decode(errors="replace").split()
            if len(request) != 2 or request[0] != HOLD or request[1] not in self.daemons:
                await reply(f"{ERROR} expected: {HOLD} " + "|".join(self.daemons))
                return
            supervised = self.daemons[request[1]]
            if supervised.held:
                await reply(f"{ERROR} {supervised.name} is already held")
                return
            held = supervised
            await supervised.hold()
            await reply(HELD)
            await reader.readline()  # RELEASE, or the holder has gone
            held = None
            try:
                pid = await supervised.release()
            except TimeoutError as exc:
                await reply(f"{ERROR} {exc}")
            else:
                await reply(f"{RUNNING} {pid}")
        except (OSError, asyncio.IncompleteReadError):
            pass  # the holder went away; the finally releases
        finally:
            if held is not None:
                held.held = False
                held.retry()
            writer.close()


@contextlib.contextmanager
def hold(state_dir: Path, name: str) -> Iterator[None]:
    """Take daemon ``name`` of the stack in ``state_dir`` out of supervision: stopped on
    entry, started again on exit, which returns once its socket answers. Should the
    holder die in between, the supervisor starts the daemon again by itself."""
    path = Paths(state_dir).supervisor_socket
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(STOP_TIMEOUT + stack.START_TIMEOUT + 10)
        conn.connect(str(path))
        lines = conn.makefile("rwb")
        lines.write(f"{HOLD} {name}\n".encode())
        lines.flush()
        answer = lines.readline().decode().strip()
        if answer != HELD:
            raise stack.StackError(f"supervisor refused to hold {name}: {answer!r}")
        try:
            yield
        finally:
            lines.write(f"{RELEASE}\n".encode())
            lines.flush()
            answer = lines.readline().decode().strip()
        if not answer.startswith(RUNNING + " "):
            raise stack.StackError(f"{name} did not come back after a hold: {answer!r}")


def main(argv: list[str] | None = None) -> None:
    args = daemon.argument_parser("Single Window local stack supervisor").parse_args(argv)
    config = daemon.load_config(args)
    daemon.setup_logging("sw-supervisor", args.verbose, config.log.format)
    asyncio.run(Supervisor(config).serve())


if __name__ == "__main__":
    main()
