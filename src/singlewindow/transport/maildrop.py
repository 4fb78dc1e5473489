"""Delivery into a POP3 maildrop (I3), honouring the POP3 session lock (SPEC R3.2, D6).

After the queue, for logical addresses of mail-client companies (``--maildrop LOGIN``).
While a POP3 session holds a maildrop nothing may be delivered into it, and delivery
completes after the session ends. Dovecot 2.3's ``pop3_lock_session`` only keeps a second
POP3 session out (LDA and LMTP deliveries ignore it), so every delivery here takes the
session's own lock first, by Dovecot's own rules, and defers (4.2.1) while a session
holds it; :mod:`.retry` then asks Postfix to retry the deferred entry once it is gone.

Dovecot's lock, as 2.3.19 makes it (facts read from dovecot/core at 2.3.19.1):

- Where (``src/pop3/pop3-client.c``, ``pop3_lock_session``): the file
  ``dovecot-pop3-session.lock`` (lock suffix ``""``) in the INBOX namespace's index root,
  which with ``mail_location = maildir:~/Maildir`` and no ``INDEX=`` is ``~/Maildir``.
  The POP3 server creates that directory first if it is missing
  (``mailbox_list_mkdir_root``), so a lock exists even before the first delivery.
- Settings (same file): ``timeout = 10`` (a second session waits up to 10 s, then
  answers ``-ERR [IN-USE]``), ``stale_timeout = 300``, ``use_io_notify``, and
  ``use_excl_lock = dotlock_use_excl`` (default ``yes``: ``doveconf -d``).
- Creation (``src/lib/file-dotlock.c``, ``try_create_lock_excl``): ``open(O_RDWR |
  O_CREAT | O_EXCL, 0666)`` under the process umask, then ``PID:HOSTNAME`` is written,
  no newline (``file_write_pid``; the host is ``gethostname()``, passed to every Dovecot
  process by its master in ``DOVECOT_HOSTNAME``, ``src/lib/hostpid.c``). After closing,
  it checks the path still names the inode it created.
- Staleness (``check_lock``): a missing lock is free. A lock whose mtime is within
  ``STALE_PID_CHECK_SECS`` (2 s) of now is not read at all. Otherwise, if it names a pid
  on this host, that pid decides alone: alive (``kill(pid, 0)`` succeeds or fails with
  anything but ``ESRCH``) means held, however old the file; a dead pid, or the checker's
  own pid, means stale at once (it re-``lstat``\\ s and overrides only an unchanged file).
  Without a local pid (another host, empty or unreadable content) the lock is stale when
  nothing about it changed for ``stale_timeout``: its last change is its mtime when that
  is not in the future and later than its ctime, else its ctime (``update_change_info``),
  so ageing only the mtime (``utime``, which sets the ctime) makes no lock stale.
- Override (``dotlock_override``): unlink, then sleep 0.1 to 0.2 s before trying to create,
  so two overriders do not unlink each other's new lock.
- Keeping it (``pop3_lock_session_refresh``): the session touches the lock's mtime
  (``file_dotlock_touch``, ``utime``) every 300 s; its live pid is what really keeps it.
- Removal (``file_dotlock_delete``): ``lstat`` the path; if it is gone, or is another
  inode than the one created, it is someone else's now and is left alone; else unlink.

Here: the same creation, content, staleness rule, override and removal. Two deliveries
in this process share its pid, which Dovecot's rule would let each of them override: a
per-path mutex in the process keeps them apart, so our own lock is never broken by
another of our deliveries. The lock is taken whether or not the Maildir exists yet (the
directory is made first, owned like the maildrop directory). dovecot-lda then writes the
Maildir exactly as Dovecot's POP3 server reads it.

A deferral's text reaches the submitter in a DSN if the queue lifetime passes: it names
no path, login or dovecot-lda output; those go to the log.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from singlewindow import replies
from singlewindow.replies import Reply

log = logging.getLogger("sw-transport")

#: The lock file Dovecot's POP3 server holds for a session (pop3-client.c POP3_LOCK_FNAME).
LOCK_NAME = "dovecot-pop3-session.lock"
#: A lock without a live local pid is stale after this long unchanged
#: (pop3-client.c POP3_SESSION_DOTLOCK_STALE_TIMEOUT_SECS).
STALE_SECONDS = 300
#: A lock younger than this is not read: its pid is most likely valid
#: (file-dotlock.c STALE_PID_CHECK_SECS).
STALE_PID_CHECK_SECONDS = 2
#: How long a delivery waits for another delivery of this process to the same maildrop.
LOCAL_WAIT_SECONDS = 30.0


class Locked(Exception):
    """A POP3 session (or another delivery) holds the maildrop."""


def lock_path(maildrop_dir: Path, login: str) -> Path:
    """The INBOX's index root is the Maildir itself (``mail_location``, no ``INDEX=``)."""
    return maildrop_dir / login / "Maildir" / LOCK_NAME


