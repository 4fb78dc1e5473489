"""The routing transport's decisions: one reply per recipient, after the queue.

Postfix hands every message for the Single Window domain to the LMTP server, which asks
this router about each recipient (SPEC §5, D3). For a submission (stamped by the milter)
it runs, in order, the technical checks (SPEC R5.3 #1-7), the address checks (#8-10),
then routes, translates and re-injects one copy per destination, recording each copy
before answering (D4). Mail Single Window generated itself (Postfix's DSNs, control
messages, agency-failure notices: no origin stamp, the null sender, and the hub's notice
header on the hub's own) skips the checks and goes to the addressee's physical address
or maildrop. The reply text is what the submitter reads in the DSN, with the message id.

No loops, no storms (issue 12): a submission past ``transport.hop_limit`` hops is
refused, every copy carries the submission's hop count on, and nothing automatic (a DSN,
a notice, an ``Auto-Submitted`` message, :mod:`singlewindow.automatic`) is answered with
a control message or a notice; the hub's own mail goes out with the null sender.

Everything here is blocking (psycopg, smtplib, dovecot-lda) and runs in worker threads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import functools
import hashlib
import io
import logging
import os
import re
import secrets
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from singlewindow import automatic, logs, mig, replies
from singlewindow import origin as originmod
from singlewindow.config import Config
from singlewindow.notices import agency, control, delivered
from singlewindow.replies import Reply
from singlewindow.store import directory, messages, snapshot
from singlewindow.store.snapshot import Lookups
from singlewindow.transport import (
    checks,
    dsn,
    evidence,
    heap,
    maildrop,
    retry,
    terminal,
    translate,
)
from singlewindow.transport import hop as hopmod
from singlewindow.transport.forward import InjectError, Injector, Refused
from singlewindow.transport.lmtp import RecipientDsn, Transaction, reply_line

log = logging.getLogger("sw-transport")

Conn = psycopg.Connection[Any]
#: An event recorded with a claim's mark: (Single Window id, kind, detail).
Event = tuple[str, str, dict[str, Any]]
_EMAIL = re.compile(rb"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+[A-Za-z0-9]")

#: The XML converted from EDIFACT is kept in memory up to this many bytes, on disk beyond
#: (a temporary file, unlinked at once) until its copies are sent (issue 13: the XML of a
#: 7 MB interchange is ~36 MB). Writing and reading back a few MB costs little beside
#: converting them (~0.3 s per MB of EDIFACT).
XML_IN_MEMORY = 1 << 20
#: Test-only fault injection (SPEC D4 crash tests): kill this process with SIGKILL at one
#: step of a copy's delivery: ``before-claim``, ``during-data`` (half the copy sent to
#: Postfix), ``after-inject`` (Postfix answered 250, nothing recorded yet) or
#: ``after-record``. ``POINT@TABLE`` fires only for copies of submissions (``forward``) or
#: for generated mail (``notice_delivery``); ``POINT:pause=SECONDS`` pauses there instead,
#: after creating the file named by ``SW_TRANSPORT_FAULT_FLAG``. Never set in production.
FAULT = os.environ.get("SW_TRANSPORT_FAULT", "")
FAULT_FLAG = os.environ.get("SW_TRANSPORT_FAULT_FLAG", "")


class Deferred(Exception):
    """This recipient must wait (e.g. its maildrop is locked); Postfix retries."""

    def __init__(self, reply: Reply, lock: Path | None = None, remote: bool = False) -> None:
        super().__init__(reply.line())
        self.reply = reply
        self.lock = lock
        """The maildrop lock that held it: retried as soon as that is gone (D6)."""
        self.remote = remote
        """A POP3 session held the maildrop on the backend (the maildrop hop): retried
        on a timer (:meth:`.retry.Retrier.retry_later`)."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """The message parsed once per transaction (STYLE 9): every recipient and every step
    (checks, MIG, copies) asks this, never the raw bytes again."""

    origin: originmod.Origin | None
    """The milter's stamp; None for mail Single Window generated itself."""
    fields: list[translate.Field]
    """The header fields, in order (the copies are built from them)."""
    body_offset: int
    """Where the body starts in the raw message."""
    part: checks.BodyPart | None
    """A submission's one body part, decoded, when it passed the technical checks."""
    content: Reply | None
    """A submission's technical-check failure (SPEC R5.3 #1-7), else None."""
    addresses: list[tuple[str, str]]
    header_message_id: str | None
    sha256: str
    queue_id: str | None = None
    """Postfix's queue id for this message, from its own (first) Received header."""
    hops: int = 0
    """The ``Received`` fields: hops made so far, the hub's own listener's included."""

    def automatic(self, mail_from: str) -> str | None:
        """Why nothing may answer this message (:mod:`singlewindow.automatic`), or None."""
        return automatic.reason(
            null_sender=not mail_from,
            auto_submitted=translate.field_named(self.fields, "auto-submitted"),
            content_type=translate.field_named(self.fields, "content-type"),
            notice=translate.field_named(self.fields, automatic.NOTICE_HEADER))


def prepare(raw: bytes, allowed: tuple[str, ...], key: bytes) -> Prepared:
    """Raises :class:`originmod.OriginError` for a stamp that does not verify."""
    fields, body_offset = translate.head(raw)
    origin = _origin(fields, key)
    part: checks.BodyPart | None = None
    content: Reply | None = None
    if origin:
        try:
            part = checks.body_part(raw, allowed)
        except checks.ContentError as error:
            content = error.reply
    return Prepared(
        origin=origin,
        fields=fields,
        body_offset=body_offset,
        part=part,
        content=content,
        addresses=translate.addresses_in(fields) if origin else [],
        header_message_id=translate.field_named(fields, "message-id"),
        sha256=hashlib.sha256(raw).hexdigest(),
        queue_id=retry.queue_id(translate.field_named(fields, "received")),
        hops=translate.hops(fields),
    )


def _stamps(fields: list[translate.Field]) -> list[str]:
    return [translate.field_value(f) for name, f in fields
            if name == originmod.HEADER.lower()]


def _origin(fields: list[translate.Field], key: bytes) -> originmod.Origin | None:
    """The milter's stamp, its MAC verified; None if there is none. The milter writes
    exactly one, so a doubled, malformed or unsigned stamp, or one whose MAC is wrong,
    raises :class:`originmod.OriginError` (issue 12)."""
    stamps = _stamps(fields)
    if len(stamps) > 1:
        raise originmod.OriginError(f"{len(stamps)} {originmod.HEADER} headers")
    return originmod.verify(stamps[0], key) if stamps else None


def _stamp_id(raw: bytes, key: bytes) -> str | None:
    """The Single Window id in the stamp, for a failure before the router had read it."""
    with contextlib.suppress(originmod.OriginError):
        origin = _origin(translate.head(raw)[0], key)
        return origin.message_id if origin else None
    return None


