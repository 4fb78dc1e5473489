"""Proof that an earlier, interrupted attempt already handed a copy over (SPEC D4).

After the queue, in the transport: a copy is recorded ``pending`` before it is sent and
``injected`` after the receiver's answer. When the transport dies in between, the next
attempt must learn whether the copy was *committed* — in Postfix's queue, or saved into a
maildrop — before it sends it again. The receivers' own logs tell, and only lines written
after the commit count:

- **Postfix**: cleanup(8) logs ``QID: message-id=<copy>`` while it still reads the
  headers, before the message is accepted, so that line alone proves nothing (a copy cut
  off during DATA has it too). qmgr(8) logs ``QID: from=<...>`` when it first opens a queue
  file, which it does only for a complete, committed file. A copy is committed iff a
  cleanup line names its Message-ID and a qmgr ``from=`` line follows for the same queue
  id. ``enable_long_queue_ids`` (main.cf) makes queue ids unique for the life of the
  queue, so an id seen for an aborted attempt is never reused by another message.
- **dovecot-lda** logs ``msgid=<copy>: saved mail to ...`` after the save completed.

Logs rotate (``postfix logrotate`` renames ``maillog_file`` to ``NAME.<date>`` and
gzips it; Debian's logrotate writes ``NAME.1``, ``NAME.2.gz``), so the rotated siblings
of a log are read too, oldest first, skipping any whose last write came before the copy's
first attempt.

The delivery status lines of a queue id (:func:`delivery_status`) show in ``swctl trace``
how a copy or a notice ended after Postfix took it; :func:`postfix_trail` also follows a
submission's DSNs that Postfix wrote, by bounce(8)'s ``sender ... notification`` lines.

The Message-ID of every copy is unique to that copy (the transport makes it), which is
what the lines are matched on. Reading is line by line: a log of any size costs no memory.
"""

from __future__ import annotations

import glob
import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

#: A rotated log written before the first attempt cannot hold its lines; allow this much
#: clock and mtime slack (seconds).
_SLACK = 120.0


def log_files(log: Path, since: float | None = None) -> list[Path]:
    """The log and its rotated siblings that may hold lines written after ``since``
    (a Unix time), oldest first, the live file last."""
    found: list[tuple[float, Path]] = []
    if log.parent.is_dir():
        for path in log.parent.glob(f"{glob.escape(log.name)}.*"):
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if path.is_file() and (since is None or mtime >= since - _SLACK):
                found.append((mtime, path))
    found.sort()
    files = [path for _, path in found]
    if log.is_file():
        files.append(log)
    return files


def _open(path: Path) -> BinaryIO:
    if path.suffix == ".gz":
        return gzip.GzipFile(path, "rb")  # type: ignore[return-value]  # a binary file
    return path.open("rb")


def lines(log: Path, since: float | None = None) -> Iterator[bytes]:
    """Every line of the log and its rotated siblings, in the order they were written."""
    for path in log_files(log, since):
        try:
            with _open(path) as handle:
                yield from handle
        # Rotated away while we looked (its successor is read), or a gzip the compressor
        # is still writing.
        except (OSError, EOFError):
            continue


_CLEANUP = re.compile(rb"/cleanup\[\d+\]: ([0-9A-Za-z]+): message-id=(<[^>\s]*>)")
_QMGR_FROM = re.compile(rb"/qmgr\[\d+\]: ([0-9A-Za-z]+): from=<")


def postfix_committed(maillog: Path, copy_message_id: str,
                      since: float | None = None) -> str | None:
    """The queue id under which Postfix committed the message with this Message-ID, or
    None if no attempt got as far as the queue."""
    needle = copy_message_id.encode()
    candidates: set[bytes] = set()
    for line in lines(maillog, since):
        if candidates and b"/qmgr[" in line:
            match = _QMGR_FROM.search(line)
            if match and match[1] in candidates:
                return match[1].decode()
        elif needle in line:
            match = _CLEANUP.search(line)
            if match and match[2] == needle:
                candidates.add(match[1])
    return None


