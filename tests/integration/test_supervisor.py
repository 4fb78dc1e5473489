"""The local stack's supervisor: a daemon that dies comes back and mail flows again; a
dead supervisor is started again by ``stack up``; a hold keeps a daemon out (issue 10)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import time

import pytest

from singlewindow import services, stack, supervisor
from singlewindow.config import Config, Paths
from tests.support import factory
from tests.support.local import WATCHDOG_SEC
from tests.support.world import World, message, wait_until, world_fixture

world = world_fixture(("co", "company"), ("ag", "agency"))


def serving_pid(config: Config, name: str) -> int | None:
    """The pid of daemon ``name`` if its pid file names it and it is ready."""
    pid = dict(stack.status(config.paths.state_dir))[name]
    return pid if pid is not None and services.DAEMONS[name].ready(config) else None


def replaced(config: Config, name: str, old: int) -> int:
    """Wait until a new process of ``name`` serves; its pid."""
    found: list[int] = []

    def new_one() -> bool:
        pid = serving_pid(config, name)
        if pid is not None and pid != old:
            found.append(pid)
        return bool(found)

    wait_until(new_one, timeout=30)
    return found[0]


def supervisor_log(config: Config) -> str:
    return (config.paths.log_dir / "supervisor.log").read_text()


def forwards(world: World) -> None:
    co, ag = world["co"], world["ag"]
    subj = "after restart " + secrets.token_hex(6)
    assert world.submit(co, [ag.logical], message(co, ag.logical, subj,
                                                  factory.gendec())) == {}
    [copy] = ag.sink.wait_for(lambda r: f"Subject: {subj}".encode() in r.data)
    assert copy.rcpt_tos == [ag.physical]


@pytest.mark.parametrize("name", list(services.DAEMONS))
def test_killed_daemon_comes_back_and_mail_is_forwarded(world: World, name: str) -> None:
    config = world.config
    before = serving_pid(config, name)
    assert before is not None
    os.kill(before, signal.SIGKILL)
    after = replaced(config, name, before)
    assert f"{name} (pid {before}) was killed by SIGKILL; restarting" in supervisor_log(config)
    assert f"{name}: started, pid {after}" in supervisor_log(config)
    forwards(world)
    # The web console (issue 18) is one of them: it serves its pages again over TLS.
    assert services.console_answers(config, 10) is None


def test_dead_supervisor_is_started_again_and_adopts_the_daemons(world: World) -> None:
    config = world.config
    state = config.paths.state_dir
    before = dict(stack.status(state))
    old = before["supervisor"]
    assert old is not None
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: dict(stack.status(state))["supervisor"] is None)
    assert all(before[name] is not None and serving_pid(config, name) == before[name]
               for name in services.DAEMONS), "daemons stop with their supervisor"

    stack.up(state, say=lambda _: None)
    after = dict(stack.status(state))
    assert after["supervisor"] not in (None, old)
    assert {n: after[n] for n in services.DAEMONS} == {n: before[n] for n in services.DAEMONS}
    # The new supervisor watches the daemons it adopted.
    milter = after["milter"]
    assert milter is not None
    os.kill(milter, signal.SIGKILL)
    replaced(config, "milter", milter)
    assert f"milter (pid {milter}) exited (status unknown" in supervisor_log(config)
    forwards(world)


def test_hold_keeps_a_daemon_stopped_until_released(world: World) -> None:
    config = world.config
    state = config.paths.state_dir
    before = serving_pid(config, "policyd")
    assert before is not None
    with supervisor.hold(state, "policyd"):
        assert dict(stack.status(state))["policyd"] is None
        assert not Paths(state).pid_file("policyd").exists()
        with pytest.raises(stack.StackError, match="already held"), \
                supervisor.hold(state, "policyd"):
            pass
        time.sleep(supervisor.RESTART_SEC * 4)
        assert dict(stack.status(state))["policyd"] is None, "restarted while held"
    # Released: the successor answers as soon as hold() returns.
    after = serving_pid(config, "policyd")
    assert after is not None and after != before
    forwards(world)


def test_a_holder_that_goes_away_releases(world: World) -> None:
    config = world.config
    before = serving_pid(config, "policyd")
    assert before is not None
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(config.paths.supervisor_socket))
        conn.sendall(b"hold policyd\n")
        assert conn.makefile("rb").readline() == b"held\n"
    replaced(config, "policyd", before)


#: How a daemon killed by the watchdog's SIGABRT ends. faulthandler writes every thread's
#: stack from the signal handler while the other threads run on (documented as unsafe). In
#: the milter each libmilter connection thread (the milter's own watchdog probe makes one
#: every few seconds) creates and frees a Python thread state as it comes and goes, and
#: the dump can walk one just freed: the handler then dies of SIGSEGV, after writing its
#: "Fatal Python error: Aborted" header (seen once in about 25 runs). The other daemons'
#: threads are long-lived pools, and none of them has been seen to end so.
WATCHDOG_DEATHS = {name: ("SIGABRT", "SIGSEGV") if name == "milter" else ("SIGABRT",)
                   for name in services.DAEMONS}


@pytest.mark.parametrize("name", list(services.DAEMONS))
def test_a_frozen_daemon_is_killed_by_the_watchdog_and_started_again(
        world: World, name: str) -> None:
    """SIGSTOP freezes every thread, as a hung event loop stops its own pings."""
    config = world.config
    before = serving_pid(config, name)
    assert before is not None
    others = {n: serving_pid(config, n) for n in services.DAEMONS if n != name}
    frozen = time.monotonic()
    os.kill(before, signal.SIGSTOP)
    replaced(config, name, before)
    took = time.monotonic() - frozen
    # The watchdog's time, then SIGABRT (acted on at once: SIGCONT follows), the restart.
    assert took < WATCHDOG_SEC + supervisor.RESTART_SEC + 5, took
    log = supervisor_log(config)
    assert f"{name} (pid {before}) sent no WATCHDOG=1 for {WATCHDOG_SEC:.1f}s" in log
    # (A daemon adopted from an earlier supervisor is no child of this one: no status.)
    assert (any(f"{name} (pid {before}) was killed by {death}; restarting" in log
                for death in WATCHDOG_DEATHS[name])
            or f"{name} (pid {before}) exited (status unknown" in log), log[-2000:]
    # Its log shows where each of its threads was when it was killed: the SIGABRT handler
    # ran, whichever signal ended the process.
    assert "Fatal Python error: Aborted" in (config.paths.log_dir / f"{name}.log").read_text()
    # The others, which kept pinging meanwhile, were left alone.
    assert {n: serving_pid(config, n) for n in others} == others
    forwards(world)

