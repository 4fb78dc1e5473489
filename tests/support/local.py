"""What tests and benches share on this machine: free ports, short state paths, and
the transport's LMTP socket spoken to as Postfix would."""

from __future__ import annotations

import contextlib
import shutil
import smtplib
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from singlewindow.config import Config

#: The test stack's [health] watchdog_sec.
WATCHDOG_SEC = 8.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def lmtp_send(config: Config, mail_from: str, rcpts: list[str], data: bytes
              ) -> list[tuple[int, bytes]]:
    """What Postfix's lmtp(8) would hand the transport, sent straight to its socket: one
    reply per recipient (RFC 2033 4.2)."""
    with smtplib.LMTP(str(config.paths.lmtp_socket), timeout=60) as client:
        client.ehlo_or_helo_if_needed()
        assert client.mail(mail_from)[0] == 250
        for rcpt in rcpts:
            assert client.rcpt(rcpt)[0] == 250
        client.putcmd("data")
        assert client.getreply()[0] == 354
        client.send(data.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
        return [client.getreply() for _ in rcpts]


def short_state_dir() -> Path:
    # AF_UNIX paths must stay below ~100 bytes: pytest's tmp_path is far too deep.
    return Path(tempfile.mkdtemp(dir="/tmp", prefix="sw-"))


@contextlib.contextmanager
def scratch_state_dir() -> Iterator[Path]:
    """A :func:`short_state_dir`, removed with all it holds when the block ends."""
    path = short_state_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