def maildrop_saved(dovecot_log: Path, copy_message_id: str,
                   since: float | None = None) -> bool:
    """Whether dovecot-lda logged saving a message with this Message-ID (Dovecot's default
    ``deliver_log_format``: ``msgid=%m: %$``). The log, not the Maildir, because the
    company may have fetched and deleted the copy over POP3 before the retry."""
    needle = f"msgid={copy_message_id}: saved mail to ".encode()
    return any(needle in line for line in lines(dovecot_log, since))


# Postfix's delivery agents log one line per recipient and attempt (smtp(8), lmtp(8),
# error(8); "status=sent|deferred|bounced|expired"), e.g.
# ``QID: to=<a@b>, relay=host[ip]:25, delay=1, delays=.., dsn=5.1.1, status=bounced (why)``.
_STATUS = re.compile(rb": ([0-9A-Za-z]+): to=<([^>]*)>,(?: orig_to=<[^>]*>,)? relay=([^,]*),"
                     rb".*? dsn=([0-9.]+), status=([a-z]+)(?: \((.*)\))?\s*$")


@dataclass(frozen=True, slots=True)
class Status:
    """One delivery attempt as Postfix logged it."""

    queue_id: str
    to: str
    relay: str
    dsn: str
    status: str
    text: str


# bounce(8) logs each DSN it writes about a message (bounce_notify_service.c and
# friends): ``QID: sender non-delivery notification: DSNQID``, likewise "sender delivery
# status notification" and "sender delay notification".
_NOTIFIED = re.compile(rb"/bounce\[\d+\]: ([0-9A-Za-z]+): (sender (?:non-delivery|delivery "
                       rb"status|delay) notification): ([0-9A-Za-z]+)")


@dataclass(frozen=True, slots=True)
class Trail:
    """What Postfix logged about some queue ids."""

    status: dict[str, list[Status]]
    """Each queue id's delivery attempts, in log order."""
    notified: dict[str, list[tuple[str, str]]]
    """For each queue id followed, the DSNs Postfix wrote about it: what it was
    (``sender non-delivery notification``, ``… delivery status …``, ``… delay …``) and
    the DSN's own queue id (whose attempts are in ``status`` too)."""


def postfix_trail(maillog: Path, queue_ids: set[str], since: float | None = None,
                  follow: frozenset[str] = frozenset()) -> Trail:
    """Every delivery attempt Postfix logged for these queue ids, in log order (issue 12:
    how the hub's own mail, sent with the null sender, ended: no DSN tells anybody), in
    one pass. For the ids in ``follow`` also the DSNs Postfix wrote about them and each
    DSN's own attempts (issue 14: a submission's DSN on its way back to the submitter)."""
    wanted = {q.encode() for q in (*queue_ids, *follow) if q}
    followed = {q.encode() for q in follow if q}
    trail = Trail({q.decode(): [] for q in wanted}, {q.decode(): [] for q in followed})
    if not wanted:
        return trail
    for line in lines(maillog, since):
        if followed and b"/bounce[" in line:
            notified = _NOTIFIED.search(line)
            if notified is not None and notified[1] in followed:
                dsn_queue_id = notified[3].decode()
                trail.notified[notified[1].decode()].append((notified[2].decode(),
                                                             dsn_queue_id))
                wanted.add(notified[3])
                trail.status.setdefault(dsn_queue_id, [])
            continue
        if b" to=<" not in line or b" status=" not in line:
            continue
        match = _STATUS.search(line)
        if match is None or match[1] not in wanted:
            continue
        queue_id = match[1].decode()
        trail.status[queue_id].append(Status(
            queue_id, match[2].decode("utf-8", "replace"),
            match[3].decode("utf-8", "replace"), match[4].decode(), match[5].decode(),
            (match[6] or b"").decode("utf-8", "replace")))
    return trail


def delivery_status(maillog: Path, queue_ids: set[str],
                    since: float | None = None) -> dict[str, list[Status]]:
    """Every delivery attempt Postfix logged for these queue ids (:func:`postfix_trail`)."""
    return postfix_trail(maillog, queue_ids, since).status
