"""The node's own daemons, and how to tell that a process runs and serves.

The policy daemon, the transport, the milter and the metrics exporter, each with the
module run with ``python -m`` and where it answers once ready. Used wherever the daemons
are looked at: the local stack (:mod:`singlewindow.stack`) and its supervisor start them;
``swctl health`` (:mod:`singlewindow.health`) checks them on any node, deployed or local.
No state of its own: pid files, ``/proc`` and a connection attempt.
"""

from __future__ import annotations

import contextlib
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from singlewindow.config import Config


class Daemon(NamedTuple):
    """One of the project's daemons: the module run with ``python -m``, and where it
    answers once it is ready: the unix socket Postfix connects to, or the (host, port)
    it serves over TCP (the metrics exporter's HTTP)."""

    module: str
    address: Callable[[Config], Path | tuple[str, int]]

    def ready(self, config: Config) -> bool:
        where = self.address(config)
        if isinstance(where, Path):
            return serving(where)
        return port_open(*where)

    def where(self, config: Config) -> str:
        """Where it answers, for messages."""
        where = self.address(config)
        return str(where) if isinstance(where, Path) else f"{where[0]}:{where[1]}"


#: The project's own daemons by name. The supervisor starts them, and starts one again
#: that dies.
DAEMONS: dict[str, Daemon] = {
    "policyd": Daemon("singlewindow.policy.server", lambda c: c.paths.policy_socket),
    "transport": Daemon("singlewindow.transport.server", lambda c: c.paths.lmtp_socket),
    "milter": Daemon("singlewindow.milter.server", lambda c: c.paths.milter_socket),
    "metrics": Daemon("singlewindow.metrics", lambda c: c.metrics.address),
}


def alive(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def unix_open(path: Path) -> bool:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        return True
    return False


def serving(path: Path) -> bool:
    """A daemon's socket is ready for Postfix: the daemon has made it mode 0660 for the
    postfix group (``daemon.restrict_socket``, once it listens) and it accepts a connection.
    A connection alone tells too early: root may connect before Postfix's user can."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_IMODE(mode) == 0o660 and unix_open(path)
