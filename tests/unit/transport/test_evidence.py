"""Proof of commit read from Postfix's and dovecot-lda's logs, across rotation (issue 10)."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

from singlewindow.transport import evidence

COPY = "<SW20261129.0a1b2c3d4e@sw.test>"

# Lines as Postfix 3.7 writes them to maillog_file (long queue ids).
CLEANUP_ABORTED = (
    "Nov 29 19:00:01 mail postfix/cleanup[101]: 4fLqV15Xb2z1xY: message-id=" + COPY + "\n")
ABORT = ("Nov 29 19:00:02 mail postfix/reinject/smtpd[100]: lost connection after DATA "
         "(0 bytes) from localhost[127.0.0.1]\n")
CLEANUP = (
    "Nov 29 19:00:09 mail postfix/cleanup[101]: 4fLqV20Kd0z1xZ: message-id=" + COPY + "\n")
QMGR = ("Nov 29 19:00:09 mail postfix/qmgr[90]: 4fLqV20Kd0z1xZ: from=<acme@sw.test>, "
        "size=1234, nrcpt=1 (queue active)\n")
OTHER_QMGR = ("Nov 29 19:00:03 mail postfix/qmgr[90]: 4fLqV15Xb2z1xA: from=<x@sw.test>, "
              "size=1, nrcpt=1 (queue active)\n")


def test_cleanup_alone_is_no_proof(tmp_path: Path) -> None:
    log = tmp_path / "postfix.log"
    log.write_text(CLEANUP_ABORTED + ABORT + OTHER_QMGR)
    assert evidence.postfix_committed(log, COPY) is None


def test_qmgr_from_after_cleanup_is_proof_of_that_queue_id(tmp_path: Path) -> None:
    log = tmp_path / "postfix.log"
    log.write_text(CLEANUP_ABORTED + ABORT + CLEANUP + QMGR)
    assert evidence.postfix_committed(log, COPY) == "4fLqV20Kd0z1xZ"
    assert evidence.postfix_committed(log, "<SW20261129.ffffffffff@sw.test>") is None


def test_a_message_id_that_merely_starts_alike_does_not_match(tmp_path: Path) -> None:
    log = tmp_path / "postfix.log"
    longer = COPY.replace("@", "x@")
    log.write_text(CLEANUP.replace(COPY, longer) + QMGR)
    assert evidence.postfix_committed(log, COPY) is None


def test_no_log_no_proof(tmp_path: Path) -> None:
    assert evidence.postfix_committed(tmp_path / "none.log", COPY) is None
    assert not evidence.maildrop_saved(tmp_path / "none.log", COPY)


def test_lines_split_by_rotation_are_read_across_files(tmp_path: Path) -> None:
    """``postfix logrotate`` renamed the log (and gzipped it) between the cleanup and the
    qmgr line; Debian's logrotate leaves NAME.1 uncompressed."""
    log = tmp_path / "postfix.log"
    rotated = tmp_path / "postfix.log.20261129-190009.gz"
    with gzip.open(rotated, "wt") as handle:
        handle.write(CLEANUP)
    log.write_text(QMGR)
    assert evidence.postfix_committed(log, COPY) == "4fLqV20Kd0z1xZ"
    rotated.unlink()
    (tmp_path / "postfix.log.1").write_text(CLEANUP)
    assert evidence.postfix_committed(log, COPY) == "4fLqV20Kd0z1xZ"


def test_both_lines_in_a_rotated_file_with_an_empty_live_log(tmp_path: Path) -> None:
    log = tmp_path / "postfix.log"
    (tmp_path / "postfix.log.1").write_text(CLEANUP + QMGR)
    log.write_text("")
    assert evidence.postfix_committed(log, COPY) == "4fLqV20Kd0z1xZ"
    log.unlink()  # rotated and not yet reopened
    assert evidence.postfix_committed(log, COPY) == "4fLqV20Kd0z1xZ"


def test_rotated_files_older_than_the_first_attempt_are_not_read(tmp_path: Path) -> None:
    log = tmp_path / "postfix.log"
    old = tmp_path / "postfix.log.2"
    old.write_text(CLEANUP + QMGR)
    a_day_ago = time.time() - 86400
    os.utime(old, (a_day_ago, a_day_ago))
    log.write_text("")
    assert evidence.postfix_committed(log, COPY, since=time.time() - 60) is None
    assert evidence.postfix_committed(log, COPY, since=a_day_ago - 60) == "4fLqV20Kd0z1xZ"


def test_rotated_files_are_read_oldest_first(tmp_path: Path) -> None:
    log = tmp_path / "postfix.log"
    newer, older = tmp_path / "postfix.log.1", tmp_path / "postfix.log.2.gz"
    with gzip.open(older, "wt") as handle:
        handle.write(CLEANUP)
    newer.write_text(QMGR)
    now = time.time()
    os.utime(older, (now - 20, now - 20))
    os.utime(newer, (now - 10, now - 10))
    log.write_text("")
    assert [p.name for p in evidence.log_files(log)] == [older.name, newer.name, log.name]
    assert evidence.postfix_committed(log, COPY) == "4fLqV20Kd0z1xZ"


def test_maildrop_saved_reads_dovecot_lda_lines_also_rotated(tmp_path: Path) -> None:
    log = tmp_path / "dovecot.log"
    assert not evidence.maildrop_saved(log, "<a@sw.test>")  # no log yet
    log.write_text(
        "Nov 28 17:06:01 lda(mc@sw.test)<2895><Md>: Info: msgid=<a@sw.test>: saved mail to "
        "INBOX\n"
        "Nov 28 17:06:02 lda(mc@sw.test)<2896><Me>: Error: msgid=<b@sw.test>: save failed to "
        "INBOX: Quota exceeded\n")
    assert evidence.maildrop_saved(log, "<a@sw.test>")
    assert not evidence.maildrop_saved(log, "<b@sw.test>")  # failed saves do not count
    assert not evidence.maildrop_saved(log, "<c@sw.test>")
    log.rename(tmp_path / "dovecot.log.1")
    log.write_text("")
    assert evidence.maildrop_saved(log, "<a@sw.test>")


