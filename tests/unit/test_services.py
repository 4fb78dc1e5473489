"""The node's daemons and the process checks on them: real processes, sockets and pid
files, no Postfix needed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from singlewindow import services
from singlewindow.config import Config, Metrics, Paths
from tests.support.local import free_port, scratch_state_dir


@pytest.fixture
def state() -> Iterator[Path]:
    with scratch_state_dir() as path:
        yield path


def test_every_daemon_is_a_module_of_the_package_and_answers_where_the_config_says(
        state: Path) -> None:
    config = replace(Config(), paths=Paths(state),
                     metrics=Metrics(listen="127.0.0.1:9155"))
    assert set(services.DAEMONS) == {"policyd", "transport", "milter", "metrics"}
    for daemon in services.DAEMONS.values():
        assert daemon.module.startswith("singlewindow.")
        __import__(daemon.module)  # each one exists
    assert services.DAEMONS["policyd"].where(config) == str(config.paths.policy_socket)
    assert services.DAEMONS["transport"].where(config) == str(config.paths.lmtp_socket)
    assert services.DAEMONS["milter"].where(config) == str(config.paths.milter_socket)
    assert services.DAEMONS["metrics"].where(config) == "127.0.0.1:9155"


def test_a_pid_file_is_read_and_a_broken_one_is_none(state: Path) -> None:
    pid_file = state / "x.pid"
    assert services.read_pid(pid_file) is None  # missing
    pid_file.write_text("")
    assert services.read_pid(pid_file) is None  # empty
    pid_file.write_text("not-a-pid\n")
    assert services.read_pid(pid_file) is None
    pid_file.write_text("  4242\n")  # Postfix's master.pid pads with blanks
    assert services.read_pid(pid_file) == 4242


def test_alive_means_that_pid_runs_the_named_program() -> None:
    child = subprocess.Popen([sys.executable, "-c",
                              "import time; print('up', flush=True); time.sleep(30)",
                              "sw-services-marker"], stdout=subprocess.PIPE)
    try:
        # Running its own code, so exec is done: before it, /proc shows pytest's cmdline.
        assert child.stdout is not None and child.stdout.readline() == b"up\n"
        assert services.alive(child.pid, "sw-services-marker")
        # A reused pid running something else is not the daemon.
        assert not services.alive(child.pid, "singlewindow.transport")
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert not services.alive(child.pid, "sw-services-marker")


def test_a_unix_socket_serves_only_once_it_is_0660_and_accepts(state: Path) -> None:
    path = state / "d.sock"
    assert not services.serving(path)  # missing
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(path))
        os.chmod(path, 0o600)
        listener.listen()
        assert not services.serving(path)  # root could connect, Postfix could not
        os.chmod(path, 0o660)
        assert services.serving(path)
    finally:
        listener.close()
    assert not services.serving(path)  # a stale socket refuses


def test_readiness_over_tcp_is_a_port_that_accepts(state: Path) -> None:
    port = free_port()
    config = replace(Config(), paths=Paths(state),
                     metrics=Metrics(listen=f"127.0.0.1:{port}"))
    metrics = services.DAEMONS["metrics"]
    assert not metrics.ready(config)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert metrics.ready(config)
        assert services.port_open("127.0.0.1", port)
    assert not services.port_open("127.0.0.1", port)
