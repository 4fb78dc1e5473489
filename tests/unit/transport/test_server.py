"""The routing transport's process wiring, without Postfix: one process serving LMTP, or
a parent with pre-forked workers on one shared socket that restarts a dead worker, passes
SIGHUP on and stops them all on SIGTERM. Run as real processes against the test
database; LMTP answered by smtplib."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from singlewindow import config as configmod
from singlewindow.config import Config, Paths, Transport
from singlewindow.origin import create_key
from singlewindow.transport import server
from tests.support.local import scratch_state_dir


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def state() -> Iterator[Path]:
    with scratch_state_dir() as path:
        yield path


def transport_config(database_config: Config, state: Path, processes: int) -> Path:
    """A config file for a transport in ``state`` on the test database, its stamp key
    made; returns the file."""
    config = replace(database_config, paths=Paths(state_dir=state),
                     transport=replace(Transport(), processes=processes))
    create_key(config.stamp_key_file)
    file = state / "transport.toml"
    file.write_text(configmod.to_toml(config))
    return file


def lhlo(path: Path) -> int:
    with smtplib.LMTP(str(path), timeout=10) as client:
        code, _ = client.ehlo("edge.test")
        return code


def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def catches_sighup(pid: int) -> bool:
    """The process has a handler for SIGHUP (proc(5): SigCgt)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(ln for ln in status.splitlines() if ln.startswith("SigCgt:")).split()[1],
                 16)
    return bool(caught & (1 << (signal.SIGHUP - 1)))


class Running:
    """``python -m singlewindow.transport.server --config FILE``, its log read back and
    its systemd notifications received."""

    def __init__(self, file: Path, state: Path) -> None:
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(state / "notify"))
        self.notify.settimeout(30)
        self.log = state / "transport.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "singlewindow.transport.server", "--config", str(file)],
                stdout=log, stderr=log,
                env={**os.environ, "NOTIFY_SOCKET": str(state / "notify")})

    def said(self) -> bytes:
        return self.notify.recv(64)

    def text(self) -> str:
        return self.log.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()


@pytest.fixture
def running(database_config: Config, state: Path,
            request: pytest.FixtureRequest) -> Iterator[tuple[Running, Path]]:
    processes: int = request.param
    found = Running(transport_config(database_config, state, processes), state)
    try:
        yield found, Paths(state_dir=state).lmtp_socket
    finally:
        found.close()


@pytest.mark.parametrize("running", [1], indirect=True)
def test_one_process_serves_lmtp_until_sigterm(running: tuple[Running, Path]) -> None:
    proc, path = running
    assert proc.said() == b"READY=1"
    assert lhlo(path) == 250
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    assert children(proc.proc.pid) == set()  # no workers: it serves itself
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=30) == 0
    assert proc.said() == b"STOPPING=1"


@pytest.mark.parametrize("running", [2], indirect=True)
def test_workers_share_the_socket_and_a_dead_one_is_replaced(
        running: tuple[Running, Path]) -> None:
    proc, path = running
    parent = proc.proc.pid
    assert proc.said() == b"READY=1"  # the parent's, once the socket listens
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    workers = children(parent)
    assert len(workers) == 2
    assert "served by 2 worker processes: " + " ".join(map(str, sorted(workers))) \
        in proc.text()
    wait_until(lambda: lhlo(path) == 250, "a worker's answer")

    dead = min(workers)
    os.kill(dead, signal.SIGKILL)
    wait_until(lambda: len(children(parent) - {dead}) == 2, "a replacement worker")
    assert f"worker {dead} was killed by SIGKILL; starting another in 0.5 s" in proc.text()
    (new,) = children(parent) - workers
    # The parent logs it after the fork: the child may be seen first.
    wait_until(lambda: f"worker {new} started" in proc.text(), "the replacement's log line")
    assert lhlo(path) == 250

    # SIGHUP reaches every worker: each reloads the MIG (once each has its handler: the
    # replacement may still be starting).
    wait_until(lambda: all(catches_sighup(pid) for pid in children(parent)), "handlers")
    os.kill(parent, signal.SIGHUP)
    wait_until(lambda: proc.text().count("MIG reloaded: ") == 2, "two MIG reloads")

    now = children(parent)
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=30) == 0
    assert "stopping 2 workers" in proc.text()
    assert all(not Path(f"/proc/{pid}").exists() for pid in now)
    assert not path.exists()
    assert proc.said() == b"STOPPING=1"


def test_fewer_than_one_process_is_a_configuration_error(database_config: Config,
                                                         state: Path) -> None:
    file = transport_config(database_config, state, 0)
    done = subprocess.run([sys.executable, "-m", "singlewindow.transport.server",
                           "--config", str(file)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "configuration: transport.processes must be at least 1" in done.stderr


def test_bind_listens_on_a_fresh_socket_postfix_may_use(state: Path) -> None:
    config = Config(paths=Paths(state_dir=state))
    path = config.paths.lmtp_socket
    path.parent.mkdir(parents=True)
    path.write_text("stale")
    with server.bind(config) as sock:
        assert path.is_socket() and stat.S_IMODE(path.stat().st_mode) == 0o660
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            conn, _ = sock.accept()
            conn.close()


def in_a_process(script: str) -> dict[str, object]:
    """Run ``script`` (with ``server`` imported) in a fresh process: waitpid(-1) there
    sees only the children it makes. It prints one JSON object."""
    code = "import json, os, signal, time\nfrom singlewindow.transport import server\n" \
        + textwrap.dedent(script)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    found: dict[str, object] = json.loads(done.stdout)
    return found


def test_describe_and_reap_the_exited_workers() -> None:
    found = in_a_process("""
        def child(then):
            pid = os.fork()
            if pid == 0:
                then()
            return pid
        nothing = server.reap()
        exits = child(lambda: os._exit(3))
        killed = child(lambda: (time.sleep(60), os._exit(0)))
        os.kill(killed, signal.SIGKILL)
        time.sleep(0.5)
        done = dict(server.reap())
        print(json.dumps({"nothing": nothing, "exits": server.describe(done[exits]),
                          "killed": server.describe(done[killed]), "count": len(done),
                          "after": server.reap()}))
    """)
    assert found == {"nothing": [], "exits": "exited with status 3",
                     "killed": "was killed by SIGKILL", "count": 2, "after": []}


def test_stop_terms_then_kills_what_is_left() -> None:
    found = in_a_process("""
        server.STOP_TIMEOUT = 1.0
        def child(ignore_term):
            pid = os.fork()
            if pid == 0:
                if ignore_term:
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                time.sleep(60)
                os._exit(0)
            return pid
        polite, stubborn = child(False), child(True)
        time.sleep(0.3)
        workers = {polite, stubborn}
        started = time.monotonic()
        server.stop(workers)
        took = time.monotonic() - started
        gone = [not os.path.exists(f"/proc/{pid}") for pid in (polite, stubborn)]
        print(json.dumps({"took": took, "gone": gone, "left": sorted(workers) == [stubborn],
                          "reaped": server.reap()}))
    """)
    # The polite one ended at SIGTERM; the other was killed after STOP_TIMEOUT, and both
    # were waited for (no zombie left to reap).
    took = found.pop("took")
    assert isinstance(took, float) and 1.0 <= took < 3.0
    assert found == {"gone": [True, True], "left": True, "reaped": []}
