"""A message's whole way as the console shows it (issue 18): plain functions over
:func:`singlewindow.trace.find`'s dict, no I/O.

Operators get every fact ``swctl trace`` prints, as ordered steps. A company gets its
own projection: its recipients' outcomes, the control message's MIG findings, the notices
back to it, each copy's fate and agency-leg report by logical destination, the agency's
responses; every text passes :meth:`Privacy.scrub`, which keeps only the hub's logical
addresses and the company's own physical ones, and no peer address, relay or queue id of
a leg other than its own submission is ever put in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from singlewindow import addresses, trace
from singlewindow.notices import agency

#: What a withheld address or host reads as.
WITHHELD = "withheld"
_IPV4 = re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b")
_IPV6 = re.compile(r"\b[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}\b")
_HOST_AT = re.compile(r"\S+\[[0-9A-Fa-f.:]+\](:\d+)?")


@dataclass(frozen=True, slots=True)
class Step:
    """One thing that happened to the message."""

    at: datetime | None
    kind: str
    title: str
    details: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"at": iso(self.at), "kind": self.kind, "title": self.title,
                "details": list(self.details)}


@dataclass(frozen=True, slots=True)
class View:
    """What the message page and ``GET /api/messages/{id}`` show."""

    summary: dict[str, Any]
    recipients: list[dict[str, Any]]
    steps: list[Step]
    findings: list[dict[str, Any]]
    responses: list[dict[str, Any]]
    #: Operators: trace.find's dict as it is (what ``swctl trace --json`` prints).
    trace: dict[str, Any] | None = None
    #: Operators: the last views of the message, newest first (the audit log,
    #: :func:`singlewindow.console.audit.message`); None for a company, which never sees
    #: them.
    views: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class Privacy:
    """Which addresses a company may read: ``keep`` (logical addresses, its own physical
    ones) as they are, ``as_logical`` (another party's physical address) as that party's
    logical address; any other address, and every IP address, is withheld."""

    keep: frozenset[str]
    as_logical: dict[str, str]

    def address(self, text: str | None) -> str:
        word = (text or "").lower()
        if word in self.keep:
            return word
        return self.as_logical.get(word, WITHHELD)

    def scrub(self, text: str | None) -> str:
        text = _HOST_AT.sub(WITHHELD, str(text or ""))
        text = addresses.IN_TEXT.sub(lambda m: self.address(m[0]), text)
        text = _IPV4.sub(WITHHELD, text)
        return _IPV6.sub(lambda m: WITHHELD if _looks_ipv6(m[0]) else m[0], text)


def _looks_ipv6(text: str) -> bool:
    """An IPv6 address, not a time of day (``19:05:00``): ``::``, a hex letter or more
    than four colons."""
    return "::" in text or text.count(":") > 4 or (
        text.count(":") >= 2 and any(c.isalpha() for c in text))


def iso(at: datetime | None) -> str | None:
    """UTC, ISO 8601 (what ``<time datetime>`` and the API carry)."""
    return at.astimezone(UTC).isoformat() if at is not None else None


def words(found: Any) -> set[str]:
    """Every mail address anywhere in ``found`` (lower-cased): what to look up to build
    a :class:`Privacy`."""
    text = json.dumps(found, default=str)
    return {m[0].lower() for m in addresses.IN_TEXT.finditer(text)}


def ordered(steps: Iterable[Step]) -> list[Step]:
    """By time, steps without one (a copy not sent yet) last, otherwise as given."""
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(steps, key=lambda s: s.at if s.at is not None else far)


def findings(found: dict[str, Any], scrub: Callable[[Any], str] = str
             ) -> list[dict[str, Any]]:
    """The MIG's findings as the control message carried them (its event's ``errors``):
    code, position, rule, text."""
    rows = []
    for e in found.get("events", []):
        if e["kind"] != "control-message":
            continue
        for err in e["detail"].get("errors", []):
            rows.append({"code": str(err.get("code", "")), "place": str(err.get("place", "")),
                         "rule": str(err.get("rule", "")), "text": scrub(err.get("text", "")),
                         "repeats": err.get("repeats")})
    return rows


# --- operators: every fact of swctl trace ------------------------------------------------

def _event_title(kind: str, d: dict[str, Any]) -> tuple[str, list[str]]:
    """An event's title and details in an operator's words."""
    if kind == "received":
        return f"Received on the {d.get('listener')} listener", [
            f"envelope from <{d.get('from')}>", f"queue id {d.get('queue_id') or '-'}"]
    if kind == "outcome":
        return f"Recipient {d.get('recipient')}: {d.get('status')}", [str(d.get("reason"))]
    if kind == "hops":
        return f"Hop count {d.get('hops')}", [
            f"{d.get('received')} Received fields, {d.get('answered')} from the answered copy"]
    if kind == "control-message":
        return f"Control message sent: {len(d.get('errors', []))} MIG finding(s)", [
            f"type {d.get('message_type') or '-'}", f"queue id {d.get('queue_id') or '-'}"]
    if kind == "agency-dsn":
        return "Agency-leg DSN", [
            f"{r.get('recipient')}: {r.get('action')} {r.get('status')}"
            + (f" ({r['diagnostic']})" if r.get("diagnostic") else "")
            for r in d.get("recipients", [])]
    if kind == "maildrop-deferred":
        return "Maildrop delivery deferred: a POP3 session held the maildrop", [
            f"copy {d.get('copy_message_id')}"]
    return kind.replace("-", " ").capitalize(), [
        f"{k}: {v}" for k, v in sorted(d.items())]


#: What the message page's summary shows an operator.
SUMMARY = ("id", "received_at", "listener", "party", "envelope_from", "sasl_login",
           "peer_address", "queue_id", "header_message_id", "message_type", "subject",
           "payload_sha256", "in_reply_to")


def notice_view(found: dict[str, Any]) -> View:
    """Mail the hub generated about no known message (``trace.find``'s ``{"id": None,
    "notice": ...}``), for operators: the notice, its Postfix lines, its events."""
    n = found["notice"]
    label = trace.NOTICE_KINDS.get(n["kind"], n["kind"])
    summary: dict[str, Any] = dict.fromkeys(SUMMARY)
    summary.update({"id": n["copy_message_id"], "received_at": n["created_at"],
                    "listener": "the hub itself", "queue_id": n["queue_id"],
                    "header_message_id": n["copy_message_id"], "outcome": None,
                    "subject": f"{label} about no known message"})
    steps = [Step(n["injected_at"] or n["created_at"], "notice",
                  f"{label} to {n['recipient']}",
                  [trace.sent(n, clock=False), *trace.status_lines(n.get("postfix"))])]
    steps += [Step(e["at"], e["kind"], *_event_title(e["kind"], e["detail"]))
              for e in n.get("events", [])]
    return View(summary, [], ordered(steps), [], [], found)


def operator_view(found: dict[str, Any], outcome: str | None,
                  responses: list[dict[str, Any]]) -> View:
    """Everything ``swctl trace`` shows, as steps by time."""
    steps = [Step(e["at"], e["kind"], *_event_title(e["kind"], e["detail"]))
             for e in found["events"]]
    inbound = found.get("postfix")
    if inbound and (inbound["status"] or inbound["notifications"]):
        details = trace.status_lines(inbound["status"])
        for n in inbound["notifications"]:
            details += [f"{n['what']}: {n['queue_id']}", *trace.status_lines(n["status"])]
        steps.append(Step(found["received_at"], "postfix",
                          f"In Postfix as {inbound['queue_id']}", details))
    for f in found["forwards"]:
        first = trace.FIRST_LEG.get(f["recipient"])
        title = f"{first} to {f['physical']}" if first else \
            f"Copy to {f['destination']} ({f['physical']})"
        steps.append(Step(f["injected_at"], "control" if first == "control message"
                          else "notice" if first else "copy", title[0].upper() + title[1:],
                          [trace.sent(f, clock=False), f"Message-ID {f['copy_message_id']}",
                           *trace.status_lines(f.get("postfix"))]))
    for n in found["notices"]:
        steps.append(Step(n["injected_at"], "notice",
                          trace.notice_label(n, found["envelope_from"]),
                          [trace.sent(n, clock=False), f"Message-ID {n['copy_message_id']}",
                           *trace.status_lines(n.get("postfix"))]))
    for r in found["stamp_refusals"]:
        steps.append(Step(r["at"], "stamp-refused",
                          f"A forged stamp claiming this id was refused: {r['message_id']}",
                          [str(r["detail"].get("reason"))]))
    summary = {k: found.get(k) for k in SUMMARY}
    summary["outcome"] = outcome
    return View(summary, [_recipient(r) for r in found["recipients"]], ordered(steps),
                findings(found), responses, found)


def _recipient(r: dict[str, Any], scrub: Callable[[Any], str] = str) -> dict[str, Any]:
    return {"recipient": r["recipient"], "status": r["status"],
            "reason": scrub(r["reason"]), "decided_at": r.get("decided_at")}


# --- a company: its own submission, logical addresses only --------------------------------

def _company_event(e: dict[str, Any], privacy: Privacy, physical: dict[str, str]
                   ) -> Step | None:
    kind, d = e["kind"], e["detail"]
    title: str
    details: list[str] = []
    if kind == "received":
        title = f"Received from you on the {d.get('listener')} listener"
    elif kind == "outcome":
        title = f"Recipient {d.get('recipient')}: {d.get('status')}"
        details = [str(d.get("reason"))]
    elif kind == "automatic":
        title = "Automatic submission: nothing is sent back"
    elif kind == "control-message":
        title = f"Control message sent to you: {len(d.get('errors', []))} MIG finding(s)"
        details = [f"type {d.get('message_type') or '-'}"]
    elif kind == "control-message-withheld":
        title = "No control message sent"
        details = [str(d.get("reason")), f"{d.get('errors')} MIG error(s)"]
    elif kind == "copy-refused":
        title = f"Not forwarded to {d.get('recipient')}"
        details = [str(d.get("reason")), *map(str, d.get("destinations", []))]
    elif kind == "notice-withheld":
        title, details = "No notice sent", [str(d.get("reason"))]
    elif kind == "agency-dsn":
        title = "Report from the agency's side"
        details = [f"{_reported(str(r.get('recipient', '')), physical, privacy)}: "
                   f"{r.get('action')} {r.get('status')}"
                   + (f" ({agency.clean_diagnostic(r['diagnostic'])})"
                      if r.get("diagnostic") else "")
                   for r in d.get("recipients", [])]
    elif kind == "agency-failure-reported":
        title = "Agency-failure notice sent to you"
        details = [f"about {r}" for r in d.get("recipients", [])]
    else:
        return None  # the hub's own bookkeeping (hops, stamps, maildrop locks)
    return Step(e["at"], kind, privacy.scrub(title), [privacy.scrub(x) for x in details])


def _reported(recipient: str, physical: dict[str, str], privacy: Privacy) -> str:
    """An agency-leg report's recipient as the company may read it: the copy's logical
    destination, whether the report named the physical address (the agency's own DSN)
    or the logical one (the ORCPT of the hub's Postfix's "relayed" report)."""
    word = recipient.lower()
    return physical.get(word) or privacy.address(word)


def _company_copy(f: dict[str, Any], privacy: Privacy) -> Step:
    first = trace.FIRST_LEG.get(f["recipient"])
    state = {"injected": "sent", "pending": "not sent yet"}.get(f["state"], f["state"])
    if f["state"] == "refused":
        state = f"refused: {agency.clean_diagnostic(str(f['refusal'] or ''))}"
    if f["attempts"] > 1:
        state += f", {f['attempts']} attempts"
    title = f"{first[0].upper()}{first[1:]} to you" if first else \
        f"Copy for {f['destination']}"
    return Step(f["injected_at"], "control" if first == "control message"
                else "notice" if first else "copy", privacy.scrub(title),
                [privacy.scrub(state)])


def found_logical(found: dict[str, Any]) -> set[str]:
    """The logical addresses a message was sent to (its recipients, its copies')."""
    return {str(r["recipient"]).lower() for r in found["recipients"]} | {
        str(f["destination"]).lower() for f in found["forwards"]
        if not str(f["recipient"]).startswith("*")}


def company_view(found: dict[str, Any], outcome: str | None,
                 responses: list[dict[str, Any]], privacy: Privacy) -> View:
    """What the submitting company may see of its own message."""
    physical = {str(f["physical"]).lower(): str(f["destination"]) for f in found["forwards"]
                if not str(f["recipient"]).startswith("*")}
    steps = [s for e in found["events"]
             if (s := _company_event(e, privacy, physical)) is not None]
    steps += [_company_copy(f, privacy) for f in found["forwards"]]
    for n in found["notices"]:
        label = trace.NOTICE_KINDS.get(n["kind"], n["kind"])
        state = "sent" if n["state"] == "injected" else n["state"]
        to = privacy.address(n["recipient"])
        steps.append(Step(n["injected_at"], "notice", f"{label} sent back to you ({to})"
                          if to not in (WITHHELD, *found_logical(found)) else
                          f"{label} to {to}", [state]))
    summary = {"id": found["id"], "received_at": found["received_at"],
               "listener": found["listener"], "subject": found.get("subject"),
               "message_type": found.get("message_type"),
               "header_message_id": found.get("header_message_id"),
               "queue_id": found.get("queue_id"), "outcome": outcome,
               "envelope_from": privacy.address(found.get("envelope_from"))}
    shown = [{"id": r["id"], "received_at": r["received_at"],
              "subject": r.get("subject"), "message_type": r.get("message_type"),
              "outcome": r.get("outcome"), "from": privacy.address(r.get("envelope_from"))}
             for r in responses]
    return View(summary, [_recipient(r, privacy.scrub) for r in found["recipients"]],
                ordered(steps), findings(found, privacy.scrub), shown)
