"""The supervisor's restart policy, with real processes that exit at once (no stack)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time

import pytest

from singlewindow import stack, supervisor
from singlewindow.config import Config, Paths
from tests.conftest import short_state_dir


async def _given_up(supervised: supervisor.Supervised, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not supervised.given_up:
        assert time.monotonic() < deadline, "the supervisor never gave up"
        await asyncio.sleep(0.05)


def test_a_daemon_that_keeps_dying_is_given_up_until_retried(
        caplog: pytest.LogCaptureFixture) -> None:
    state = short_state_dir()
    layout = stack.Layout(state)
    layout.log_dir.mkdir()
    # A module that does not exist: python -m exits with status 1 at once.
    supervised = supervisor.Supervised(
        "crasher", stack.Daemon("singlewindow.no_such_daemon",
                                socket=lambda c: c.paths.run_dir / "crasher.sock"),
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
