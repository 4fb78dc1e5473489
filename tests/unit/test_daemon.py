"""What every long-running service shares: sd_notify over a real datagram socket, the
watchdog's pace, SIGTERM, the unix socket's path and mode, the metrics directory, and the
entry point (arguments, config, logging) run as a process."""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from singlewindow import config as configmod
from singlewindow import daemon


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """systemd's end: NOTIFY_SOCKET names a datagram socket this test reads."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        yield sock


def test_notify_sends_the_state_to_systemd(notify_socket: socket.socket) -> None:
    daemon.notify("READY=1")
    daemon.notify("STATUS=serving")
    assert [notify_socket.recv(64), notify_socket.recv(64)] == [b"READY=1", b"STATUS=serving"]


def test_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"sw-test-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        daemon.notify("READY=1")
        assert sock.recv(64) == b"READY=1"


def test_without_systemd_or_its_socket_notify_does_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    daemon.notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    daemon.notify("READY=1")  # no such socket: no error, the daemon runs on


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert daemon.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert daemon.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # another process's
    assert daemon.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert daemon.watchdog_interval() == 15.0


@pytest.mark.parametrize("usec", ["0", "-5", "soon", ""])
def test_no_watchdog_for_a_value_that_is_not_a_positive_number(
        monkeypatch: pytest.MonkeyPatch, usec: str) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    assert daemon.watchdog_interval() is None


def test_the_watchdog_pings_every_half_interval(notify_socket: socket.socket,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s

    async def ping_for(seconds: float) -> None:
        task = asyncio.create_task(daemon.watchdog())
        await asyncio.sleep(seconds)
        task.cancel()

    asyncio.run(ping_for(0.45))
    notify_socket.settimeout(0.2)
    pings = []
    try:
        while True:
            pings.append(notify_socket.recv(64))
    except TimeoutError:
        pass
    assert set(pings) == {b"WATCHDOG=1"} and 4 <= len(pings) <= 6, pings


def test_without_a_watchdog_the_task_ends_at_once(notify_socket: socket.socket) -> None:
    asyncio.run(asyncio.wait_for(daemon.watchdog(), 1))
    notify_socket.settimeout(0.1)
    with pytest.raises(TimeoutError):
        notify_socket.recv(64)


def test_serve_until_stopped_says_ready_then_stopping_on_sigterm(
        notify_socket: socket.socket) -> None:
    async def serve() -> float:
        ready = asyncio.Event()
        serving = asyncio.create_task(daemon.serve_until_stopped(ready))
        await ready.wait()
        sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)  # the loop's handler takes it
        await asyncio.wait_for(serving, 5)
        return time.monotonic() - sent

    assert asyncio.run(serve()) < 1
    assert [notify_socket.recv(64), notify_socket.recv(64)] == [b"READY=1", b"STOPPING=1"]


def test_prepare_socket_path_makes_room(tmp_path: Path) -> None:
    path = tmp_path / "run" / "sub" / "policy.sock"
    daemon.prepare_socket_path(path)
    assert path.parent.is_dir() and not path.exists()
    path.write_text("a stale socket file")
    daemon.prepare_socket_path(path)
    assert not path.exists()


def test_a_socket_path_too_long_for_af_unix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 101)
    with pytest.raises(SystemExit, match="socket path too long for AF_UNIX"):
        daemon.prepare_socket_path(path)
    assert not path.parent.joinpath("x" * 101).exists()


def test_restrict_socket_lets_owner_and_postfix_in(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    daemon.prepare_socket_path(path)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        path.chmod(0o777)
        daemon.restrict_socket(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        assert path.stat().st_gid == grp.getgrnam(daemon.POSTFIX_GROUP).gr_gid
        # A group that does not exist here: the mode still changes, the group stays.
        path.chmod(0o777)
        daemon.restrict_socket(path, group="no-such-group-here")
        assert stat.S_IMODE(path.stat().st_mode) == 0o660


def test_metrics_stay_in_memory_when_their_directory_cannot_be_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING):
        assert daemon.count_in_files(blocker / "metrics") is False
    assert "metrics stay in memory, not exported: cannot write" in caplog.text
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_load_config_reads_the_file_or_the_state_directory(tmp_path: Path) -> None:
    file = tmp_path / "singlewindow.toml"
    file.write_text(configmod.to_toml(replace(
        configmod.Config(), hub=replace(configmod.Config().hub, domain="file.test"))))
    parser = daemon.argument_parser("test")
    config = daemon.load_config(parser.parse_args(["--config", str(file)]))
    assert config.hub.domain == "file.test"
    # --state-dir wins: the local stack's config.
    state = tmp_path / "state"
    config = daemon.load_config(parser.parse_args(["--config", str(file),
                                                   "--state-dir", str(state)]))
    assert config.paths.state_dir == state.resolve() and config.hub.domain != "file.test"
    file.write_text("[hub]\nno_such_option = 1\n")
    with pytest.raises(SystemExit, match=r"^configuration: "):
        daemon.load_config(parser.parse_args(["--config", str(file)]))


def test_run_asyncio_is_a_daemons_entry_point(tmp_path: Path) -> None:
    """Arguments, the config, logging in the configured format, then ``serve``: in a
    process of its own, as a console script runs it."""
    file = tmp_path / "singlewindow.toml"
    file.write_text('[hub]\ndomain = "entry.test"\n\n[log]\nformat = "json"\n')
    script = textwrap.dedent("""
        import logging, sys
        from singlewindow import daemon

        async def serve(config):
            logging.getLogger("sw-test").info("serving %s", config.hub.domain)
            logging.getLogger("sw-test").debug("details")

        daemon.run_asyncio("sw-test", "a test daemon", serve, sys.argv[1:])
    """)
    done = subprocess.run([sys.executable, "-c", script, "--config", str(file)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert '"serving entry.test"' in done.stderr and "details" not in done.stderr
    verbose = subprocess.run([sys.executable, "-c", script, "--config", str(file), "-v"],
                             capture_output=True, text=True, timeout=60)
    assert "details" in verbose.stderr
    bad = subprocess.run([sys.executable, "-c", script, "--config", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "configuration: " in bad.stderr
