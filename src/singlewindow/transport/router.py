"""The routing transport's dispatch: one reply per recipient, after the queue.

Postfix hands every message for the Single Window domain to the LMTP server
(:mod:`.lmtp`), which asks the :class:`Router` about each recipient (SPEC §5, D3). The
router reads the message once per transaction (:func:`.parsed.prepare`) and sends the
recipient down one of its paths:

- a submission, stamped by the milter: :mod:`.submission` (the checks of SPEC R5.3, the
  MIG, one copy per destination, recorded before the answer, D4), and from there a
  party's delivery report on a copy to :mod:`.agency_report`;
- mail Single Window generated itself (Postfix's DSNs, control messages,
  agency-failure notices: no origin stamp, the null sender): :mod:`.generated`;
- a stamp that does not verify (issue 12): refused here (:meth:`Router.refuse_stamp`);
- unstamped mail with a sender, which never comes the way it should: deferred.

What must wait (:class:`.copies.Deferred`) is deferred, retried as soon as the maildrop
that held it is free (:mod:`.retry`); any other failure is deferred or answered for good
(:mod:`.terminal`). After the last recipient, :meth:`Router.finish` sends the
"delivered" DSN. The reply text is what the submitter reads in the DSN, with the
message id.

Everything but the dispatch itself is blocking (psycopg, smtplib, dovecot-lda) and runs
in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from psycopg_pool import ConnectionPool

from singlewindow import logs, replies
from singlewindow import origin as originmod
from singlewindow.config import Config
from singlewindow.replies import Reply
from singlewindow.store import messages
from singlewindow.transport import generated, heap, parsed, retry, submission, terminal
from singlewindow.transport import hop as hopmod
from singlewindow.transport.context import Context
from singlewindow.transport.copies import Deferred
from singlewindow.transport.forward import Injector
from singlewindow.transport.lmtp import Transaction
from singlewindow.transport.parsed import Progress

log = logging.getLogger("sw-transport")


class Router:
    """The ``deliver`` and ``finish`` callables of
    :class:`singlewindow.transport.lmtp.LmtpServer`."""

    def __init__(self, config: Config, pool: ConnectionPool[Any], injector: Injector,
                 retrier: retry.Retrier | None = None) -> None:
        self.config = config
        self.pool = pool
        self.retrier = retrier
        #: An edge of a multi-node hub delivers maildrops on the backend (issue 15).
        self.context = Context(config, injector,
                               hopmod.Hop(config) if config.maildrop.backend else None)
        #: The origin stamp's MAC key (issue 12); never logged.
        self.stamp_key = originmod.load_key(config.stamp_key_file)
        #: What each transaction's recipients share, for as long as the LMTP server
        #: keeps the transaction: the server knows nothing of it (:mod:`.lmtp`).
        self._progress: weakref.WeakKeyDictionary[Transaction, Progress] = \
            weakref.WeakKeyDictionary()

    @property
    def injector(self) -> Injector:
        """Where copies are re-injected into Postfix (tests put a sink's in its place)."""
        return self.context.injector

    @injector.setter
    def injector(self, injector: Injector) -> None:
        self.context.injector = injector

    async def __call__(self, mail_from: str, rcpt: str, raw: bytes,
                       transaction: Transaction) -> Reply:
        progress = self._progress.setdefault(transaction, Progress())
        reply = await asyncio.to_thread(self.decide, mail_from, rcpt, raw, progress)
        if len(raw) >= heap.TRIM_AFTER:
            # Issue 13: what the message took goes back to the kernel (off the event loop).
            await asyncio.to_thread(heap.trim)
        return reply

    def decide(self, mail_from: str, rcpt: str, raw: bytes, progress: Progress) -> Reply:
        """``rcpt``'s reply; ``raw`` is read once per transaction, into ``progress``."""
        try:
            if progress.prepared is None:
                progress.prepared = parsed.prepare(
                    raw, mail_from, self.config.transport.allowed_content_types,
                    self.stamp_key)
            p = progress.prepared
            if p.forged is not None:
                return self.refuse_stamp(mail_from, rcpt, progress, p.forged)
            with self.pool.connection() as conn:
                conn.autocommit = True
                if p.origin is not None:
                    return submission.submission(self.context, conn, progress, p.origin,
                                                 mail_from, rcpt)
                kind = parsed.generated_kind(mail_from, p.fields)
                if kind is None:
                    # Every submission passes the milter (milter_default_action =
                    # tempfail); one that did not means a misconfigured listener.
                    log.error("unstamped mail from <%s> to <%s>: deferring",
                              mail_from, rcpt)
                    return replies.POLICY_MISCONFIGURED
                return generated.internal(self.context, conn, kind, rcpt, p)
        except Deferred as deferred:
            self.wait(deferred, rcpt, progress.prepared)
            return deferred.reply
        except Exception as exc:
            return self.answer_failure(exc, rcpt, raw, progress.prepared)

    def wait(self, deferred: Deferred, rcpt: str, p: parsed.Prepared | None) -> None:
        """Log a recipient that must wait, and retry it once what held it is free."""
        sw_id = p.message_id if p else None
        queue_id = p.queue_id if p else None
        logs.decision(log, "recipient", sw_id=sw_id, queue_id=queue_id, recipient=rcpt,
                      action="defer", reply=deferred.reply.line())
        if (deferred.lock is not None or deferred.remote) and self.retrier is not None:
            if queue_id:
                self.retry_when_free(deferred, queue_id)
            else:
                log.warning("no Postfix queue id in the message for <%s>: it waits "
                            "for Postfix's next try", rcpt)

    def answer_failure(self, exc: Exception, rcpt: str, raw: bytes,
                       p: parsed.Prepared | None) -> Reply:
        """A recipient whose way failed: deferred if a retry may cure it, else answered
        now (issue 10), and the operator shown why."""
        deferral = terminal.deferral(exc)
        sw_id = p.message_id if p else None
        queue_id = p.queue_id if p else None
        if deferral is not None:
            logs.decision(log, "recipient", sw_id=sw_id, queue_id=queue_id,
                          level=logging.ERROR, recipient=rcpt, action="defer",
                          reply=deferral.line(), why=f"{type(exc).__name__}: {exc}")
            return deferral
        swid = sw_id or parsed.stamp_id(raw, self.stamp_key)
        reply = terminal.cannot_process(exc, swid)
        logs.decision(log, "recipient", sw_id=swid, queue_id=queue_id, level=logging.ERROR,
                      exc=exc, recipient=rcpt, action="reject", reply=reply.line())
        terminal.record(self.pool, swid, rcpt, reply)
        return reply

    def retry_when_free(self, deferred: Deferred, queue_id: str) -> None:
        """Have Postfix retry ``queue_id`` once the maildrop that deferred it is free: a
        local lock watched, the backend's on a timer (:mod:`.retry`)."""
        if self.retrier is None:
            return
        if deferred.lock is not None:
            self.retrier.wait_for(deferred.lock, queue_id)
        elif deferred.remote:
            self.retrier.retry_later(queue_id)

    async def finish(self, transaction: Transaction, decided: list[Reply]) -> list[Reply]:
        """The ``finish`` of :class:`~singlewindow.transport.lmtp.LmtpServer`: the
        "delivered" DSN, before Postfix hears the 250s it reports."""
        progress = self._progress.get(transaction)
        p = progress.prepared if progress else None
        if p is None:
            return decided
        return await asyncio.to_thread(self.delivered_dsn, transaction, p, decided)

    def delivered_dsn(self, transaction: Transaction, p: parsed.Prepared,
                      decided: list[Reply]) -> list[Reply]:
        """Postfix writes no success DSN for this DSN-capable LMTP server (smtp_rcpt.c),
        so the transport does (:func:`.generated.delivered_dsn`), for the recipients it
        answered 250 whose NOTIFY has SUCCESS (RFC 3461 4.1), once per submission and set
        of recipients, however often Postfix retries (the same bookkeeping as the copies,
        SPEC D4). If it cannot be sent now, those recipients are deferred: their copies
        are recorded, a retry sends only the DSN. Automatic mail gets none (the milter
        made its NOTIFY NEVER)."""
        mail_from = transaction.mail_from
        if p.origin is None or not mail_from or p.automatic(mail_from) or \
                len(transaction.dsn) != len(decided):
            return decided  # (no NOTIFY at all: RFC 3461 4.1's default asks no success)
        wanted = [i for i, (reply, params) in
                  enumerate(zip(decided, transaction.dsn, strict=True))
                  if reply.code == 250 and params.success]
        if not wanted:
            return decided
        try:
            with self.pool.connection() as conn:
                conn.autocommit = True
                generated.delivered_dsn(self.context, conn, p, mail_from, transaction, [
                    (transaction.recipients[i], transaction.dsn[i], decided[i])
                    for i in wanted])
            return decided
        except Deferred as deferred:
            log.info("%s: the delivered DSN waits: %s", p.origin.message_id,
                     deferred.reply.line())
            reply = deferred.reply
            if p.queue_id:
                self.retry_when_free(deferred, p.queue_id)
        except Exception as exc:
            log.error("%s: the delivered DSN failed, deferring its recipients: %s: %s",
                      p.origin.message_id, type(exc).__name__, exc, exc_info=exc)
            reply = terminal.deferral(exc) or replies.INTERNAL_ERROR
        return [reply if i in wanted else r for i, r in enumerate(decided)]

    def refuse_stamp(self, mail_from: str, rcpt: str, progress: Progress, why: str
                     ) -> Reply:
        """A stamp that does not verify (issue 12): the message did not come through the
        milter, so nothing vouches for its sender. Refused, not forwarded; logged, and
        recorded as a message of its own (a new id: the one the stamp claims may be a
        real message's) that ``swctl trace`` finds by its queue id, its Message-ID, or
        the id and queue id the stamp claimed."""
        p = progress.prepared
        assert p is not None
        claimed = parsed.claimed(p.fields)
        queue_id = p.queue_id
        with self.pool.connection() as conn:
            conn.autocommit = True
            swid = progress.refused
            if swid is None:
                swid = originmod.new_message_id()
                messages.record_message(conn, messages.Received(
                    id=swid, listener="refused", party=None, sasl_login=None,
                    peer_address=None, envelope_from=mail_from,
                    header_message_id=p.header_message_id, queue_id=queue_id,
                    payload_sha256=p.sha256, subject=p.subject, in_reply_to=p.in_reply_to))
                messages.event(conn, swid, "stamp-refused", {"reason": why, **claimed})
                progress.refused = swid
            reply = replies.STAMP_REFUSED.with_text(
                f"{replies.STAMP_REFUSED.text} ({why}; Single Window message {swid})")
            messages.record_outcome(conn, swid, rcpt.lower(),
                                    f"{reply.code} {reply.enhanced}", reply.text, reply.key)
        logs.decision(log, "recipient", sw_id=swid, queue_id=queue_id, level=logging.ERROR,
                      recipient=rcpt, action="reject", sender=mail_from,
                      reply=reply.line(), why=why, claimed_id=claimed.get("claimed_id"),
                      claimed_party=claimed.get("claimed_party"),
                      claimed_queue=claimed.get("claimed_queue"))
        return reply
