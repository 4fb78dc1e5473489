"""An agency's (or Postfix's) delivery report on a copy the hub forwarded (SPEC §5).

The router (:mod:`.router`) hands over a report :func:`.parsed.agency_dsn` found, from a
submission path with the null sender (a party's MTA) or from Postfix's own DSN on a
copy's outbound leg (:mod:`.generated`). :func:`agency_report` matches it to the copy
only by what the hub put on that copy (issue 12), records it on the original message,
and tells the submitter of a failure or delay in the agency-failure notice
(:func:`notify_submitter`, which :mod:`.submission` also sends for copies Postfix
refused), delivered by :mod:`.copies`.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import psycopg

from singlewindow import origin as originmod
from singlewindow import replies
from singlewindow.notices import agency
from singlewindow.replies import Reply
from singlewindow.store import messages
from singlewindow.transport import copies, dsn
from singlewindow.transport.context import Context

log = logging.getLogger("sw-transport")

Conn = psycopg.Connection[Any]


def agency_report(ctx: Context, conn: Conn, report: dsn.Report, raw: bytes, *,
                  party: str | None, rcpt: str) -> Reply | None:
    """A DSN about a forwarded copy: recorded on the original message; a failure or
    delay is reported to the submitter naming logical addresses only. None: not a
    report about any copy of ours that this reporter may report on."""
    swid = report_subject(conn, report, party=party, rcpt=rcpt)
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
        report_failure(ctx, conn, swid, report, digest)
    return replies.DELIVERED.with_text(f"Agency-leg report recorded on {swid}")


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


def unmatched_report(o: originmod.Origin, report: dsn.Report, rcpt: str) -> Reply:
    """A party's MTA sent a DSN that is about no copy sent to that party: forged, or
    about something that never left here. Refused, never forwarded (issue 12)."""
    log.warning("%s: delivery report from %s to <%s> (ENVID %.100r, returned "
                "Message-ID %.200r) matches no copy sent to %s: refused",
                o.message_id, o.party, rcpt, report.envid,
                report.returned_message_id, o.party)
    return replies.REPORT_UNMATCHED


def report_failure(ctx: Context, conn: Conn, swid: str, report: dsn.Report,
                   digest: str) -> None:
    """The failed or delayed recipients of ``report``, told to the submitter of
    ``swid`` by their logical addresses (unless the submission was automatic)."""
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
        notify_submitter(ctx, conn, swid, submitter, failed, "dsn:" + digest)


def notify_submitter(ctx: Context, conn: Conn, swid: str, submitter: str,
                     failed: list[agency.Failed], about: str) -> None:
    """The agency-failure notice, once per ``about`` (a report, a set of refusals)."""
    hub = ctx.config.hub
    tag = hashlib.sha256(about.encode()).hexdigest()[:12]
    claim = messages.claim_forward(conn, messages.Forward(
        swid, "*agency-failure*", tag, submitter.lower(),
        f"<{swid}.agency-dsn.{tag}@{hub.domain}>"), ctx.lease)
    sent = copies.deliver_once(ctx, conn, claim, lambda: agency.build(
        message_id=swid, to=submitter, domain=hub.domain, hostname=hub.hostname,
        failed=failed, notice_id=claim.copy_message_id),
        copies.Route(sender="", physical=submitter, maildrop_login=None))
    if sent.fresh:
        messages.event(conn, swid, "agency-failure-reported",
                       {"to": submitter, "queue_id": sent.queue_id,
                        "recipients": [f.logical for f in failed]})
