"""The POP3 session lock, as Dovecot's dotlock makes it (no Dovecot needed here)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from singlewindow import replies
from singlewindow.transport import maildrop


def maildir(tmp_path: Path) -> Path:
    path = maildrop.lock_path(tmp_path, "clerk")
    path.parent.mkdir(parents=True)
    return path


def test_lock_taken_and_released(tmp_path: Path) -> None:
    lock = maildir(tmp_path)
    with maildrop.session_lock(lock):
        assert lock.read_text().startswith(f"{os.getpid()}:")
    assert not lock.exists()


def test_held_lock_refuses(tmp_path: Path) -> None:
    lock = maildir(tmp_path)
    lock.write_text("4242:pop3host")  # a POP3 session's lock
    with pytest.raises(maildrop.Locked), maildrop.session_lock(lock):
        pass
    assert lock.read_text() == "4242:pop3host"  # never taken from a live session


def test_stale_lock_is_broken(tmp_path: Path) -> None:
    lock = maildir(tmp_path)
    lock.write_text("4242:pop3host")
    old = time.time() - maildrop.STALE_SECONDS - 5
    os.utime(lock, (old, old))
    with maildrop.session_lock(lock):
        assert lock.read_text().startswith(f"{os.getpid()}:")


def test_no_maildir_needs_no_lock(tmp_path: Path) -> None:
    lock = maildrop.lock_path(tmp_path, "new")
    with maildrop.session_lock(lock):
        assert not lock.exists()


def test_locked_delivery_defers_with_4_2_1(tmp_path: Path) -> None:
    lock = maildir(tmp_path)
    lock.write_text("4242:pop3host")
    reply = maildrop.deliver(Path("/bin/true"), tmp_path / "dovecot.conf", tmp_path, "clerk",
                             "a@sw.test", b"x")
    assert reply == replies.MAILDROP_LOCKED
    assert (reply.code, reply.enhanced) == (450, "4.2.1")


def test_failed_agent_defers_never_bounces(tmp_path: Path) -> None:
    reply = maildrop.deliver(Path("/bin/false"), tmp_path / "dovecot.conf", tmp_path, "clerk",
                             "a@sw.test", b"x")
    assert reply.transient
