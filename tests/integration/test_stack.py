"""swctl stack: up is idempotent, status tells the truth, down stops what up started."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from singlewindow import stack
from singlewindow.config import Config, Listeners
from tests.conftest import free_port, short_state_dir


def swctl(config: Config, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "singlewindow.cli", "--state-dir",
                           str(config.paths.state_dir), *argv],
                          capture_output=True, text=True, timeout=120, check=False)


def test_status_lists_every_component_running(sw_stack: Config) -> None:
    result = swctl(sw_stack, "stack", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    names = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert names == ["postgresql", "postfix", "dovecot", "supervisor", "policyd", "transport",
                     "milter"]
    assert all("running pid" in line for line in result.stdout.splitlines())


def test_up_again_restarts_nothing(sw_stack: Config) -> None:
    before = dict(stack.status(sw_stack.paths.state_dir))
    result = swctl(sw_stack, "stack", "up", "--demo")
    assert result.returncode == 0, result.stderr
    assert dict(stack.status(sw_stack.paths.state_dir)) == before


def test_system_configuration_untouched(sw_stack: Config) -> None:
    assert not Path("/etc/postfix/main.cf").exists() or \
        str(sw_stack.paths.state_dir) not in Path("/etc/postfix/main.cf").read_text()
    assert str(sw_stack.paths.state_dir) not in Path("/etc/dovecot/dovecot.conf").read_text()


def test_down_stops_exactly_what_up_started() -> None:
    state = short_state_dir()
    base = replace(Config(), listeners=Listeners(
        mta_port=free_port(), msa_port=free_port(), pop3_port=free_port(),
        pop3s_port=free_port(), reinject_port=free_port()))
    try:
        stack.up(state, base=base, say=lambda _: None)
        pids = dict(stack.status(state))
        assert all(pids.values()), pids
        stack.down(state, say=lambda _: None)
        assert all(pid is None for pid in dict(stack.status(state)).values())
        for pid in pids.values():
            assert pid is not None
            assert not Path(f"/proc/{pid}").exists() or \
                Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    finally:
        stack.down(state, say=lambda _: None)
        shutil.rmtree(state, ignore_errors=True)
