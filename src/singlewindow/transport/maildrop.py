"""Delivery into a POP3 maildrop (I3), honouring the POP3 session lock (SPEC R3.2, D6).

After the queue, for logical addresses of mail-client companies (``--maildrop LOGIN``).
The seed: while a POP3 session holds a maildrop nothing may be delivered into it, and
delivery completes after the session ends. Dovecot 2.3's ``pop3_lock_session`` only keeps
a second POP3 session out: the session holds the dotlock ``dovecot-pop3-session.lock`` in
the mailbox's control directory (Dovecot src/pop3/pop3-client.c: 10 s wait, 300 s stale
timeout, touched while the session lives), and LDA/LMTP deliveries ignore it. So every
delivery here takes that same lock exclusively first; when a session holds it, the reply
is 4.2.1 and Postfix's queue keeps the message until a later try. dovecot-lda then writes
the Maildir exactly as Dovecot's POP3 server reads it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from singlewindow import replies
from singlewindow.replies import Reply

#: The lock file Dovecot's POP3 server holds for a session (pop3-client.c).
LOCK_NAME = "dovecot-pop3-session.lock"
#: Dovecot treats a lock untouched this long as stale (pop3-client.c, dotlock settings).
STALE_SECONDS = 300


class Locked(Exception):
    """A POP3 session holds the maildrop."""


def lock_path(maildrop_dir: Path, login: str) -> Path:
    """The control directory of a Maildir is the Maildir itself (mail_location)."""
    return maildrop_dir / login / "Maildir" / LOCK_NAME


def _stale(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > STALE_SECONDS
    except FileNotFoundError:
        return True


@contextlib.contextmanager
def session_lock(path: Path) -> Iterator[None]:
    """Hold the POP3 session lock the way Dovecot's dotlock does: create it exclusively.

    Raises :class:`Locked` while a live session holds it; a stale lock (older than
    Dovecot's stale timeout) is broken, as Dovecot would. A maildrop whose Maildir does
    not exist yet has no session and needs no lock.
    """
    if not path.parent.is_dir():
        yield
        return
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if not _stale(path):
                raise Locked(str(path)) from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        # Dovecot's dotlock content: "pid:hostname" (it checks the pid on the same host).
        os.write(fd, f"{os.getpid()}:{socket.gethostname()}".encode())
        os.close(fd)
        break
    else:
        raise Locked(str(path))
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def deliver(lda: Path, dovecot_config: Path, maildrop_dir: Path, login: str, mail_from: str,
            data: bytes, timeout: float = 60.0) -> Reply:
    """Deliver ``data`` into ``login``'s maildrop; locked or failed deliveries defer."""
    cmd = [str(lda), "-c", str(dovecot_config), "-d", login, "-f", mail_from or "<>"]
    try:
        with session_lock(lock_path(maildrop_dir, login)):
            result = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout,
                                    check=False)
    except Locked:
        return replies.MAILDROP_LOCKED
    except (OSError, subprocess.TimeoutExpired) as exc:
        return replies.INTERNAL_ERROR.with_text(f"maildrop delivery failed: {exc}")
    if result.returncode == 0:
        return replies.DELIVERED.with_text(f"Delivered to the maildrop of {login}")
    detail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
    return replies.INTERNAL_ERROR.with_text(
        f"maildrop delivery deferred (dovecot-lda exit {result.returncode}: {detail[0]})")
