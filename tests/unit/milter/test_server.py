"""sw-milter as a process: real libmilter on its unix socket, no Postfix, no database."""

from __future__ import annotations

import grp
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import Milter
import pytest

from singlewindow import origin
from singlewindow.config import for_state_dir
from singlewindow.milter import handler
from tests.support.local import short_state_dir

#: Milter protocol version 6 (libmilter mfdef.h SMFI_PROT_VERSION) and SMFIC_OPTNEG.
VERSION = 6
OPTNEG = b"O"
QUIT = b"Q"


def packet(command: bytes, data: bytes = b"") -> bytes:
    # Every milter packet: 32-bit length of command + data, then the command byte.
    return struct.pack("!I", len(data) + 1) + command + data


def read_packet(sock: socket.socket) -> tuple[bytes, bytes]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "milter closed the connection"
            data += chunk
        return data
    (length,) = struct.unpack("!I", exactly(4))
    body = exactly(length)
    return body[:1], body[1:]


@pytest.fixture
def milter_process() -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    state = short_state_dir()
    socket_path = for_state_dir(state).paths.milter_socket
    socket_path.parent.mkdir(parents=True)
    socket_path.write_text("stale")  # a left-over file must not stop the start
    origin.create_key(for_state_dir(state).stamp_key_file)
    proc = subprocess.Popen(
        [sys.executable, "-m", "singlewindow.milter.server", "--state-dir", str(state)],
        stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while not (socket_path.is_socket() and stat.S_IMODE(socket_path.stat().st_mode) == 0o660):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            assert time.monotonic() < deadline, "no milter socket"
            time.sleep(0.05)
        yield proc, socket_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(state, ignore_errors=True)


def test_socket_negotiation_and_clean_stop(
        milter_process: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, path = milter_process
    assert path.stat().st_gid == grp.getgrnam("postfix").gr_gid
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(packet(OPTNEG, struct.pack("!III", VERSION, Milter.CURR_ACTS, 0x1FFFFF)))
        command, data = read_packet(sock)
        assert command == OPTNEG
        version, actions, protocol = struct.unpack("!III", data[:12])
        assert version == VERSION
        assert actions == handler.ACTIONS
        assert protocol & Milter.P_NR_RCPT and protocol & Milter.P_NOBODY
        sock.sendall(packet(QUIT))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert proc.stderr is not None
    log = proc.stderr.read().decode()
    assert "listening on" in log and "stopped" in log
    assert "ERROR" not in log and "WARNING" not in log