@dataclass(frozen=True, slots=True)
class Held:
    """A lock this process created: the inode that is ours (file_dotlock_delete), kept
    open while held so that no file made after ours can reuse its inode number."""

    path: Path
    fd: int
    dev: int
    ino: int


def content(pid: int | None = None, host: str | None = None) -> bytes:
    """What Dovecot writes into a dotlock: ``PID:HOSTNAME``, no newline."""
    return f"{os.getpid() if pid is None else pid}:{host or socket.gethostname()}".encode()


def local_pid(data: bytes, host: str | None = None) -> int | None:
    """The pid a lock's content names if it names one on this host (read_local_pid)."""
    text = data.decode("ascii", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    pid, sep, lock_host = text.partition(":")
    if not sep or lock_host != (host or socket.gethostname()):
        return None
    try:
        value = int(pid)
    except ValueError:
        return None
    return value if value > 0 else None


def pid_alive(pid: int) -> bool:
    """kill(pid, 0) as Dovecot reads it: only ESRCH means gone (EPERM: someone else's)."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


def last_change(st: os.stat_result, now: float) -> float:
    """When a lock last changed, as Dovecot first sees it (update_change_info)."""
    if int(st.st_mtime) <= now and int(st.st_mtime) > int(st.st_ctime):
        return int(st.st_mtime)
    return int(st.st_ctime)


def stale(st: os.stat_result, data: bytes, now: float | None = None, *,
          own_pid: int | None = None, host: str | None = None) -> bool:
    """Whether Dovecot would override this existing lock (check_lock), given its stat
    and content. ``own_pid``: the checker's pid (a lock naming it is a leftover)."""
    now = time.time() if now is None else now
    if int(st.st_mtime) < int(now) - STALE_PID_CHECK_SECONDS:
        pid = local_pid(data, host)
        if pid is not None:
            if pid == (os.getpid() if own_pid is None else own_pid):
                return True
            return not pid_alive(pid)
    return int(now) > last_change(st, now) + STALE_SECONDS


def _read(path: Path) -> tuple[os.stat_result, bytes] | None:
    """The lock's stat and content; None when there is no lock."""
    try:
        st = os.lstat(path)
        with path.open("rb") as f:
            data = f.read(512)
    except FileNotFoundError:
        return None
    return st, data


def held(path: Path, *, ours: bool = True) -> bool:
    """Whether a live lock is at ``path`` (what a delivery would find locked); with
    ``ours`` False, a lock another delivery of this process holds does not count (a
    delivery waits for that one on :func:`session_lock`'s mutex, not by looking)."""
    found = _read(path)
    if found is None:
        return False
    with _local_guard:
        if path in _local_holders:
            return ours
    return not stale(*found)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_mtime_ns, a.st_ctime_ns, a.st_size) == \
        (b.st_dev, b.st_ino, b.st_mtime_ns, b.st_ctime_ns, b.st_size)


