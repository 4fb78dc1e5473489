"""A submission's way through the hub, one recipient at a time (SPEC §5, R5.3, R6).

The router (:mod:`.router`) hands over each recipient of a message the milter stamped,
parsed once (:class:`.parsed.Prepared`), with what the transaction's other recipients
learned already (:class:`.parsed.Progress`). In order:

1. a delivery report from a party's MTA goes to :mod:`.agency_report`;
2. :func:`record`: the submission recorded once, with its hop count (issue 12);
3. :func:`check`: a routing loop, then SPEC R5.3 in its order (content #1-7, addresses
   #8, link #9, activation #10);
4. :func:`validated`: the one body part against the MIG (SPEC R6), once per message;
5. valid: :func:`forward`, one copy per routed destination (SPEC F3, F6), each sent
   exactly once by :mod:`.copies`, the copies Postfix refused reported to the submitter
   (:func:`report_refusals`); MIG errors: :func:`control_message` to the submitter, or
   for automatic mail a refusal that names them.

The reply goes back through the router to Postfix, which writes the submitter's DSN.
"""

from __future__ import annotations

import collections
import email.utils
import functools
import hashlib
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from singlewindow import logs, mig, replies
from singlewindow import origin as originmod
from singlewindow.notices import agency, control
from singlewindow.replies import Reply
from singlewindow.store import directory, messages
from singlewindow.store.snapshot import Lookups
from singlewindow.transport import copies, readers, terminal, translate
from singlewindow.transport.agency_report import (
    agency_report,
    notify_submitter,
    unmatched_report,
)
from singlewindow.transport.context import Context
from singlewindow.transport.parsed import Prepared, Progress

log = logging.getLogger("sw-transport")

Conn = psycopg.Connection[Any]
Events = list[tuple[str, dict[str, Any]]]

#: The XML converted from EDIFACT is kept in memory up to this many bytes, on disk beyond
#: (a temporary file, unlinked at once) until its copies are sent (issue 13: the XML of a
#: 7 MB interchange is ~36 MB). Writing and reading back a few MB costs little beside
#: converting them (~0.3 s per MB of EDIFACT).
XML_IN_MEMORY = 1 << 20


@dataclass(frozen=True, slots=True)
class Answer:
    """A recipient's reply, and what is recorded with its outcome."""

    reply: Reply
    recorded: bool = False
    """The outcome went with the last copy's mark already."""
    message_type: str | None = None
    """A type no copy's claim records, recorded with the outcome."""
    events: Events = field(default_factory=list)
    """Events recorded with the outcome."""


def submission(ctx: Context, conn: Conn, progress: Progress, o: originmod.Origin,
               mail_from: str, rcpt: str) -> Reply:
    """One recipient of a stamped submission; ``progress`` carries what the
    transaction's recipients share (the record, the header check, the MIG result)."""
    p = progress.prepared
    assert p is not None
    unmatched: Reply | None = None
    if p.report is not None:
        # A DSN from a party's MTA (an agency's, usually) about a copy we forwarded
        # (SPEC §5); only the party the copy went to can report on it (issue 12).
        handled = agency_report(ctx, conn, p.report, p.raw, party=o.party, rcpt=rcpt)
        if handled is not None:
            return handled
        unmatched = unmatched_report(o, p.report, rcpt)
    why = p.automatic(mail_from)
    if progress.hops is None:
        progress.hops = record(ctx, conn, p, o, mail_from, why)
    hops = progress.hops
    target = ctx.where.find_logical(rcpt)
    refused = unmatched or check(ctx, progress, o, mail_from, rcpt, target, hops)
    if refused is None:
        assert target is not None
        answer = _passed(ctx, conn, progress, o, mail_from, target, why, hops)
    else:
        answer = Answer(refused.with_text(
            f"{refused.text} (Single Window message {o.message_id})"))
    reply = answer.reply
    if not answer.recorded:
        messages.record_outcome(conn, o.message_id, rcpt.lower(), f"{reply.code} "
                                f"{reply.enhanced}", reply.text, reply.key, answer.events,
                                message_type=answer.message_type)
    logs.decision(log, "recipient", sw_id=o.message_id, queue_id=p.queue_id,
                  recipient=rcpt, action=_action(reply), reply=reply.line())
    return reply


