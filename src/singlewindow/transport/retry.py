"""Asking Postfix to retry a delivery the maildrop lock held, as soon as the lock is gone.

After the queue, beside the router (SPEC R3.2, D6): a recipient deferred because a POP3
session held its maildrop (:mod:`.maildrop`) would otherwise wait for Postfix's next try
(``minimal_backoff_time``, then ``queue_run_delay``: minutes after the session's QUIT).
The router tells the :class:`Retrier` which queue entry waits on which lock; a thread the
transport's server owns looks at those locks every second, and once one is free runs
``postqueue -i QUEUE_ID`` (postqueue(1): schedule immediate delivery of the deferred mail
with that queue id). ``-i`` acts only on mail in the deferred queue and says nothing
otherwise, and an entry may still be on its way there from the active queue when a session
ends quickly; so it runs again a few times within half a minute (harmless once the entry
is delivered: no such deferred mail).

On an edge of a multi-node hub the maildrops are on the POP3 backend (:mod:`.hop`),
whose lock this process cannot watch: the backend already held such a delivery for
``[maildrop] lock_wait`` seconds before it answered 4.2.1, so the entry is retried on a
timer instead (:meth:`Retrier.retry_later`, :data:`REMOTE_SCHEDULE`), sooner than
Postfix's own backoff would.

The queue id is in Postfix's own Received header, the first of the message: smtpd writes
``by HOST (Postfix) with ESMTP id QUEUE_ID``, pickup ``(Postfix, from userid N) id
QUEUE_ID``, and the bounce and notice daemons ``by HOST (Postfix) id QUEUE_ID``
(global/post_mail.c).

What a deployed node must allow (ansible singlewindow_app): postqueue -i reaches the
flush(8) service through ``public/flush``, and ``public/`` is group ``postdrop``, mode
2710. postqueue is set-gid postdrop, which the unit's ``NoNewPrivileges=yes`` disables,
so the transport's unit adds ``postdrop`` to its ``SupplementaryGroups``. ``-c`` naming
the default configuration directory needs no privilege (global/mail_conf.c), and
``authorized_flush_users`` is left at its default (anyone).
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from singlewindow.transport import maildrop

log = logging.getLogger("sw-transport")

#: The queue id in Postfix's Received header (smtpd, pickup, post_mail).
_RECEIVED_ID = re.compile(r"\(Postfix\b[^)]*\)(?:\s+with\s+\S+)?\s+id\s+([0-9A-Za-z]+)\b")
#: Seconds after a lock is found free at which ``postqueue -i`` runs.
SCHEDULE = (0.0, 3.0, 10.0, 30.0)
#: Seconds after a remote maildrop's deferral at which ``postqueue -i`` runs (the
#: backend's lock cannot be watched from here).
REMOTE_SCHEDULE = (30.0, 60.0, 120.0)
#: Seconds between looks at the locks.
INTERVAL = 1.0
#: A waiting entry whose lock is never freed, nor deferred again, is forgotten after this
#: long: Postfix retries a deferred entry well within it (maximal_backoff_time), and
#: each retry that finds the lock held registers the entry again.
FORGET_AFTER = 86400.0


def queue_id(received: str | None) -> str | None:
    """The Postfix queue id in the (unfolded) value of a message's first Received."""
    if not received:
        return None
    match = _RECEIVED_ID.search(received)
    return match[1] if match else None


@dataclass(slots=True)
class _Waiting:
    lock: Path | None
    """The local lock it waits for; None: a remote one, retried on a timer."""
    queue_id: str
    since: float
    freed: float | None = None
    fired: int = 0
    schedule: tuple[float, ...] = SCHEDULE


class Retrier:
    """Queue entries waiting for maildrop locks, and the thread that frees them."""

    def __init__(self, postqueue: Path, postfix_config: Path, *,
                 held: Callable[[Path], bool] = maildrop.held,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.postqueue = postqueue
        self.postfix_config = postfix_config
        self._held = held
        self._clock = clock
        self._waiting: dict[tuple[Path | None, str], _Waiting] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wait_for(self, lock: Path, queue_id: str) -> None:
        """Queue entry ``queue_id`` was deferred because ``lock`` is held."""
        with self._guard:
            self._waiting[(lock, queue_id)] = _Waiting(lock, queue_id, self._clock())

    def retry_later(self, queue_id: str) -> None:
        """Queue entry ``queue_id`` was deferred because a POP3 session held a maildrop
        on the backend: ``postqueue -i`` it at each of :data:`REMOTE_SCHEDULE`."""
        now = self._clock()
        with self._guard:
            self._waiting[(None, queue_id)] = _Waiting(None, queue_id, now, freed=now,
                                                       schedule=REMOTE_SCHEDULE)

    def waiting(self) -> list[tuple[Path | None, str]]:
        with self._guard:
            return list(self._waiting)

    def poll(self) -> list[str]:
        """One look at the locks: run postqueue -i for what is due; returns those ids."""
        now = self._clock()
        with self._guard:
            entries = list(self._waiting.items())
        due: list[str] = []
        for key, entry in entries:
            if entry.freed is None:
                if now - entry.since > FORGET_AFTER:
                    self._forget(key, entry)
                    continue
                if entry.lock is not None and self._held(entry.lock):
                    continue
                entry.freed = now
            if now >= entry.freed + entry.schedule[entry.fired]:
                entry.fired += 1
                due.append(entry.queue_id)
            if entry.fired >= len(entry.schedule):
                self._forget(key, entry)
        ids = list(dict.fromkeys(due))
        for qid in ids:
            self.flush(qid)
        return ids

    def _forget(self, key: tuple[Path | None, str], entry: _Waiting) -> None:
        with self._guard:
            if self._waiting.get(key) is entry:  # not registered again meanwhile
                del self._waiting[key]

    def flush(self, qid: str) -> None:
        """``postqueue -i QUEUE_ID``: Postfix tries that deferred entry now."""
        cmd = [str(self.postqueue), "-c", str(self.postfix_config), "-i", qid]
        try:
            result = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("postqueue -i %s failed: %s", qid, exc)
            return
        if result.returncode != 0:
            log.error("postqueue -i %s exited %d: %s", qid, result.returncode,
                      result.stderr.decode("utf-8", "replace").strip())
        else:
            log.info("maildrop lock gone: asked Postfix to retry %s", qid)

    # --- the thread ---------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sw-maildrop-retry",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=35)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            try:
                self.poll()
            except Exception:
                log.exception("maildrop retry watcher: poll failed")