_CLAIM = re.compile(r"(?:^|;)\s*(id|party|queue)=([^;\s]{1,64})")
_RECEIVED_ID = re.compile(r"\bid\s+([0-9A-Za-z]{6,40})\b")


def _claimed(fields: list[translate.Field]) -> dict[str, str]:
    """What a refused stamp claimed (id, party, queue of the first stamp), for the log."""
    stamps = _stamps(fields)
    found = {m[1]: m[2] for m in _CLAIM.finditer(stamps[0])} if stamps else {}
    return {f"claimed_{k}": v for k, v in found.items()}


def _inbound_queue_id(fields: list[translate.Field]) -> str | None:
    """Postfix's queue id of the message as it reached the transport: the ``id`` in
    the Received header its cleanup prepended (the first one)."""
    received = next((f for name, f in fields if name == "received"), None)
    match = _RECEIVED_ID.search(translate.field_value(received)) if received else None
    return match[1] if match else None


class Router:
    """The ``deliver`` callable of :class:`singlewindow.transport.lmtp.LmtpServer`."""

    def __init__(self, config: Config, pool: ConnectionPool[Any], injector: Injector,
                 retrier: retry.Retrier | None = None) -> None:
        self.config = config
        self.pool = pool
        self.injector = injector
        self.retrier = retrier
        #: An edge of a multi-node hub delivers maildrops on the backend (issue 15).
        self.hop = hopmod.Hop(config) if config.maildrop.backend else None
        #: The origin stamp's MAC key (issue 12); never logged.
        self.stamp_key = originmod.load_key(config.stamp_key_file)

    @property
    def where(self) -> Lookups:
        """The directory in memory (issue 13): look-ups without a statement; this
        process's own, also in a worker forked after the router was made."""
        return snapshot.shared(self.config.database, "sw-transport")

    async def __call__(self, mail_from: str, rcpt: str, raw: bytes,
                       transaction: Transaction) -> Reply:
        reply = await asyncio.to_thread(self.decide, mail_from, rcpt, transaction)
        if len(raw) >= heap.TRIM_AFTER:
            # Issue 13: what the message took goes back to the kernel (off the event loop).
            await asyncio.to_thread(heap.trim)
        return reply

    def decide(self, mail_from: str, rcpt: str, transaction: Transaction) -> Reply:
        prepared = transaction.state.get("prepared")
        try:
            if not isinstance(prepared, Prepared):
                try:
                    prepared = prepare(transaction.raw,
                                       self.config.transport.allowed_content_types,
                                       self.stamp_key)
                except originmod.OriginError as forged:
                    return self.refuse_stamp(mail_from, rcpt, transaction, str(forged))
                transaction.state["prepared"] = prepared
            with self.pool.connection() as conn:
                conn.autocommit = True
                if prepared.origin is None:
                    kind = generated_kind(mail_from, prepared.fields)
                    if kind is None:
                        # Every submission passes the milter (milter_default_action =
                        # tempfail); one that did not means a misconfigured listener.
                        log.error("unstamped mail from <%s> to <%s>: deferring",
                                  mail_from, rcpt)
                        return replies.POLICY_MISCONFIGURED
                    return self.internal(conn, kind, rcpt, transaction.raw, prepared.fields)
                return self.submission(conn, prepared, prepared.origin, mail_from, rcpt,
                                       transaction.raw, transaction.state)
        except Deferred as deferred:
            sw_id, queue_id = _ids(prepared)
            logs.decision(log, "recipient", sw_id=sw_id, queue_id=queue_id, recipient=rcpt,
                          action="defer", reply=deferred.reply.line())
            if (deferred.lock is not None or deferred.remote) and self.retrier is not None:
                queue_id = prepared.queue_id if isinstance(prepared, Prepared) else None
                if queue_id:
                    self.retry_when_free(deferred, queue_id)
                else:
                    log.warning("no Postfix queue id in the message for <%s>: it waits "
                                "for Postfix's next try", rcpt)
            return deferred.reply
        except Exception as exc:
            deferral = terminal.deferral(exc)
            sw_id, queue_id = _ids(prepared)
            if deferral is not None:
                logs.decision(log, "recipient", sw_id=sw_id, queue_id=queue_id,
                              level=logging.ERROR, recipient=rcpt, action="defer",
                              reply=deferral.line(), why=f"{type(exc).__name__}: {exc}")
                return deferral
            # Issue 10: a retry cannot cure this; answer now, and show the operator why.
            swid = sw_id or _stamp_id(transaction.raw, self.stamp_key)
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
        return await asyncio.to_thread(self.delivered_dsn, transaction, decided)

    def delivered_dsn(self, transaction: Transaction, decided: list[Reply]) -> list[Reply]:
        """Postfix writes no success DSN for this DSN-capable LMTP server (smtp_rcpt.c),
        so the transport does, for the recipients it answered 250 whose NOTIFY has SUCCESS
        (RFC 3461 4.1), once per submission and set of recipients, however often Postfix
        retries (the same bookkeeping as the copies, SPEC D4). If it cannot be sent now,
        those recipients are deferred: their copies are recorded, a retry sends only the
        DSN. Automatic mail gets none (the milter made its NOTIFY NEVER)."""
        p = transaction.state.get("prepared")
        mail_from = transaction.mail_from
        if not isinstance(p, Prepared) or p.origin is None or not mail_from or \
                p.automatic(mail_from) or len(transaction.dsn) != len(decided):
            return decided  # (no NOTIFY at all: RFC 3461 4.1's default asks no success)
        wanted = [i for i, (reply, params) in
                  enumerate(zip(decided, transaction.dsn, strict=True))
                  if reply.code == 250 and params.success]
        if not wanted:
            return decided
        try:
            with self.pool.connection() as conn:
                conn.autocommit = True
                self.success_dsn(conn, p, p.origin, mail_from, transaction, [
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

    def success_dsn(self, conn: Conn, p: Prepared, o: originmod.Origin, mail_from: str,
                    transaction: Transaction,
                    recipients: list[tuple[str, RecipientDsn, Reply]]) -> None:
        """The "delivered" DSN to the submitter's logical address, delivered as
        Postfix's was: to its physical address or maildrop, through the allow-list."""
        target = self.where.find_logical(mail_from)
        if target is None:
            log.warning("%s: submitter <%s> unknown, no delivered DSN", o.message_id,
                        mail_from)
            return
        listed = sorted(rcpt.lower() for rcpt, _, _ in recipients)
        key = hashlib.sha256(
            f"delivered\0{o.message_id}\0{','.join(listed)}".encode()).hexdigest()
        _fault("before-claim", "notice_delivery")
        claim = messages.claim_notice(conn, messages.Notice(
            key, o.message_id, target.logical, target.physical, "dsn",
            f"<SWN{key[:24]}@{self.config.hub.domain}>"), self.lease)

        def build() -> bytes:
            hub = self.config.hub
            raw = transaction.raw
            full = transaction.ret == "FULL" and len(raw) <= delivered.FULL_LIMIT
            report = delivered.build(
                to=mail_from, hostname=hub.hostname, domain=hub.domain,
                recipients=[delivered.Delivered(rcpt, params.orcpt, reply_line(reply))
                            for rcpt, params, reply in recipients],
                head=raw[:p.body_offset], body=raw[p.body_offset:] if full else None,
                envid=transaction.envid, arrival=_arrival(p.fields), now=time.time(),
                boundary=f"{o.message_id}.{secrets.token_hex(8)}/{hub.hostname}")
            return translate.generated(
                scrub(self.where, report, target.party),
                # The submitter is its own DSN's reader (its address is the sender's).
                self.reader(conn, o.message_id, target.party, author=target.party.id),
                claim.copy_message_id, returned=[(delivered.MESSAGE_HEADER, o.message_id)])
        sent = self.deliver_once(
            conn, claim, build, sender="", physical=target.physical,
            maildrop_login=target.maildrop_login, envid=None, notify="NEVER", orcpt=None)
        if sent.fresh:
            logs.decision(log, "dsn", sw_id=o.message_id, queue_id=p.queue_id,
                          level=logging.ERROR if sent.refusal else logging.INFO,
                          kind="delivered", to=target.logical,
                          state="refused" if sent.refusal else "sent",
                          copy_queue_id=sent.queue_id, copy=claim.copy_message_id,
                          reply=sent.refusal)

    def refuse_stamp(self, mail_from: str, rcpt: str, transaction: Transaction,
                     why: str) -> Reply:
        """A stamp that does not verify (issue 12): the message did not come through the
        milter, so nothing vouches for its sender. Refused, not forwarded; logged, and
        recorded as a message of its own (a new id: the one the stamp claims may be a
        real message's) that ``swctl trace`` finds by its queue id, its Message-ID, or
        the id and queue id the stamp claimed."""
        fields = translate.head(transaction.raw)[0]
        claimed = _claimed(fields)
        queue_id = _inbound_queue_id(fields)
        swid = transaction.state.get("refused")
        with self.pool.connection() as conn:
            conn.autocommit = True
            if not isinstance(swid, str):
                swid = originmod.new_message_id()
                messages.record_message(conn, messages.Received(
                    id=swid, listener="refused", party=None, sasl_login=None,
                    peer_address=None, envelope_from=mail_from,
                    header_message_id=translate.field_named(fields, "message-id"),
                    queue_id=queue_id,
                    payload_sha256=hashlib.sha256(transaction.raw).hexdigest()))
                messages.event(conn, swid, "stamp-refused", {"reason": why, **claimed})
                transaction.state["refused"] = swid
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

    # --- submissions ------------------------------------------------------------------

    def submission(self, conn: Conn, p: Prepared, o: originmod.Origin, mail_from: str,
                   rcpt: str, raw: bytes, state: dict[str, object]) -> Reply:
        """One recipient of a stamped submission; ``state`` carries what the transaction's
        recipients share (the log entry, the header check, the MIG result)."""
        unmatched: Reply | None = None
        why = p.automatic(mail_from)
        if not mail_from:
            # A DSN from a party's MTA (an agency's, usually) about a copy we forwarded
            # (SPEC §5); only the party the copy went to can report on it (issue 12).
            report = dsn.parse(raw)
            if report is not None:
                handled = self.agency_report(conn, report, raw, party=o.party, rcpt=rcpt)
                if handled is not None:
                    return handled
                unmatched = self.unmatched_report(o, report, rcpt)
        if not state.get("recorded"):
            state["hops"] = self.record(conn, p, o, mail_from, why)
            state["recorded"] = True
        target = self.where.find_logical(rcpt)
        recorded = False  # the outcome went with the last copy's mark
        typed: str | None = None  # a type no copy's claim records, recorded with the outcome
        refused = unmatched or self.check(conn, p, o, mail_from, rcpt, target, state)
        measured: list[tuple[str, dict[str, Any]]] = []
        if refused is None:
            assert target is not None
            result = self.validated(p, state)
            # Issue 14: how long the MIG took, recorded with the next statement.
            measured = _once(state, "mig-validated")
            if isinstance(result, Reply):
                reply = result.with_text(f"{result.text} (Single Window message "
                                         f"{o.message_id})")
            elif result.valid:
                hops = state.get("hops")
                reply, recorded = self.forward(conn, o, mail_from, target, p, result,
                                               _known_headers(self.where, p, state),
                                               hops if isinstance(hops, int) else p.hops,
                                               measured)
                measured = []
            elif not mail_from or why:
                # Nothing goes to the null sender, and no control message answers automatic
                # mail (issue 12): the refusal names the errors instead, in the trace.
                reply = terminal.mig_refusal(result, o.message_id,
                                             why if mail_from else None)
                typed = result.message_type
                if mail_from and not state.get("withheld"):
                    state["withheld"] = True
                    messages.event(conn, o.message_id, "control-message-withheld", {
                        "reason": why, "errors": len(result.errors)})
            else:
                # SPEC R6.1: delivered to Single Window (the DSN says so), not forwarded;
                # the submitter learns what is wrong from the control message.
                self.control_message(conn, o, mail_from, p, result, measured)
                measured = []
                reply = replies.DELIVERED.with_text(
                    f"Delivered to Single Window as {o.message_id}; not forwarded: "
                    f"{len(result.errors)} MIG error(s), see the control message")
        else:
            reply = refused.with_text(f"{refused.text} (Single Window message {o.message_id})")
        if not recorded:
            messages.record_outcome(conn, o.message_id, rcpt.lower(), f"{reply.code} "
                                    f"{reply.enhanced}", reply.text, reply.key, measured,
                                    message_type=typed)
        logs.decision(log, "recipient", sw_id=o.message_id, queue_id=p.queue_id,
                      recipient=rcpt, action=_action(reply), reply=reply.line())
        return reply

    def check(self, conn: Conn, p: Prepared, o: originmod.Origin, mail_from: str,
              rcpt: str, target: directory.Address | None,
              state: dict[str, object]) -> Reply | None:
        """A routing loop first (issue 12), then SPEC R5.3 in its order: content (#1-7),
        addresses (#8), link (#9), activation (#10). None: the recipient passes."""
        limit = self.config.transport.hop_limit
        hops = state.get("hops", p.hops)
        if isinstance(hops, int) and hops > limit:
            answers = (f" (counting the messages it answers within "
                       f"{self.config.transport.reply_window:g} s)" if hops > p.hops else "")
            return replies.ROUTING_LOOP.with_text(
                f"Routing loop detected: the message has passed {hops} hops{answers}, more "
                f"than the {limit} Single Window allows; not forwarded")
        if p.content is not None:
            return p.content
        if target is None:
            return replies.UNKNOWN_ADDRESS.with_text(
                f"The recipient <{rcpt}> is unknown to Single Window")
        if "headers" not in state:  # the same for every recipient: looked up once
            known = _known_headers(self.where, p, state)
            state["headers"] = next(
                (replies.UNKNOWN_ADDRESS.with_text(
                    f"The address <{address}> in header {name.title()} is unknown to "
                    "Single Window")
                 for name, address in p.addresses if address.lower() not in known), None)
        unknown = state["headers"]
        if isinstance(unknown, Reply):
            return unknown
        sender = self.where.get_party(o.party)
        not_yours = _header_sender_refusal(sender, p.addresses,
                                           _known_headers(self.where, p, state))
        if not_yours is not None:
            return not_yours
        if not self.where.link_allowed(sender, target.party):
            return replies.UNAUTHORISED_LINK.with_text(
                f"This link is not authorised: {sender.kind} {sender.name} may not send "
                f"to {target.party.kind} <{target.logical}>")
        if not target.active:
            return replies.ADDRESS_NOT_ACTIVATED.with_text(
                f"The logical address <{target.logical}> is not yet activated")
        own = self.where.find_logical(mail_from) if mail_from else None
        if own is not None and not own.active:
            return replies.ADDRESS_NOT_ACTIVATED.with_text(
                f"Your logical address <{own.logical}> is not yet activated")
        return None

    def record(self, conn: Conn, p: Prepared, o: originmod.Origin, mail_from: str,
               why: str | None) -> int:
        """Record the submission with its first events in one statement, and return its
        hop count (issue 12): its ``Received`` fields, plus those of the message it
        answers when that was a copy sent within ``reply_window`` (an auto-responder's new
        message continues the loop it is part of). Recorded once, so a retry counts the
        same."""
        answered = [mid for name, field in p.fields if name in translate.MESSAGE_IDS
                    for mid in translate.message_ids_in(translate.field_value(field))]
        inherited = messages.answered_hops(conn, answered[:50],
                                           self.config.transport.reply_window)
        hops = p.hops + inherited
        events: list[tuple[str, dict[str, object]]] = [
            ("hops", {"hops": hops, "received": p.hops, "answered": inherited})]
        if why:
            # What the milter also saw (it made every NOTIFY NEVER): nothing answers it.
            events.append(("automatic", {"reason": why}))
        new = messages.record_message(conn, messages.Received(
            id=o.message_id, listener=o.listener, party=o.party,
            sasl_login=o.login or None, peer_address=o.peer or None,
            envelope_from=mail_from, header_message_id=p.header_message_id,
            queue_id=o.queue_id or None, payload_sha256=p.sha256), events)
        if new:
            return hops
        recorded = messages.recorded_hops(conn, o.message_id)
        return hops if recorded is None else recorded

    def validated(self, p: Prepared, state: dict[str, object]) -> mig.Result | Reply:
        """SPEC R6: the one body part against the MIG (EDIFACT is converted to XML), once
        per transaction however many recipients pass the checks.

        A message whose XML would make a copy larger than ``copy_size_limit`` is refused
        (issue 10): the conversion stops there, and the answer says why.
        """
        cached = state.get("mig")
        if isinstance(cached, mig.Result | Reply):
            return cached
        assert p.part is not None  # only called once the checks passed
        result: mig.Result | Reply
        started = time.perf_counter()
        try:
            result = mig.validate(p.part.payload, p.part.content_type,
                                  limit=self.config.transport.xml_size_limit,
                                  spool=XML_IN_MEMORY)
            state["mig-validated"] = validation_event(
                len(p.part.payload), time.perf_counter() - started, result)
        except mig.TooLarge as exc:
            result = replies.COPY_TOO_LARGE.with_text(
                f"Not forwarded: as XML the message is larger than {exc.limit:,} bytes, "
                f"which makes a copy larger than the "
                f"{self.config.transport.copy_size_limit:,} bytes Single Window may send "
                "to an agency")
        state["mig"] = result
        return result

    def control_message(self, conn: Conn, o: originmod.Origin, mail_from: str, p: Prepared,
                        result: mig.Result,
                        events: list[tuple[str, dict[str, Any]]] | None = None) -> None:
        """Once per message, however many recipients or retries (same bookkeeping as D4);
        ``events`` are recorded with the claim."""
        # The type goes with the claim (issue 14: a message the MIG refused has one too).
        claim = messages.claim_forward(conn, messages.Forward(
            o.message_id, "*control*", mail_from.lower(), mail_from.lower(),
            f"<{o.message_id}.control@{self.config.hub.domain}>"), self.lease,
            typed=result.message_type is not None, message_type=result.message_type,
            events=events or ())
        # The null envelope sender (issue 12): a control message that cannot be delivered
        # causes no DSN; Postfix logs it, and ``swctl trace`` shows that line.
        sent = self.deliver_once(conn, claim, lambda: control.build(
            result, message_id=o.message_id, sender=self.config.hub.system_sender,
            to=mail_from, domain=self.config.hub.domain, in_reply_to=p.header_message_id),
            sender="", physical=mail_from, maildrop_login=None,
            envid=None, notify="NEVER", orcpt=None)
        if sent.fresh:
            messages.event(conn, o.message_id, "control-message", {
                "errors": [e.as_dict() for e in result.errors][:100],
                "message_type": result.message_type, "queue_id": sent.queue_id})

    def forward(self, conn: Conn, o: originmod.Origin, mail_from: str,
                target: directory.Address, p: Prepared, result: mig.Result,
                known: dict[str, directory.Address], hops: int,
                events: list[tuple[str, dict[str, Any]]] | None = None) -> tuple[Reply, bool]:
        """One copy per destination, each sent exactly once (SPEC D4): the reply for the
        recipient, 250 unless its copies were refused for good, and whether that 250 is
        recorded already (with the last copy's mark, in one statement). Each copy carries
        ``hops`` on (issue 12); ``events`` are recorded with the first claim."""
        rcpt = target.logical
        message_type = result.message_type
        routed = routes(self.where, mig.registry(), rcpt, message_type)
        # No DSN about the copies of automatic mail either (its submitter asked for none).
        quiet = p.automatic(mail_from)

        author = self.where.get_party(o.party).id

        def build(copy_message_id: str, dest_party: directory.Party) -> translate.Copy:
            # SPEC F6: agencies receive XML (converted from EDIFACT where needed), encoded
            # from its file or memory as it is sent (issue 13: never whole in memory).
            fields = translate.body_fields(p.fields, "application/xml; charset=utf-8")
            # The hop count goes on (issue 12), as host-free Received fields.
            trace = translate.trace_fields(hops, self.config.hub.domain,
                                           email.utils.formatdate(localtime=False))
            head = translate.translate(
                fields, b"", lambda a: _logical(self.where, known, a), copy_message_id,
                extra=trace, message_ids=self.message_ids(conn, author, dest_party.id))
            return translate.Copy(head, result.xml_file or io.BytesIO(result.xml or b""))

        refused: list[tuple[directory.Address, str]] = []
        destinations = routed or [target]
        delivered = replies.DELIVERED.with_text(f"Delivered to Single Window as {o.message_id}")
        recorded = False
        for n, dest in enumerate(destinations):
            _fault("before-claim", "forward")
            tag = hashlib.sha256(f"{rcpt.lower()}>{dest.logical}".encode()).hexdigest()[:10]
            # The message's type goes with the first claim, in the same statement.
            claim = messages.claim_forward(conn, messages.Forward(
                o.message_id, rcpt.lower(), dest.logical, dest.physical,
                f"<{o.message_id}.{tag}@{self.config.hub.domain}>"), self.lease,
                typed=n == 0, message_type=message_type,
                events=(events or ()) if n == 0 else ())

            def forwarded(queue_id: str, recovered: bool, dest: directory.Address = dest,
                          claim: messages.Claim = claim) -> Event:
                return (o.message_id, "forwarded", {
                    "recipient": rcpt.lower(), "destination": dest.logical,
                    "queue_id": queue_id, "copy_message_id": claim.copy_message_id,
                    "recovered": recovered})
            sent = self.deliver_once(
                conn, claim, functools.partial(build, claim.copy_message_id, dest.party),
                sender=mail_from, physical=dest.physical, maildrop_login=dest.maildrop_login,
                envid=claim.envid, notify="NEVER" if quiet else "SUCCESS,FAILURE",
                orcpt=dest.logical, on_sent=forwarded,
                outcome=(o.message_id, rcpt.lower(), f"{delivered.code} {delivered.enhanced}",
                         delivered.text)
                if n == len(destinations) - 1 and not refused else None)
            if sent.refusal is not None:
                refused.append((dest, sent.refusal))
            recorded = sent.outcome_recorded
            if sent.fresh:
                logs.decision(log, "copy", sw_id=o.message_id, queue_id=p.queue_id,
                              recipient=rcpt, destination=dest.logical,
                              state="refused" if sent.refusal else "injected",
                              copy_queue_id=sent.queue_id, copy=claim.copy_message_id,
                              recovered=sent.recovered or None, reply=sent.refusal)
        if not refused:
            return delivered, recorded
        reason = _refusal_text(refused[0][1])
        if len(refused) == len(destinations):
            messages.event(conn, o.message_id, "copy-refused", {
                "recipient": rcpt.lower(), "destinations": [d.logical for d, _ in refused],
                "reason": reason})
            return _refusal_reply(refused[0][1]).with_text(
                f"Not forwarded: {reason} (Single Window message {o.message_id})"), False
        # Some destinations have their copy: the message was delivered to Single Window
        # and the submitter hears separately which agency did not get it (unless the
        # submission was automatic: then the trace alone tells).
        if quiet:
            messages.event(conn, o.message_id, "notice-withheld", {"reason": quiet})
        else:
            self.report_refusals(conn, o.message_id, mail_from, refused)
        names = ", ".join(f"<{d.logical}>" for d, _ in refused)
        return delivered.with_text(f"{delivered.text}; not forwarded to {names}: {reason}"), \
            False

    @property
    def lease(self) -> float:
        return self.config.transport.claim_lease

    def deliver_once(self, conn: Conn, claim: messages.Claim,
                     build: Callable[[], bytes | translate.Copy], *,
                     sender: str, physical: str, maildrop_login: str | None,
                     envid: str | None, notify: str, orcpt: str | None,
                     on_sent: Callable[[str, bool], Event] | None = None,
                     outcome: tuple[str, str, str, str] | None = None) -> Sent:
        """Send the claimed copy unless it went out already (SPEC D4, issue 10).

        A copy counts as sent on proof that its receiver committed it: the 250 Postfix
        gave this attempt, dovecot-lda's success, or — for a copy an interrupted attempt
        left pending — the receiver's log (:mod:`.evidence`). A claim another attempt
        still holds defers; a permanent refusal is recorded and never retried.
        ``on_sent(queue_id, recovered)`` names the event recorded with the mark, and
        ``outcome`` a recipient's outcome recorded with it (:func:`messages.mark_injected`).

        The claim was just taken with a full lease: when the copy is built within a
        quarter of it, the lease is not renewed (one statement less), and the copy is
        still sent within half of it.
        """
        entered = time.monotonic()
        if claim.outcome == "done":
            return Sent(claim.queue_id, claim.refusal, fresh=False)
        if claim.outcome == "busy":
            raise Deferred(replies.COPY_IN_PROGRESS)
        if claim.outcome == "retry":
            found = self.sent_before(maildrop_login, claim)
            if found is not None:
                return _recovered(conn, claim, found, on_sent, outcome,
                                  "the receiver's log")
        data = build()
        # Building a copy (or, for a streamed one, encoding it while it is sent) takes a
        # while: the lease counts from here, and the end of DATA is not sent after half of
        # it, so it never commits outside the lease.
        started = time.monotonic()
        if started - entered > self.lease / 4:
            if not messages.renew(conn, claim, self.lease):
                raise Deferred(replies.COPY_IN_PROGRESS)
        else:
            started = entered
        if maildrop_login:
            if self.hop is not None:
                # The backend looks for an interrupted attempt's copy itself (XSINCE).
                reply = self.hop.deliver(
                    maildrop_login, sender, data,
                    since=claim.since if claim.outcome == "retry" else None,
                    deadline=started + self.lease / 2)
            else:
                reply = maildrop.deliver(self.config.transport.dovecot_lda,
                                         self.config.dovecot_config,
                                         self.config.paths.maildrop_dir, maildrop_login,
                                         sender, bytes(data))
            if reply.code != 250:
                # dovecot-lda exits 0 only after the save; any other end may still have
                # saved it, which the log tells the next attempt (a retry looks first).
                locked = reply == replies.MAILDROP_LOCKED
                if locked:  # each wait for a POP3 session shows in trace (issue 14)
                    messages.release_locked(conn, claim, maildrop_login, reply.enhanced)
                else:
                    messages.release(conn, claim)
                lock = maildrop.lock_path(self.config.paths.maildrop_dir, maildrop_login) \
                    if locked and self.hop is None else None
                raise Deferred(reply, lock, remote=locked and self.hop is not None)
            if reply == replies.MAILDROP_SAVED_BEFORE:
                return _recovered(conn, claim, "maildrop", on_sent, outcome,
                                  "the maildrop backend's log")
            queue_id = "maildrop"
        else:
            try:
                queue_id = self.injector.send(
                    sender, physical, data, envid=envid, notify=notify, orcpt=orcpt,
                    deadline=started + self.lease / 2,
                    checkpoint=lambda point: _fault(point, claim.table))
            except Refused as refusal:
                messages.mark_refused(conn, claim, refusal.reply)
                log.error("copy %s refused by Postfix: %s", claim.copy_message_id, refusal)
                return Sent(None, refusal.reply, fresh=True)
            except InjectError as exc:
                if not exc.uncertain:
                    messages.release(conn, claim)
                raise
        _fault("after-inject", claim.table)
        messages.mark_injected(conn, claim, queue_id,
                               on_sent(queue_id, False) if on_sent else None, outcome)
        _fault("after-record", claim.table)
        return Sent(queue_id, None, fresh=True, outcome_recorded=outcome is not None)

    def sent_before(self, maildrop_login: str | None, claim: messages.Claim) -> str | None:
        """The queue id (or "maildrop") of a copy an interrupted attempt committed.
        None for a maildrop on the backend: its log is there, and the backend looks it
        up when the retry says XSINCE (:mod:`.backend`)."""
        if maildrop_login and self.hop is not None:
            return None
        if maildrop_login:
            saved = evidence.maildrop_saved(self.config.dovecot_log, claim.copy_message_id,
                                            claim.since)
            return "maildrop" if saved else None
        return evidence.postfix_committed(self.config.postfix_maillog, claim.copy_message_id,
                                          claim.since)

    def report_refusals(self, conn: Conn, swid: str, submitter: str,
                        refused: list[tuple[directory.Address, str]]) -> None:
        """Tell the submitter which destinations did not get their copy."""
        failed = [agency.Failed(d.logical, "failed",
                                _refusal_reply(r).enhanced, _refusal_text(r))
                  for d, r in refused]
        self.notify_submitter(conn, swid, submitter, failed, "refused:" + ",".join(
            sorted(d.logical for d, _ in refused)))

    # --- agency-leg reports ------------------------------------------------------------

    def agency_report(self, conn: Conn, report: dsn.Report, raw: bytes, *,
                      party: str | None, rcpt: str) -> Reply | None:
        """A DSN about a forwarded copy: recorded on the original message; a failure or
        delay is reported to the submitter naming logical addresses only. None: not a
        report about any copy of ours that this reporter may report on."""
        swid = self.report_subject(conn, report, party=party, rcpt=rcpt)
        if swid is None:
            return None
        digest = hashlib.sha256(raw).hexdigest()
        if messages.first_event(conn, swid, "agency-dsn", digest):
            messages.event(conn, swid, "agency-dsn", {
                "digest": digest,
                "recipients": [{"recipient": r.original_recipient or r.final_recipient,
                                "action": r.action, "status": r.status,
                                "diagnostic": r.diagnostic} for r in report.recipients]})
        if report.failed:
            self.report_failure(conn, swid, report, digest)
        return replies.DELIVERED.with_text(f"Agency-leg report recorded on {swid}")

    @staticmethod
    def report_subject(conn: Conn, report: dsn.Report, *, party: str | None,
                       rcpt: str) -> str | None:
        """Which message a report is about (issue 12), or None.

        Only by what Single Window put on the copy: its ENVID, a random token only the
        copy's receiver saw, else the copy's own Message-ID in the returned headers (for
        an MTA that does not keep the ENVID). And only a report that comes the way a
        genuine one does: sent to the copy's envelope sender (RFC 3461 6.2) and, from a
        party's MTA (``party``, the origin stamp's), by the party the copy went to.
        ``party`` is None for Postfix's own DSNs about the outbound leg, which this hub
        wrote; the recipient check keeps a party from having its own submission's DSN,
        with a copy's identifiers in it, taken for a report about another's message.
        """
        found = (messages.copy_by_envid(conn, report.envid),
                 messages.copy_by_message_id(conn, report.returned_message_id))
        for copy in found:
            if copy is None or copy.envelope_from.lower() != rcpt.lower():
                continue
            if party is not None and copy.destination_party != party:
                continue
            return copy.message_id
        return None

    @staticmethod
    def unmatched_report(o: originmod.Origin, report: dsn.Report, rcpt: str) -> Reply:
        """A party's MTA sent a DSN that is about no copy sent to that party: forged, or
        about something that never left here. Refused, never forwarded (issue 12)."""
        log.warning("%s: delivery report from %s to <%s> (ENVID %.100r, returned "
                    "Message-ID %.200r) matches no copy sent to %s: refused",
                    o.message_id, o.party, rcpt, report.envid,
                    report.returned_message_id, o.party)
        return replies.REPORT_UNMATCHED

    def report_failure(self, conn: Conn, swid: str, report: dsn.Report, digest: str) -> None:
        forwards = messages.forwards_of(conn, swid)
        by_physical = {f["physical"]: f["destination"] for f in forwards}
        failed = []
        for r in report.recipients:
            if r.action not in ("failed", "delayed"):
                continue
            logical = next((d for d in by_physical.values() if d == r.original_recipient.lower()),
                           by_physical.get(r.final_recipient.lower(), "an agency"))
            failed.append(agency.Failed(logical, r.action, r.status,
                                        agency.clean_diagnostic(r.diagnostic)))
        submitter = messages.envelope_from(conn, swid)
        if failed and submitter and messages.has_event(conn, swid, "automatic"):
            # Issue 12: an automatic submission is not answered, not even about its copies.
            messages.event(conn, swid, "notice-withheld", {
                "reason": "the submission was automatic", "digest": digest})
        elif failed and submitter:
            self.notify_submitter(conn, swid, submitter, failed, "dsn:" + digest)

    def notify_submitter(self, conn: Conn, swid: str, submitter: str,
                         failed: list[agency.Failed], about: str) -> None:
        """The agency-failure notice, once per ``about`` (a report, a set of refusals)."""
        tag = hashlib.sha256(about.encode()).hexdigest()[:12]
        claim = messages.claim_forward(conn, messages.Forward(
            swid, "*agency-failure*", tag, submitter.lower(),
            f"<{swid}.agency-dsn.{tag}@{self.config.hub.domain}>"), self.lease)
        sent = self.deliver_once(conn, claim, lambda: agency.build(
            message_id=swid, to=submitter, domain=self.config.hub.domain,
            hostname=self.config.hub.hostname, failed=failed,
            notice_id=claim.copy_message_id),
            sender="", physical=submitter, maildrop_login=None, envid=None,
            notify="NEVER", orcpt=None)
        if sent.fresh:
            messages.event(conn, swid, "agency-failure-reported",
                           {"to": submitter, "queue_id": sent.queue_id,
                            "recipients": [f.logical for f in failed]})

    # --- what a reader may see --------------------------------------------------------

    def message_ids(self, conn: Conn, author: int | None, reader: int) -> translate.IdMap:
        """How the message ids ``author``'s message names reach ``reader`` (issue 12):

        - an id Single Window issued (``<SW…@domain>``) stays, unless it stands for one of
          the reader's own: a copy of the reader's message, or an alias of the reader's
          id, maps back to the reader's id (a reply threads under the reader's original);
        - any other id is the author's words: kept when the reader is the author, else
          the copy the reader got of the author's message with that Message-ID, else a
          stable alias stored for the author (which maps back when the reader replies).
        """
        domain = self.config.hub.domain.lower()
        seen: dict[str, str] = {}

        def mapped(mid: str) -> str:
            if mid not in seen:
                seen[mid] = self._message_id(conn, author, reader, mid, domain)
            return seen[mid]
        return mapped

    def _message_id(self, conn: Conn, author: int | None, reader: int, mid: str,
                    domain: str) -> str:
        local, _, right = mid[1:-1].rpartition("@")
        if right.lower() == domain and local.startswith("SW"):
            origin = messages.copy_origin(conn, mid)
            if origin is not None and origin[0] == reader and origin[1]:
                return origin[1]
            alias = messages.alias_origin(conn, mid)
            if alias is not None and alias[0] == reader:
                return alias[1]
            return mid
        if author is not None and author == reader:
            return mid
        if author is None:
            # Nobody to map it back to: a stable stand-in that names nothing.
            digest = hashlib.sha256(f"{domain}\0{mid}".encode()).hexdigest()[:24].upper()
            return f"<SWX{digest}@{domain}>"
        copy = messages.copy_for(conn, author, mid, reader)
        if copy is not None:
            return copy
        return messages.alias_for(conn, author, mid,
                                  f"<SWR{secrets.token_hex(12).upper()}@{domain}>")

    def reader(self, conn: Conn, about: str | None, party: directory.Party,
               author: int | None = None) -> translate.Reader:
        """The lookups that rewrite generated mail for ``party`` (issue 12); ``author``,
        the party that submitted ``about``, when the caller knows it."""
        hub = self.config.hub
        if author is None and about:
            author = messages.party_of(conn, about)
        machine = socket.gethostname()
        internal = tuple(w for w in (machine, machine.split(".")[0])
                         if w and w.lower() not in (hub.hostname.lower(), hub.domain.lower()))

        def shown(address: str) -> str | None:
            found = self.where.known_addresses([address]).get(address.lower())
            if found is not None:
                return found.logical
            host = address.rpartition("@")[2].lower()
            return address if host in (hub.hostname.lower(), hub.domain.lower()) else None
        return translate.Reader(shown, self.message_ids(conn, author, party.id),
                                hub.hostname, hub.domain, internal, own=author == party.id)

    # --- mail Single Window generated -------------------------------------------------

    def internal(self, conn: Conn, kind: str, rcpt: str, raw: bytes,
                 fields: list[translate.Field]) -> Reply:
        """A DSN, control message or notice for a party (``kind``, see
        :func:`generated_kind`): to its physical address or maildrop, exactly once (the
        same bookkeeping as the copies of submissions), with the null sender."""
        target = self.where.find_logical(rcpt)
        if target is None:
            return replies.UNKNOWN_ADDRESS.with_text(
                f"The recipient <{rcpt}> is unknown to Single Window")
        # Postfix's own DSN: about a copy's outbound leg, or about the submission leg of
        # the recipient's own message (delivered like any other DSN). One that returns a
        # submission's stamped headers is the hub's answer to a submission, never a leg.
        report = dsn.parse(raw) if kind == "dsn" and not _about_submission(raw) else None
        if report is not None:
            handled = self.agency_report(conn, report, raw, party=None, rcpt=rcpt)
            if handled is not None:
                return handled
        key = hashlib.sha256(raw + b"\0" + rcpt.lower().encode()).hexdigest()
        about = _about(raw, fields)
        claim = messages.claim_notice(conn, messages.Notice(
            key, about, target.logical, target.physical, kind,
            f"<SWN{key[:24]}@{self.config.hub.domain}>"), self.lease)
        sent = self.deliver_once(
            conn, claim, lambda: translate.generated(
                scrub(self.where, raw, target.party), self.reader(conn, about, target.party),
                claim.copy_message_id,
                returned=[("X-SingleWindow-Message", about)] if about else []),
            sender="", physical=target.physical, maildrop_login=target.maildrop_login,
            envid=None, notify="NEVER", orcpt=None)
        if sent.fresh:
            logs.decision(log, "notice", sw_id=about, queue_id=_inbound_queue_id(fields),
                          level=logging.ERROR if sent.refusal else logging.INFO, kind=kind,
                          to=target.logical, state="refused" if sent.refusal else "sent",
                          copy_queue_id=sent.queue_id, copy=claim.copy_message_id,
                          reply=sent.refusal)
        if sent.refusal is not None:
            reply = _refusal_reply(sent.refusal)
            return reply.with_text(f"Not delivered to {target.logical}: "
                                   f"{_refusal_text(sent.refusal)}")
        return replies.DELIVERED.with_text(f"Delivered to {target.logical}")


def _ids(prepared: object) -> tuple[str | None, str | None]:
    """The Single Window id and queue id of a message as far as it was parsed."""
    if not isinstance(prepared, Prepared):
        return None, None
    return prepared.origin.message_id if prepared.origin else None, prepared.queue_id


def _action(reply: Reply) -> str:
    """A recipient's answer as the log names it."""
    return "accept" if reply.code < 400 else "defer" if reply.transient else "reject"


@dataclass(frozen=True, slots=True)
class Sent:
    """How a claimed copy ended in this attempt."""

    queue_id: str | None
    refusal: str | None
    """Postfix's permanent refusal as recorded, e.g. ``552 5.3.4 ...``."""
    fresh: bool
    """This attempt sent it (or found the proof that an interrupted one did)."""
    recovered: bool = False
    outcome_recorded: bool = False
    """The recipient's outcome went with the mark."""


def _recovered(conn: Conn, claim: messages.Claim, queue_id: str,
               on_sent: Callable[[str, bool], Event] | None,
               outcome: tuple[str, str, str, str] | None, proof: str) -> Sent:
    """A copy an interrupted attempt already committed (``proof`` says how we know):
    recorded as sent, not sent again."""
    messages.mark_injected(conn, claim, queue_id,
                           on_sent(queue_id, True) if on_sent else None, outcome)
    log.warning("copy %s was committed by an interrupted attempt (%s, %s); not sent again",
                claim.copy_message_id, queue_id, proof)
    return Sent(queue_id, None, fresh=True, recovered=True,
                outcome_recorded=outcome is not None)


#: The notice header's first word (:data:`automatic.NOTICE_HEADER`) → the kind recorded.
_NOTICE_KINDS = {"agency-dsn": "agency-failure", "control": "control"}


def generated_kind(mail_from: str, fields: list[translate.Field]) -> str | None:
    """What unstamped mail is, by what the hub wrote: its notice header names a control
    message or an agency-failure notice; without one, null-sender mail is Postfix's own
    DSN. None: mail with a sender and no stamp, which Single Window never generates (its
    notices have the null sender, issue 12), so it did not come the way it should."""
    if mail_from:
        return None
    notice = translate.field_named(fields, automatic.NOTICE_HEADER)
    if notice is None:
        return "dsn"
    word = notice.split(" ", 1)[0].lower()
    return _NOTICE_KINDS.get(word, "notice")


def routes(where: Lookups, registry: mig.Registry, rcpt: str, message_type: str | None
           ) -> list[directory.Address]:
    """SPEC F3: the destinations routed for this release of the message (``PAXLST-D03B``),
    else those routed for the message in all its releases (``PAXLST``, issue 14); none:
    the recipient's own party receives it."""
    if not message_type:
        return []
    routed = where.routes_for(rcpt, message_type)
    if routed:
        return routed
    mt = registry.types.get(message_type)
    if mt is None or mt.message == message_type:
        return []
    return where.routes_for(rcpt, mt.message)


def _refusal_reply(refusal: str) -> Reply:
    code, enhanced = _code_of(refusal)
    if code == 552 or enhanced == "5.3.4":
        return replies.COPY_TOO_LARGE
    if enhanced == "5.0.0":
        return replies.COPY_REFUSED
    return Reply(554, enhanced, replies.COPY_REFUSED.text, replies.COPY_REFUSED.key)


def validation_event(size: int, seconds: float, result: mig.Result) -> dict[str, Any]:
    """The ``mig-validated`` event's detail (issue 14): the payload's size, the seconds
    the MIG took, and its findings as [type, rule, count] (only when there are some),
    for ``singlewindow_mig_validation_seconds_per_megabyte`` and
    ``singlewindow_mig_findings_total``."""
    detail: dict[str, Any] = {"bytes": size, "seconds": round(seconds, 6)}
    counted: collections.Counter[tuple[str, str]] = collections.Counter()
    for error in result.errors:
        counted[str(error.cls), error.rule] += 1 + error.repeats
    if counted:
        detail["findings"] = [[cls, rule, n] for (cls, rule), n in sorted(counted.items())]
    return detail


def _once(state: dict[str, object], kind: str) -> list[tuple[str, dict[str, Any]]]:
    """The event ``kind`` a step left in the transaction's ``state``, taken once: it is
    recorded with the next statement about the message, never a statement of its own."""
    detail = state.pop(kind, None)
    return [(kind, detail)] if isinstance(detail, dict) else []


def _refusal_text(refusal: str) -> str:
    shown = " ".join(refusal.split())[:200]
    if _refusal_reply(refusal).enhanced == "5.3.4":
        return (f"the message as converted for the agency is larger than the copy size "
                f"Single Window may forward (Postfix: {shown})")
    return f"the copy was refused (Postfix: {shown})"


def _code_of(refusal: str) -> tuple[int, str]:
    """(code, enhanced code) of a refusal as recorded: ``552 5.3.4 text``."""
    parts = refusal.split()
    code = int(parts[0]) if parts and parts[0].isdigit() else 554
    enhanced = parts[1] if len(parts) > 1 and re.fullmatch(r"5\.\d+\.\d+", parts[1]) \
        else "5.0.0"
    return code, enhanced


def _about(raw: bytes, fields: list[translate.Field]) -> str | None:
    """The Single Window message generated mail is about, when it says so: control
    messages and agency-failure notices name it, a DSN returns the submission's headers
    with the milter's origin stamp (``fields``: the head of ``raw``, parsed once)."""
    named = translate.field_named(fields, "x-singlewindow-message")
    if named:
        return named
    match = re.search(rb"(?im)^" + originmod.HEADER.encode() + rb":[ \t]*([^\r\n]*)", raw)
    if match is None:
        return None
    try:
        return originmod.parse(match[1].decode("ascii", "replace")).message_id
    except originmod.OriginError:
        return None


def _arrival(fields: list[translate.Field]) -> float:
    """When Postfix received the message: the date of its own (first) Received field."""
    received = translate.field_named(fields, "received")
    if received and ";" in received:
        with contextlib.suppress(TypeError, ValueError, IndexError):
            return email.utils.parsedate_to_datetime(
                received.rsplit(";", 1)[1].strip()).timestamp()
    return time.time()


def _about_submission(raw: bytes) -> bool:
    """Does this Postfix DSN return a submission's headers (the milter's stamp in them)?

    Then it reports this hub's own answer to the submission (e.g. a routing loop), not
    an agency leg, even when the submission carries the Message-ID of a copy the hub sent
    before (a party that sends copies back): copies never carry the stamp.
    """
    return re.search(rb"(?im)^" + originmod.HEADER.encode() + rb":", raw) is not None


def _known_headers(where: Lookups, p: Prepared, state: dict[str, object]
                   ) -> dict[str, directory.Address]:
    """The header addresses of the message that Single Window knows, looked up in one query
    once per transaction (every recipient's header check and copy use the same)."""
    known = state.get("known")
    if not isinstance(known, dict):
        known = state["known"] = where.known_addresses(a for _, a in p.addresses)
    return known


def _header_sender_refusal(sender: directory.Party, addresses: list[tuple[str, str]],
                           known: dict[str, directory.Address]) -> Reply | None:
    """Issue 12: every address in From, Sender and Reply-To must be the submitting
    party's own, physical or logical, whether the party is a company or an agency; an
    address Single Window knows (R5.3 #8 passed) but of another party is refused."""
    for name, address in addresses:
        if name in translate.SENDERS and known[address.lower()].party.id != sender.id:
            return replies.HEADER_SENDER_NOT_YOURS.with_text(
                f"The address <{address}> in header {name.title()} is not one of your "
                "addresses: the From, Sender and Reply-To of a message must be the "
                "submitting party's own")
    return None


def _logical(where: Lookups, known: dict[str, directory.Address], address: str
             ) -> str | None:
    """The logical address for any known physical or logical address."""
    found = known.get(address.lower())
    if found is None:  # not among the header addresses looked up before: ask
        found = where.known_addresses([address]).get(address.lower())
    return found.logical if found is not None else None


def scrub(where: Lookups, raw: bytes, reader: directory.Party) -> bytes:
    """Replace every other party's physical address by its logical one (SPEC R4.4).

    Postfix's own DSNs about a forwarded copy name the destination's physical address
    (Final-Recipient, the diagnostic text); the reader must only ever see logical ones.
    Every address-like string is looked up, all of them in one query.
    """
    words = {m[0].decode("ascii", "replace").lower() for m in _EMAIL.finditer(raw)}
    physical = {a: found for a, found in where.known_addresses(words).items()
                if found.physical == a and found.party.id != reader.id}

    def replace(match: re.Match[bytes]) -> bytes:
        found = physical.get(match[0].decode("ascii", "replace").lower())
        return match[0] if found is None else found.logical.encode()
    return _EMAIL.sub(replace, raw)


def _fault(point: str, table: str) -> None:
    if not FAULT:
        return
    where, _, action = FAULT.partition(":")
    if where not in (point, f"{point}@{table}"):
        return
    if action.startswith("pause="):
        log.warning("fault injection %s: pausing %s s", point, action[6:])
        if FAULT_FLAG:
            Path(FAULT_FLAG).touch()
        time.sleep(float(action[6:]))
        return
    log.warning("fault injection %s: killing myself", point)
    os.kill(os.getpid(), signal.SIGKILL)