def _passed(ctx: Context, conn: Conn, progress: Progress, o: originmod.Origin,
            mail_from: str, target: directory.Address, why: str | None,
            hops: int) -> Answer:
    """A recipient that passed the checks: the MIG decides whether its copies go."""
    p = progress.prepared
    assert p is not None
    result = validated(ctx, progress)
    # Issue 14: how long the MIG took, recorded with the next statement.
    measured = progress.take_validation()
    if isinstance(result, Reply):
        return Answer(result.with_text(
            f"{result.text} (Single Window message {o.message_id})"), events=measured)
    if result.valid:
        reply, recorded = forward(ctx, conn, o, mail_from, target, p, result,
                                  progress.known_headers(ctx.where), hops, measured)
        return Answer(reply, recorded)
    if not mail_from or why:
        # Nothing goes to the null sender, and no control message answers automatic
        # mail (issue 12): the refusal names the errors instead, in the trace.
        reply = terminal.mig_refusal(result, o.message_id, why if mail_from else None)
        if mail_from and not progress.withheld:
            progress.withheld = True
            messages.event(conn, o.message_id, "control-message-withheld", {
                "reason": why, "errors": len(result.errors)})
        return Answer(reply, message_type=result.message_type, events=measured)
    # SPEC R6.1: delivered to Single Window (the DSN says so), not forwarded; the
    # submitter learns what is wrong from the control message.
    control_message(ctx, conn, o, mail_from, p, result, measured)
    return Answer(replies.DELIVERED.with_text(
        f"Delivered to Single Window as {o.message_id}; not forwarded: "
        f"{len(result.errors)} MIG error(s), see the control message"))


def check(ctx: Context, progress: Progress, o: originmod.Origin, mail_from: str,
          rcpt: str, target: directory.Address | None, hops: int) -> Reply | None:
    """A routing loop first (issue 12: ``hops`` as :func:`record` counted them), then
    SPEC R5.3 in its order: content (#1-7), addresses (#8), link (#9), activation (#10).
    None: the recipient passes."""
    p = progress.prepared
    assert p is not None
    where = ctx.where
    limit = ctx.config.transport.hop_limit
    if hops > limit:
        answers = (f" (counting the messages it answers within "
                   f"{ctx.config.transport.reply_window:g} s)" if hops > p.hops else "")
        return replies.ROUTING_LOOP.with_text(
            f"Routing loop detected: the message has passed {hops} hops{answers}, more "
            f"than the {limit} Single Window allows; not forwarded")
    if p.content is not None:
        return p.content
    if target is None:
        return replies.UNKNOWN_ADDRESS.with_text(
            f"The recipient <{rcpt}> is unknown to Single Window")
    known = progress.known_headers(where)
    for name, address in p.addresses:
        if address.lower() not in known:
            return replies.UNKNOWN_ADDRESS.with_text(
                f"The address <{address}> in header {name.title()} is unknown to "
                "Single Window")
    sender = where.get_party(o.party)
    not_yours = _header_sender_refusal(sender, p.addresses, known)
    if not_yours is not None:
        return not_yours
    if not where.link_allowed(sender, target.party):
        return replies.UNAUTHORISED_LINK.with_text(
            f"This link is not authorised: {sender.kind} {sender.name} may not send "
            f"to {target.party.kind} <{target.logical}>")
    if not target.active:
        return replies.ADDRESS_NOT_ACTIVATED.with_text(
            f"The logical address <{target.logical}> is not yet activated")
    own = where.find_logical(mail_from) if mail_from else None
    if own is not None and not own.active:
        return replies.ADDRESS_NOT_ACTIVATED.with_text(
            f"Your logical address <{own.logical}> is not yet activated")
    return None


def record(ctx: Context, conn: Conn, p: Prepared, o: originmod.Origin, mail_from: str,
           why: str | None) -> int:
    """Record the submission with its first events in one statement, and return its
    hop count (issue 12): its ``Received`` fields, plus those of the message it
    answers when that was a copy sent within ``reply_window`` (an auto-responder's new
    message continues the loop it is part of). Recorded once, so a retry counts the
    same."""
    answered = [mid for name, f in p.fields if name in translate.MESSAGE_IDS
                for mid in translate.message_ids_in(translate.field_value(f))]
    inherited = messages.answered_hops(conn, answered[:50],
                                       ctx.config.transport.reply_window)
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
        queue_id=o.queue_id or None, payload_sha256=p.sha256, subject=p.subject,
        in_reply_to=p.in_reply_to), events)
    if new:
        return hops
    recorded = messages.recorded_hops(conn, o.message_id)
    return hops if recorded is None else recorded


