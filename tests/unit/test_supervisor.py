"""The supervisor's restart policy, with real processes that exit at once (no stack)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from singlewindow import services, supervisor
from singlewindow.config import Config, Health, Paths
from tests.support.local import short_state_dir
from tests.unit import pinger


async def _given_up(supervised: supervisor.Supervised, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not supervised.given_up:
        assert time.monotonic() < deadline, "the supervisor never gave up"
        await asyncio.sleep(0.05)


def test_a_daemon_that_keeps_dying_is_given_up_until_retried(
        caplog: pytest.LogCaptureFixture) -> None:
    state = short_state_dir()
    layout = Paths(state)
    layout.log_dir.mkdir()
    # A module that does not exist: python -m exits with status 1 at once.
    supervised = supervisor.Supervised(
        "crasher", services.Daemon("singlewindow.no_such_daemon",
                                lambda c: c.paths.run_dir / "crasher.sock"),
        Config(paths=Paths(state_dir=state)))

    async def scenario() -> tuple[int, int]:
        task = asyncio.create_task(supervised.supervise())
        await _given_up(supervised, supervisor.START_LIMIT_INTERVAL)
        given_up_after = len(supervised.starts)
        supervised.retry()  # what SIGHUP (stack up) does
        await asyncio.sleep(supervisor.RESTART_SEC / 2)
        started_again = len(supervised.starts)
        task.cancel()
        if supervised.run is not None:
            await supervised.run.exited  # reaped before the loop closes
        return given_up_after, started_again

    try:
        with caplog.at_level(logging.INFO, logger="sw-supervisor"):
            given_up_after, started_again = asyncio.run(scenario())
    finally:
        shutil.rmtree(state, ignore_errors=True)
    assert given_up_after == supervisor.START_LIMIT_BURST
    assert started_again == 1
    exits = [r.getMessage() for r in caplog.records if "exited with status 1" in r.getMessage()]
    assert len(exits) >= supervisor.START_LIMIT_BURST
    assert all(m.startswith("crasher (pid ") for m in exits)
    assert any(r.levelno == logging.ERROR and "not starting it again" in r.getMessage()
               for r in caplog.records)


def test_exit_status_as_logged() -> None:
    assert supervisor.describe(-9) == "was killed by SIGKILL"
    assert supervisor.describe(3) == "exited with status 3"
    assert "status unknown" in supervisor.describe(None)


def test_a_daemon_that_stops_pinging_is_killed_and_started_again(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A real process that pings (as the daemons do) is left alone; once it stops, it is
    killed within the watchdog time and started again."""
    state = short_state_dir()
    layout = Paths(state)
    layout.log_dir.mkdir()
    (state / "run").mkdir()
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PYTHONPATH", f"{repo / 'src'}:{repo}")
    watchdog = 1.0
    config = Config(paths=Paths(state_dir=state), health=Health(watchdog_sec=watchdog))
    supervised = supervisor.Supervised(
        "pinger", services.Daemon("tests.unit.pinger", lambda c: state / "run" / "pinger.sock"),
        config)

    async def scenario() -> tuple[int, float, int]:
        task = asyncio.create_task(supervised.supervise())
        await asyncio.sleep(0.2)
        assert supervised.run is not None
        first, started = supervised.run.pid, time.monotonic()
        status = await supervised.run.exited
        lived = time.monotonic() - started
        assert status == -signal.SIGABRT
        while supervised.run is None or supervised.run.pid == first:
            await asyncio.sleep(0.05)
        second = supervised.run.pid
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        os.kill(second, signal.SIGKILL)
        await supervised.run.exited
        return first, lived, second

    try:
        with caplog.at_level(logging.INFO, logger="sw-supervisor"):
            first, lived, second = asyncio.run(scenario())
    finally:
        shutil.rmtree(state, ignore_errors=True)
    # Alive while it pinged (PING_FOR), killed within the watchdog time after.
    assert pinger.PING_FOR < lived < pinger.PING_FOR + watchdog + 1.0, lived
    messages = [r.getMessage() for r in caplog.records]
    assert f"pinger (pid {first}) sent no WATCHDOG=1 for 1.0s: hung; killing it with " \
           "SIGABRT" in messages
    assert f"pinger: started, pid {second}" in messages
    assert not layout.notify_socket("pinger").exists()  # removed when supervision ends