# Delivery agents' status lines (smtp(8), lmtp(8)), as Postfix 3.7 writes them.
BOUNCED = ("Nov 29 19:01:00 mail postfix/smtp[120]: 4fLqV20Kd0z1xZ: to=<edi@acme.example>,"
           " relay=127.0.0.1[127.0.0.1]:2601, delay=0.1, delays=0/0/0/0.1, dsn=5.1.1,"
           " status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 No such mailbox"
           " here (in reply to RCPT TO command))\n")
DEFERRED = ("Nov 29 19:00:30 mail postfix/smtp[120]: 4fLqV20Kd0z1xZ: to=<edi@acme.example>,"
            " orig_to=<acme@sw.test>, relay=none, delay=21, delays=0/0/21/0, dsn=4.4.1,"
            " status=deferred (connect to 127.0.0.1[127.0.0.1]:2601: Connection refused)\n")
SENT_ELSEWHERE = ("Nov 29 19:00:31 mail postfix/lmtp[121]: 4fLqV15Xb2z1xA: to=<x@sw.test>,"
                  " relay=mail.sw.test[/run/lmtp.sock], delay=0.1, delays=0/0/0/0.1,"
                  " dsn=2.0.0, status=sent (250 2.0.0 Delivered)\n")


def test_delivery_status_lists_each_attempt_of_the_queue_ids_asked(tmp_path: Path) -> None:
    log = tmp_path / "postfix.log"
    log.write_text(CLEANUP + QMGR + DEFERRED + SENT_ELSEWHERE + BOUNCED)
    found = evidence.delivery_status(log, {"4fLqV20Kd0z1xZ", "4fLqV99Xb2z1xQ"})
    assert found["4fLqV99Xb2z1xQ"] == []
    deferred, bounced = found["4fLqV20Kd0z1xZ"]
    assert (deferred.to, deferred.relay, deferred.dsn, deferred.status) == (
        "edi@acme.example", "none", "4.4.1", "deferred")
    assert deferred.text.startswith("connect to 127.0.0.1")
    assert (bounced.status, bounced.dsn) == ("bounced", "5.1.1")
    assert bounced.text.endswith("No such mailbox here (in reply to RCPT TO command)")
    assert evidence.delivery_status(log, set()) == {}


# A submission refused by the transport (4fLqW10Aa0z1xB), the DSN bounce(8) wrote about
# it (4fLqW11Bb1z1xC), deferred by a maildrop lock then delivered, and a DSN about
# another message.
TRAIL = """\
Nov 29 19:01:00 mail postfix/lmtp[130]: 4fLqW10Aa0z1xB: to=<ag@sw.test>, \
relay=mail.sw.test[/run/lmtp.sock], delay=0.2, delays=0/0/0/0.2, dsn=5.6.1, \
status=bounced (554 5.6.1 Unsupported Content-Type)
Nov 29 19:01:00 mail postfix/bounce[131]: 4fLqW10Aa0z1xB: sender non-delivery \
notification: 4fLqW11Bb1z1xC
Nov 29 19:01:01 mail postfix/bounce[131]: 4fLqV15Xb2z1xA: sender delivery status \
notification: 4fLqW19Zz9z1xZ
Nov 29 19:01:01 mail postfix/lmtp[132]: 4fLqW11Bb1z1xC: to=<co@sw.test>, \
relay=mail.sw.test[/run/lmtp.sock], delay=0.1, delays=0/0/0/0.1, dsn=4.2.1, \
status=deferred (450 4.2.1 Maildrop is in use by a POP3 session, will retry)
Nov 29 19:01:09 mail postfix/lmtp[133]: 4fLqW11Bb1z1xC: to=<co@sw.test>, \
relay=mail.sw.test[/run/lmtp.sock], delay=9, delays=0/8/0/1, dsn=2.0.0, \
status=sent (250 2.0.0 Delivered to co@sw.test)
"""


def test_trail_follows_the_dsns_postfix_wrote_about_a_submission(tmp_path: Path) -> None:
    """Issue 14: the DSN back to the submitter, from bounce(8)'s line to its own attempts."""
    log = tmp_path / "postfix.log"
    log.write_text(TRAIL + DEFERRED)
    trail = evidence.postfix_trail(log, {"4fLqV20Kd0z1xZ"},
                                   follow=frozenset({"4fLqW10Aa0z1xB"}))
    assert trail.notified["4fLqW10Aa0z1xB"] == [
        ("sender non-delivery notification", "4fLqW11Bb1z1xC")]
    assert [(s.dsn, s.status) for s in trail.status["4fLqW10Aa0z1xB"]] == [("5.6.1", "bounced")]
    assert [(s.to, s.dsn, s.status) for s in trail.status["4fLqW11Bb1z1xC"]] == [
        ("co@sw.test", "4.2.1", "deferred"), ("co@sw.test", "2.0.0", "sent")]
    assert [s.status for s in trail.status["4fLqV20Kd0z1xZ"]] == ["deferred"]
    assert "4fLqW19Zz9z1xZ" not in trail.status  # a DSN about a message not followed
    # Without following, only the ids asked.
    plain = evidence.postfix_trail(log, {"4fLqW10Aa0z1xB"})
    assert plain.notified == {} and set(plain.status) == {"4fLqW10Aa0z1xB"}