def validated(ctx: Context, progress: Progress) -> mig.Result | Reply:
    """SPEC R6: the one body part against the MIG (EDIFACT is converted to XML), once
    per transaction however many recipients pass the checks.

    A message whose XML would make a copy larger than ``copy_size_limit`` is refused
    (issue 10): the conversion stops there, and the answer says why.
    """
    if progress.mig is not None:
        return progress.mig
    p = progress.prepared
    assert p is not None and p.part is not None  # only called once the checks passed
    result: mig.Result | Reply
    transport = ctx.config.transport
    started = time.perf_counter()
    try:
        result = mig.validate(p.part.payload, p.part.content_type,
                              limit=transport.xml_size_limit, spool=XML_IN_MEMORY)
        progress.validation = validation_event(
            len(p.part.payload), time.perf_counter() - started, result)
    except mig.TooLarge as exc:
        result = replies.COPY_TOO_LARGE.with_text(
            f"Not forwarded: as XML the message is larger than {exc.limit:,} bytes, "
            f"which makes a copy larger than the {transport.copy_size_limit:,} bytes "
            "Single Window may send to an agency")
    progress.mig = result
    return result


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


def control_message(ctx: Context, conn: Conn, o: originmod.Origin, mail_from: str,
                    p: Prepared, result: mig.Result, events: Events | None = None) -> None:
    """Once per message, however many recipients or retries (same bookkeeping as D4);
    ``events`` are recorded with the claim."""
    hub = ctx.config.hub
    # The type goes with the claim (issue 14: a message the MIG refused has one too).
    claim = messages.claim_forward(conn, messages.Forward(
        o.message_id, "*control*", mail_from.lower(), mail_from.lower(),
        f"<{o.message_id}.control@{hub.domain}>"), ctx.lease,
        typed=result.message_type is not None, message_type=result.message_type,
        events=events or ())
    # The null envelope sender (issue 12): a control message that cannot be delivered
    # causes no DSN; Postfix logs it, and ``swctl trace`` shows that line.
    sent = copies.deliver_once(ctx, conn, claim, lambda: control.build(
        result, message_id=o.message_id, sender=hub.system_sender,
        to=mail_from, domain=hub.domain, in_reply_to=p.header_message_id),
        copies.Route(sender="", physical=mail_from, maildrop_login=None))
    if sent.fresh:
        messages.event(conn, o.message_id, "control-message", {
            "errors": [e.as_dict() for e in result.errors][:100],
            "message_type": result.message_type, "queue_id": sent.queue_id})


def forward(ctx: Context, conn: Conn, o: originmod.Origin, mail_from: str,
            target: directory.Address, p: Prepared, result: mig.Result,
            known: dict[str, directory.Address], hops: int,
            events: Events | None = None) -> tuple[Reply, bool]:
    """One copy per destination, each sent exactly once (SPEC D4): the reply for the
    recipient, 250 unless its copies were refused for good, and whether that 250 is
    recorded already (with the last copy's mark, in one statement). Each copy carries
    ``hops`` on (issue 12); ``events`` are recorded with the first claim."""
    rcpt = target.logical
    message_type = result.message_type
    destinations = routes(ctx.where, mig.registry(), rcpt, message_type) or [target]
    # No DSN about the copies of automatic mail either (its submitter asked for none).
    quiet = p.automatic(mail_from)
    build = functools.partial(_copy, ctx, conn, p, result, known, hops,
                              ctx.where.get_party(o.party).id)
    delivered = replies.DELIVERED.with_text(f"Delivered to Single Window as {o.message_id}")
    refused: list[tuple[directory.Address, str]] = []
    recorded = False
    for n, dest in enumerate(destinations):
        copies.fault("before-claim", "forward")
        tag = hashlib.sha256(f"{rcpt.lower()}>{dest.logical}".encode()).hexdigest()[:10]
        # The message's type goes with the first claim, in the same statement.
        claim = messages.claim_forward(conn, messages.Forward(
            o.message_id, rcpt.lower(), dest.logical, dest.physical,
            f"<{o.message_id}.{tag}@{ctx.config.hub.domain}>"), ctx.lease,
            typed=n == 0, message_type=message_type,
            events=(events or ()) if n == 0 else ())
        last = n == len(destinations) - 1 and not refused
        sent = copies.deliver_once(
            ctx, conn, claim, functools.partial(build, claim.copy_message_id, dest.party),
            copies.Route(sender=mail_from, physical=dest.physical,
                         maildrop_login=dest.maildrop_login, envid=claim.envid,
                         notify="NEVER" if quiet else "SUCCESS,FAILURE",
                         orcpt=dest.logical),
            on_sent=functools.partial(_forwarded, o.message_id, rcpt, dest, claim),
            outcome=(o.message_id, rcpt.lower(), f"{delivered.code} {delivered.enhanced}",
                     delivered.text) if last else None)
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
    return _refused(ctx, conn, o.message_id, mail_from, rcpt, delivered, refused,
                    len(destinations), quiet), False


