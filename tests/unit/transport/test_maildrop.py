"""The POP3 session lock by Dovecot 2.3's dotlock rules (no Dovecot needed here; the
integration test ``test_maildrop_lock`` holds it with the real POP3 server)."""

from __future__ import annotations

import multiprocessing
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from singlewindow import replies
from singlewindow.transport import maildrop

HOST = socket.gethostname()
OLD = time.time() - 10 * maildrop.STALE_SECONDS


def maildir(tmp_path: Path) -> Path:
    path = maildrop.lock_path(tmp_path, "clerk")
    path.parent.mkdir(parents=True)
    return path


@pytest.fixture
def live_pid() -> Iterator[int]:
    """A process of this host that lives through the test (a POP3 session's)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: kill(pid, 0) answers ESRCH
    return proc.pid


def age(path: Path, when: float = OLD) -> None:
    os.utime(path, (when, when))


def test_lock_holds_pid_and_host_and_is_released(tmp_path: Path) -> None:
    lock = maildir(tmp_path)
    with maildrop.session_lock(lock):
        assert lock.read_bytes() == f"{os.getpid()}:{HOST}".encode()  # no newline
    assert not lock.exists()


def test_live_session_pid_holds_however_old_its_lock(tmp_path: Path, live_pid: int) -> None:
    """Dovecot touches its lock only every 300 s; its live pid is what keeps it."""
    lock = maildir(tmp_path)
    lock.write_text(f"{live_pid}:{HOST}")
    age(lock)
    with pytest.raises(maildrop.Locked), maildrop.session_lock(lock):
        pass
    assert lock.read_text() == f"{live_pid}:{HOST}"  # never taken from a live session
    assert not maildrop.stale(os.lstat(lock), lock.read_bytes(), time.time() + 10**6)


def test_dead_session_pid_is_stale_once_two_seconds_old(tmp_path: Path) -> None:
    lock = maildir(tmp_path)
    gone = dead_pid()
    lock.write_text(f"{gone}:{HOST}")
    # A fresh lock is not read at all (STALE_PID_CHECK_SECS): held.
    with pytest.raises(maildrop.Locked), maildrop.session_lock(lock):
        pass
    age(lock, time.time() - 3)
    with maildrop.session_lock(lock):
        assert lock.read_text() == f"{os.getpid()}:{HOST}"
    assert not lock.exists()


def test_lock_of_another_host_is_stale_only_after_300_s_unchanged(tmp_path: Path) -> None:
    lock = maildir(tmp_path)
    lock.write_text("4242:pop3-backend")
    age(lock)  # utime sets the ctime: Dovecot sees a change just now
    with pytest.raises(maildrop.Locked), maildrop.session_lock(lock):
        pass
    assert lock.read_text() == "4242:pop3-backend"
    st, data = os.lstat(lock), lock.read_bytes()
    assert not maildrop.stale(st, data, st.st_ctime + maildrop.STALE_SECONDS)
    assert maildrop.stale(st, data, st.st_ctime + maildrop.STALE_SECONDS + 1)
    # Empty or unreadable content is no pid: the same timeout rule.
    assert not maildrop.stale(st, b"", st.st_ctime + 10)
    assert maildrop.stale(st, b"garbage", st.st_ctime + maildrop.STALE_SECONDS + 1)


def test_our_lock_is_never_removed_by_another_delivery(tmp_path: Path) -> None:
    """A second delivery of this process (same pid) waits; an old mtime changes nothing."""
    lock = maildir(tmp_path)
    outcome: list[str] = []
    with maildrop.session_lock(lock) as held:
        age(lock)

        def second() -> None:
            try:
                with maildrop.session_lock(lock, wait=0.3):
                    outcome.append("taken")
            except maildrop.Locked:
                outcome.append("locked")

        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
        assert outcome == ["locked"]
        assert os.lstat(lock).st_ino == held.ino
        assert lock.read_text() == f"{os.getpid()}:{HOST}"
        assert maildrop.held(lock)


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path: Path, live_pid: int) -> None:
    lock = maildir(tmp_path)
    with maildrop.session_lock(lock):
        # Someone overrode ours meanwhile and holds the maildrop now.
        lock.unlink()
        lock.write_text(f"{live_pid}:{HOST}")
    assert lock.read_text() == f"{live_pid}:{HOST}"


def _race(path: str, start: object, result: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    try:
        maildrop.acquire(Path(path))
        result.put(os.getpid())  # type: ignore[attr-defined]
    except maildrop.Locked:
        result.put(0)  # type: ignore[attr-defined]
    time.sleep(1)  # keep the pid alive while the others look


def test_creation_is_atomic(tmp_path: Path) -> None:
    lock = maildir(tmp_path)
    ctx = multiprocessing.get_context("fork")
    start, result = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(lock), start, result)) for _ in range(8)]
    for proc in procs:
        proc.start()
    start.set()
    winners = [pid for pid in (result.get(timeout=30) for _ in procs) if pid]
    for proc in procs:
        proc.join()
    assert len(winners) == 1
    assert lock.read_text() == f"{winners[0]}:{HOST}"


def test_lock_taken_before_the_maildir_exists(tmp_path: Path) -> None:
    """A first delivery makes the Maildir and holds the lock while dovecot-lda runs."""
    drops = tmp_path / "maildrops"
    drops.mkdir(mode=0o700)
    lock = maildrop.lock_path(drops, "newco")
    seen = tmp_path / "seen"
    lda = tmp_path / "lda"
    lda.write_text(f"#!/bin/sh\ncat > /dev/null\ncat '{lock}' > '{seen}'\n")
    lda.chmod(0o755)
    reply = maildrop.deliver(lda, tmp_path / "dovecot.conf", drops, "newco", "a@sw.test", b"x")
    assert reply.code == 250
    assert seen.read_text() == f"{os.getpid()}:{HOST}"
    assert not lock.exists()
    for made in (drops / "newco", lock.parent):
        st = made.stat()
        assert stat.S_IMODE(st.st_mode) == 0o700
        assert (st.st_uid, st.st_gid) == (drops.stat().st_uid, drops.stat().st_gid)


def test_locked_delivery_defers_with_4_2_1(tmp_path: Path, live_pid: int) -> None:
    lock = maildir(tmp_path)
    lock.write_text(f"{live_pid}:{HOST}")
    reply = maildrop.deliver(Path("/bin/true"), tmp_path / "dovecot.conf", tmp_path, "clerk",
                             "a@sw.test", b"x")
    assert reply == replies.MAILDROP_LOCKED
    assert (reply.code, reply.enhanced) == (450, "4.2.1")


@pytest.mark.parametrize("agent", ["fails", "missing"])
def test_deferral_text_names_no_path_login_or_agent_output(tmp_path: Path,
                                                           agent: str) -> None:
    """The text may reach a DSN: no dovecot-lda path, maildrop path, login or stderr."""
    drops = tmp_path / "maildrops"
    drops.mkdir()
    lda = tmp_path / "dovecot-lda"
    if agent == "fails":
        lda.write_text("#!/bin/sh\necho \"lda(clerk)<1><x>: Error: open(/srv/mail/clerk/"
                       "Maildir/tmp) failed: uid=999 EACCES\" >&2\nexit 75\n")
        lda.chmod(0o755)
    reply = maildrop.deliver(lda, tmp_path / "dovecot.conf", drops, "clerk", "a@sw.test",
                             b"x")
    assert reply == replies.MAILDROP_FAILED
    assert reply.transient
    for leak in ("clerk", "/", "uid", "EACCES", "lda", str(tmp_path)):
        assert leak not in reply.line()