def _create(path: Path) -> Held | None:
    """Create the lock exclusively with our pid and host; None if it exists."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return None
    try:
        data = content()
        if os.write(fd, data) != len(data):
            os.ftruncate(fd, 0)  # as Dovecot: an empty lock rather than a torn pid
        st = os.fstat(fd)
        # Dovecot's sanity check once written: the path still names our inode.
        now = os.lstat(path)
    except BaseException:
        os.close(fd)
        raise
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise Locked("the lock was replaced as it was created")
    return Held(path, fd, st.st_dev, st.st_ino)


def acquire(path: Path) -> Held:
    """Take the lock at ``path`` the way Dovecot does, without waiting: a live lock
    raises :class:`Locked`; a stale one is overridden, checked unchanged first."""
    for _ in range(3):
        created = _create(path)
        if created is not None:
            return created
        found = _read(path)
        if found is None:
            continue  # removed meanwhile: try again
        st, data = found
        if not stale(st, data):
            raise Locked(str(path))
        with contextlib.suppress(FileNotFoundError):
            if _same(st, os.lstat(path)):
                os.unlink(path)
                log.warning("overrode a stale POP3 session lock %s (%r)", path, data[:64])
        # file-dotlock.c dotlock_override: give another overrider time to create its own.
        time.sleep(0.1 + random.random() / 10)
    raise Locked(str(path))


def release(lock: Held) -> bool:
    """Remove the lock only if it is still the one we created (file_dotlock_delete)."""
    try:
        try:
            st = os.lstat(lock.path)
        except FileNotFoundError:
            log.warning("our maildrop lock %s was deleted by someone else", lock.path)
            return False
        if (st.st_dev, st.st_ino) != (lock.dev, lock.ino):
            log.warning("our maildrop lock %s was overridden; left to its new holder",
                        lock.path)
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock.path)
        return True
    finally:
        os.close(lock.fd)


# Deliveries of this process share its pid: a mutex per lock path keeps them apart.
_local_guard = threading.Lock()
_local_mutexes: dict[Path, threading.Lock] = {}
_local_holders: set[Path] = set()


@contextlib.contextmanager
def session_lock(path: Path, wait: float = LOCAL_WAIT_SECONDS) -> Iterator[Held]:
    """Hold the POP3 session lock at ``path`` for a delivery; :class:`Locked` while a
    session (or, past ``wait`` seconds, another delivery of ours) holds it."""
    with _local_guard:
        mutex = _local_mutexes.setdefault(path, threading.Lock())
    if not mutex.acquire(timeout=wait):
        raise Locked(str(path))
    try:
        lock = acquire(path)
        with _local_guard:
            _local_holders.add(path)
        try:
            yield lock
        finally:
            with _local_guard:
                _local_holders.discard(path)
            release(lock)
    finally:
        mutex.release()


def ensure_maildir(maildrop_dir: Path, login: str) -> Path:
    """The Maildir the lock lives in, made (mode 0700, owned like ``maildrop_dir``: the
    maildrop user, whom dovecot-lda and the POP3 server run as) when it is missing."""
    owner = maildrop_dir.stat()
    maildir = lock_path(maildrop_dir, login).parent
    for directory in (maildir.parent, maildir):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue
        if os.geteuid() == 0:
            os.chown(directory, owner.st_uid, owner.st_gid)
    return maildir


def deliver(lda: Path, dovecot_config: Path, maildrop_dir: Path, login: str, mail_from: str,
            data: bytes, timeout: float = 60.0, *,
            saved: Callable[[], bool] | None = None) -> Reply:
    """Deliver ``data`` into ``login``'s maildrop; locked or failed deliveries defer.

    ``saved``: asked while the lock is held, before dovecot-lda runs; True means an
    earlier attempt saved this message already (the maildrop backend's check of
    dovecot-lda's log), answered with success and not saved again. Asked under the lock,
    so an attempt still saving it (the same process) has finished and logged first.

    The reply names no path, login or dovecot-lda output (it may reach a DSN); the log does.
    """
    cmd = [str(lda), "-c", str(dovecot_config), "-d", login, "-f", mail_from or "<>"]
    try:
        ensure_maildir(maildrop_dir, login)
        with session_lock(lock_path(maildrop_dir, login)):
            if saved is not None and saved():
                return replies.MAILDROP_SAVED_BEFORE
            result = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout,
                                    check=False)
    except Locked:
        # The caller's decision line says so (the maildrop backend asks again and again).
        log.debug("maildrop of %s is locked by a POP3 session", login)
        return replies.MAILDROP_LOCKED
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error("delivery into the maildrop of %s failed: %s", login, exc)
        return replies.MAILDROP_FAILED
    if result.returncode == 0:
        return replies.DELIVERED.with_text("Delivered to the maildrop")
    detail = result.stderr.decode("utf-8", "replace").strip()
    log.error("dovecot-lda exited %d delivering to %s: %s", result.returncode, login,
              detail or "(no output)")
    return replies.MAILDROP_FAILED