def _copy(ctx: Context, conn: Conn, p: Prepared, result: mig.Result,
          known: dict[str, directory.Address], hops: int, author: int,
          copy_message_id: str, dest_party: directory.Party) -> translate.Copy:
    """The copy for ``dest_party``: SPEC F6, agencies receive XML (converted from
    EDIFACT where needed), encoded from its file or memory as it is sent (issue 13:
    never whole in memory)."""
    fields = translate.body_fields(p.fields, "application/xml; charset=utf-8")
    # The hop count goes on (issue 12), as host-free Received fields.
    trace = translate.trace_fields(hops, ctx.config.hub.domain,
                                   email.utils.formatdate(localtime=False))
    head = translate.translate(
        fields, b"", lambda a: _logical(ctx.where, known, a), copy_message_id,
        extra=trace, message_ids=readers.message_ids(ctx, conn, author, dest_party.id))
    return translate.Copy(head, result.xml_file or io.BytesIO(result.xml or b""))


def _forwarded(swid: str, rcpt: str, dest: directory.Address, claim: messages.Claim,
               queue_id: str, recovered: bool) -> copies.Event:
    """The ``forwarded`` event recorded with a copy's mark."""
    return (swid, "forwarded", {
        "recipient": rcpt.lower(), "destination": dest.logical,
        "queue_id": queue_id, "copy_message_id": claim.copy_message_id,
        "recovered": recovered})


def _refused(ctx: Context, conn: Conn, swid: str, mail_from: str, rcpt: str,
             delivered: Reply, refused: list[tuple[directory.Address, str]],
             destinations: int, quiet: str | None) -> Reply:
    """The reply when Postfix refused some or all of a recipient's copies for good."""
    reason = copies.refusal_text(refused[0][1])
    if len(refused) == destinations:
        messages.event(conn, swid, "copy-refused", {
            "recipient": rcpt.lower(), "destinations": [d.logical for d, _ in refused],
            "reason": reason})
        return copies.refusal_reply(refused[0][1]).with_text(
            f"Not forwarded: {reason} (Single Window message {swid})")
    # Some destinations have their copy: the message was delivered to Single Window
    # and the submitter hears separately which agency did not get it (unless the
    # submission was automatic: then the trace alone tells).
    if quiet:
        messages.event(conn, swid, "notice-withheld", {"reason": quiet})
    else:
        report_refusals(ctx, conn, swid, mail_from, refused)
    names = ", ".join(f"<{d.logical}>" for d, _ in refused)
    return delivered.with_text(f"{delivered.text}; not forwarded to {names}: {reason}")


def report_refusals(ctx: Context, conn: Conn, swid: str, submitter: str,
                    refused: list[tuple[directory.Address, str]]) -> None:
    """Tell the submitter which destinations did not get their copy."""
    failed = [agency.Failed(d.logical, "failed",
                            copies.refusal_reply(r).enhanced, copies.refusal_text(r))
              for d, r in refused]
    notify_submitter(ctx, conn, swid, submitter, failed, "refused:" + ",".join(
        sorted(d.logical for d, _ in refused)))


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


def _action(reply: Reply) -> str:
    """A recipient's answer as the log names it."""
    return "accept" if reply.code < 400 else "defer" if reply.transient else "reject"
