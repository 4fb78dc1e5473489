"""The transport with ``[transport] processes = 2``: both worker processes serve LMTP
deliveries on the one socket, and a killed worker is replaced with nothing lost."""

from __future__ import annotations

import os
import secrets
import signal
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from singlewindow import config as configmod
from singlewindow import render, stack, supervisor
from singlewindow.config import Config, Paths
from tests.support import factory
from tests.support.world import World, message, wait_until, world_fixture

world = world_fixture(("co", "company"), ("ag", "agency"))


def set_processes(config: Config, count: int) -> None:
    """Restart the stack's transport with ``count`` worker processes."""
    state = config.paths.state_dir
    layout = Paths(state)
    with supervisor.hold(state, "transport"):
        current = configmod.for_state_dir(state)
        render.write_atomic(layout.config_file, configmod.to_toml(
            replace(current, transport=replace(current.transport, processes=count))))


@pytest.fixture(scope="module")
def two_workers(world: World) -> Iterator[World]:
    set_processes(world.config, 2)
    try:
        yield world
    finally:
        set_processes(world.config, 1)


def transport_pid(config: Config) -> int:
    pid = dict(stack.status(config.paths.state_dir))["transport"]
    assert pid is not None
    return pid


def children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.add(int(entry))
    return found


def workers(config: Config) -> set[int]:
    """The transport's worker processes, once there are two of them."""
    parent = transport_pid(config)
    wait_until(lambda: len(children(parent)) == 2)
    return children(parent)


def forward(world: World, subject: str) -> None:
    co, ag = world["co"], world["ag"]
    assert world.submit(co, [ag.logical], message(co, ag.logical, subject,
                                                  factory.gendec())) == {}


def arrived(world: World, subject: str) -> int:
    with world["ag"].sink.lock:
        return sum(f"Subject: {subject}".encode() in r.data
                   for r in world["ag"].sink.received)


def test_each_worker_serves_deliveries(two_workers: World) -> None:
    world = two_workers
    pids = workers(world.config)
    assert len(pids) == 2
    for serving in sorted(pids):
        # The other worker is stopped: only this one can accept the LMTP connection.
        [other] = pids - {serving}
        os.kill(other, signal.SIGSTOP)
        try:
            subject = f"worker {serving} {secrets.token_hex(4)}"
            forward(world, subject)
            wait_until(lambda s=subject: arrived(world, s) == 1, timeout=60)
        finally:
            os.kill(other, signal.SIGCONT)
    assert workers(world.config) == pids


def test_a_killed_worker_is_replaced_and_nothing_is_lost(two_workers: World) -> None:
    world = two_workers
    config = world.config
    parent = transport_pid(config)
    before = workers(config)
    victim = min(before)
    tag = secrets.token_hex(4)
    subjects = [f"kill {tag} {n:02d}" for n in range(12)]
    senders = [threading.Thread(target=forward, args=(world, s)) for s in subjects]
    for n, thread in enumerate(senders):
        thread.start()
        if n == 4:
            os.kill(victim, signal.SIGKILL)
    for thread in senders:
        thread.join()
    wait_until(lambda: len(children(parent)) == 2 and victim not in children(parent))
    after = children(parent)
    assert victim not in after and len(after - before) == 1
    log = (config.paths.log_dir / "transport.log").read_text()
    assert f"worker {victim} was killed by SIGKILL; starting another" in log

    def all_arrived() -> bool:
        world.flush()  # a delivery the victim had in hand was deferred: retry it now
        return all(arrived(world, s) >= 1 for s in subjects)

    wait_until(all_arrived, timeout=120)
    # Exactly one copy each (SPEC D4), and the parent is still the transport.
    assert [arrived(world, s) for s in subjects] == [1] * len(subjects)
    assert transport_pid(config) == parent
