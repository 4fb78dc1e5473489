"""Mail Single Window generated, on its way to the party it is for.

Two kinds reach here. Mail the hub wrote and Postfix brought back to the transport
(:func:`internal`): Postfix's own DSNs, control messages and agency-failure notices,
unstamped with the null sender (:func:`.parsed.generated_kind` tells which); the router
(:mod:`.router`) hands over each recipient. A DSN on a copy's outbound leg goes to
:mod:`.agency_report`; everything else goes, rewritten for its reader
(:mod:`.readers`), to the addressee's physical address or maildrop through
:mod:`.copies`. And the "delivered" DSN the transport writes itself for a submission's
recipients answered 250 (:func:`delivered_dsn`), which the router's finish hook asks for.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from typing import Any

import psycopg

from singlewindow import logs, replies
from singlewindow.notices import delivered
from singlewindow.replies import Reply
from singlewindow.store import messages
from singlewindow.transport import copies, readers, translate
from singlewindow.transport.agency_report import agency_report
from singlewindow.transport.context import Context
from singlewindow.transport.lmtp import RecipientDsn, Transaction, reply_line
from singlewindow.transport.parsed import Prepared, about, arrival

log = logging.getLogger("sw-transport")

Conn = psycopg.Connection[Any]


def internal(ctx: Context, conn: Conn, kind: str, rcpt: str, p: Prepared) -> Reply:
    """A DSN, control message or notice for a party (``kind``, see
    :func:`.parsed.generated_kind`): to its physical address or maildrop, exactly once
    (the same bookkeeping as the copies of submissions), with the null sender."""
    where = ctx.where
    target = where.find_logical(rcpt)
    if target is None:
        return replies.UNKNOWN_ADDRESS.with_text(
            f"The recipient <{rcpt}> is unknown to Single Window")
    # Postfix's own DSN about a copy's outbound leg (:func:`.parsed.agency_dsn`), or
    # about the submission leg of the recipient's own message: delivered like any other.
    if p.report is not None:
        handled = agency_report(ctx, conn, p.report, p.raw, party=None, rcpt=rcpt)
        if handled is not None:
            return handled
    raw = p.raw
    key = hashlib.sha256(raw + b"\0" + rcpt.lower().encode()).hexdigest()
    subject = about(raw, p.fields)
    claim = messages.claim_notice(conn, messages.Notice(
        key, subject, target.logical, target.physical, kind,
        f"<SWN{key[:24]}@{ctx.config.hub.domain}>"), ctx.lease)
    sent = copies.deliver_once(
        ctx, conn, claim, lambda: translate.generated(
            readers.scrub(ctx.where, raw, target.party),
            readers.reader(ctx, conn, subject, target.party), claim.copy_message_id,
            returned=[("X-SingleWindow-Message", subject)] if subject else []),
        copies.Route(sender="", physical=target.physical,
                     maildrop_login=target.maildrop_login))
    if sent.fresh:
        logs.decision(log, "notice", sw_id=subject, queue_id=p.queue_id,
                      level=logging.ERROR if sent.refusal else logging.INFO, kind=kind,
                      to=target.logical, state="refused" if sent.refusal else "sent",
                      copy_queue_id=sent.queue_id, copy=claim.copy_message_id,
                      reply=sent.refusal)
    if sent.refusal is not None:
        reply = copies.refusal_reply(sent.refusal)
        return reply.with_text(f"Not delivered to {target.logical}: "
                               f"{copies.refusal_text(sent.refusal)}")
    return replies.DELIVERED.with_text(f"Delivered to {target.logical}")


def delivered_dsn(ctx: Context, conn: Conn, p: Prepared, mail_from: str,
                  transaction: Transaction,
                  recipients: list[tuple[str, RecipientDsn, Reply]]) -> None:
    """The "delivered" DSN to the submitter's logical address, delivered as
    Postfix's was: to its physical address or maildrop, through the allow-list."""
    assert p.origin is not None
    swid = p.origin.message_id
    target = ctx.where.find_logical(mail_from)
    if target is None:
        log.warning("%s: submitter <%s> unknown, no delivered DSN", swid, mail_from)
        return
    listed = sorted(rcpt.lower() for rcpt, _, _ in recipients)
    key = hashlib.sha256(f"delivered\0{swid}\0{','.join(listed)}".encode()).hexdigest()
    copies.fault("before-claim", "notice_delivery")
    claim = messages.claim_notice(conn, messages.Notice(
        key, swid, target.logical, target.physical, "dsn",
        f"<SWN{key[:24]}@{ctx.config.hub.domain}>"), ctx.lease)

    def build() -> bytes:
        hub = ctx.config.hub
        raw = p.raw
        full = transaction.ret == "FULL" and len(raw) <= delivered.FULL_LIMIT
        report = delivered.build(
            to=mail_from, hostname=hub.hostname, domain=hub.domain,
            recipients=[delivered.Delivered(rcpt, params.orcpt, reply_line(reply))
                        for rcpt, params, reply in recipients],
            head=raw[:p.body_offset], body=raw[p.body_offset:] if full else None,
            envid=transaction.envid, arrival=arrival(p.fields), now=time.time(),
            boundary=f"{swid}.{secrets.token_hex(8)}/{hub.hostname}")
        return translate.generated(
            readers.scrub(ctx.where, report, target.party),
            # The submitter is its own DSN's reader (its address is the sender's).
            readers.reader(ctx, conn, swid, target.party, author=target.party.id),
            claim.copy_message_id, returned=[(delivered.MESSAGE_HEADER, swid)])
    sent = copies.deliver_once(ctx, conn, claim, build, copies.Route(
        sender="", physical=target.physical, maildrop_login=target.maildrop_login))
    if sent.fresh:
        logs.decision(log, "dsn", sw_id=swid, queue_id=p.queue_id,
                      level=logging.ERROR if sent.refusal else logging.INFO,
                      kind="delivered", to=target.logical,
                      state="refused" if sent.refusal else "sent",
                      copy_queue_id=sent.queue_id, copy=claim.copy_message_id,
                      reply=sent.refusal)
