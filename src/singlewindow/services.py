"""The node's own daemons, and how to tell that a process runs and serves.

The policy daemon, the transport, the milter, the metrics exporter and the web console,
each with the module run with ``python -m`` and where it answers once ready. Used
wherever the daemons are looked at: the local stack (:mod:`singlewindow.stack`) and its
supervisor start them; ``swctl health`` (:mod:`singlewindow.health`) checks them on any
node, deployed or local.
No state of its own: pid files, ``/proc`` and a connection attempt (for the console an
HTTPS request, :func:`console_answers`).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import stat
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from singlewindow.config import Config


class Daemon(NamedTuple):
    """One of the project's daemons: the module run with ``python -m``, and where it
    answers once it is ready: the unix socket Postfix connects to, or the (host, port)
    it serves over TCP (the metrics exporter's HTTP, the console's HTTPS)."""

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
    "console": Daemon("singlewindow.console.server", lambda c: c.console.address),
}

#: The console's page that any client may ask for, logged in or not: what
#: :func:`console_answers` requests.
CONSOLE_PROBE_PATH = "/login"


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


def console_trust(config: Config) -> Path:
    """What a client on the node verifies the console's certificate against: the
    deployment's CA (``[tls] ca_file``, or the local stack's own CA) where it exists, else
    the console's certificate itself (a node's self-signed one, or the operator's chain)."""
    return config.ca_file if config.ca_file.exists() else config.console_cert_file


def https_answers(host: str, port: int, path: str, trust: Path, timeout: float) -> str | None:
    """None when ``host:port`` completes a TLS handshake whose certificate chains to a
    certificate in ``trust`` and answers ``GET path`` with 200; else what went wrong.

    The name is not checked, only the chain: the console is reached by its listen address,
    which a node's certificate rarely names (a management address). A certificate in
    ``trust`` is an anchor even when it is not a CA's (a pinned leaf: partial chain)."""
    try:
        context = ssl.create_default_context(cafile=str(trust))
        context.check_hostname = False
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        client = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        try:
            client.request("GET", path, headers={"User-Agent": "singlewindow-health"})
            status = client.getresponse().status
        finally:
            client.close()
    except ssl.SSLError as exc:
        return f"TLS: {exc.reason or exc}"
    except TimeoutError:
        return "no answer in time"
    except (OSError, http.client.HTTPException) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return (why or type(exc).__name__).lower()
    return None if status == 200 else f"answers GET {path} with HTTP {status}"


def console_answers(config: Config, timeout: float) -> str | None:
    """The web console answers over verified TLS (:func:`https_answers` on its
    ``[console] listen``, :func:`console_trust`); None when it does."""
    host, port = config.console.address
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return https_answers(host, port, CONSOLE_PROBE_PATH, console_trust(config), timeout)
