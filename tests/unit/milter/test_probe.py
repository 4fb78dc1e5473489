"""The milter probe (``swctl health``, the milter's watchdog): against the real sw-milter,
and against sockets that answer wrongly, not at all, or hang up."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from singlewindow import origin
from singlewindow.config import for_state_dir
from singlewindow.milter import probe
from tests.support.local import scratch_state_dir


@pytest.fixture
def state() -> Iterator[Path]:
    with scratch_state_dir() as path:
        yield path


def test_the_real_milter_answers_the_probe(state: Path) -> None:
    config = for_state_dir(state)
    origin.create_key(config.stamp_key_file)
    proc = subprocess.Popen([sys.executable, "-m", "singlewindow.milter.server",
                             "--state-dir", str(state)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                probe.negotiate(config.paths.milter_socket, timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "no milter"
                time.sleep(0.1)
        # And again: the probe quits cleanly, the milter serves the next connection.
        probe.negotiate(config.paths.milter_socket, timeout=2)
    finally:
        proc.kill()
        proc.wait()


def serve_once(path: Path, answer: Callable[[socket.socket], None]) -> threading.Thread:
    """A unix socket at ``path`` whose one connection ``answer`` handles."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                answer(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def read_packet(conn: socket.socket) -> bytes:
    (length,) = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))
    return conn.recv(length, socket.MSG_WAITALL)


def test_the_probe_offers_what_postfix_offers_and_quits(state: Path) -> None:
    seen: list[bytes] = []

    def milter(conn: socket.socket) -> None:
        seen.append(read_packet(conn))
        reply = b"O" + struct.pack("!III", 6, 0x1FF, 0)
        conn.sendall(struct.pack("!I", len(reply)) + reply)
        seen.append(read_packet(conn))

    thread = serve_once(state / "m.sock", milter)
    probe.negotiate(state / "m.sock", timeout=5)
    thread.join(5)
    assert seen == [b"O" + struct.pack("!III", 6, probe.ALL_ACTIONS, probe.ALL_STEPS), b"Q"]


def reply_with(data: bytes) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        read_packet(conn)
        conn.sendall(data)
    return answer


@pytest.mark.parametrize(("answer", "complaint"), [
    (reply_with(b""), "closed the connection"),
    (reply_with(struct.pack("!I", 13) + b"O\0\0"), "closed the connection"),
    (reply_with(struct.pack("!I", 0)), "a reply of 0 bytes"),
    (reply_with(struct.pack("!I", 1 << 20)), "a reply of 1048576 bytes"),
    (reply_with(struct.pack("!I", 1) + b"c"), "reply b'c' to the option negotiation"),
])
def test_a_wrong_answer_is_a_probe_error(state: Path, answer: Callable[[socket.socket], None],
                                         complaint: str) -> None:
    serve_once(state / "m.sock", answer)
    with pytest.raises(probe.ProbeError, match=complaint):
        probe.negotiate(state / "m.sock", timeout=5)


def test_a_hung_milter_times_out(state: Path) -> None:
    """Accepted (the kernel's backlog) but never answered: what the probe exists for."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(state / "m.sock"))
    listener.listen(1)
    with listener:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            probe.negotiate(state / "m.sock", timeout=0.5)
        assert time.monotonic() - started < 3


def test_no_milter_is_an_os_error(state: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe.negotiate(state / "none.sock", timeout=1)
