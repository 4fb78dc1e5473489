"""A message as the transport read it, once per LMTP transaction (STYLE 9).

The router (:mod:`.router`) calls :func:`prepare` on the first recipient of a transaction:
the header split once, the milter's origin stamp verified, a submission's one body part
checked and decoded (SPEC R5.3 #1-7), and an agency's or Postfix's delivery report on a
copy parsed (:func:`agency_dsn`). The result, :class:`Prepared`, and what the steps of
each recipient learn about the message, :class:`Progress`, travel to the path the
message takes next: :mod:`.submission`, :mod:`.agency_report` or :mod:`.generated`.
Nothing here does I/O.
"""

from __future__ import annotations

import contextlib
import email.policy
import email.utils
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any

from singlewindow import automatic, mig
from singlewindow import origin as originmod
from singlewindow.replies import Reply
from singlewindow.store import directory
from singlewindow.store.snapshot import Lookups
from singlewindow.transport import checks, dsn, retry, translate

_CLAIM = re.compile(r"(?:^|;)\s*(id|party|queue)=([^;\s]{1,64})")
_STAMP_LINE = re.compile(rb"(?im)^" + originmod.HEADER.encode() + rb":[ \t]*([^\r\n]*)")
#: The notice header's first word (:data:`automatic.NOTICE_HEADER`) → the kind recorded.
_NOTICE_KINDS = {"agency-dsn": "agency-failure", "control": "control"}


@dataclass(frozen=True, slots=True)
class Prepared:
    """The message parsed once per transaction: every recipient and every step (checks,
    MIG, copies) asks this, never the raw bytes again."""

    raw: bytes
    """The message as Postfix sent it: the one source every step reads."""
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
    forged: str | None = None
    """Why the origin stamp does not verify (issue 12); None when it does or is absent."""
    report: dsn.Report | None = None
    """A delivery report on a copy the hub sent (:func:`agency_dsn`), else None."""
    subject: str | None = None
    """The Subject, decoded (:func:`decoded_subject`), as the console lists it (issue 18)."""
    in_reply_to: str | None = None
    """The first ``<id>`` of In-Reply-To: ties an agency's response to the copy it
    answers (issue 18)."""

    def automatic(self, mail_from: str) -> str | None:
        """Why nothing may answer this message (:mod:`singlewindow.automatic`), or None."""
        return automatic.reason(
            null_sender=not mail_from,
            auto_submitted=translate.field_named(self.fields, "auto-submitted"),
            content_type=translate.field_named(self.fields, "content-type"),
            notice=translate.field_named(self.fields, automatic.NOTICE_HEADER))

    @property
    def message_id(self) -> str | None:
        """The Single Window id in the stamp, once it verified."""
        return self.origin.message_id if self.origin else None


@dataclass(slots=True)
class Progress:
    """What the recipients of one transaction share, learned by the first that needed
    it: the parsed message, the submission's record, the header look-up, the MIG's
    result. The router keeps one per transaction (:class:`.router.Router`)."""

    prepared: Prepared | None = None
    refused: str | None = None
    """The id a message with a forged stamp was recorded under (recorded once)."""
    hops: int | None = None
    """The submission's hop count, once it is recorded (:func:`.submission.record`)."""
    known: dict[str, directory.Address] | None = None
    """The header addresses Single Window knows, looked up in one query."""
    mig: mig.Result | Reply | None = None
    """The MIG's result, or the refusal of a payload too large to convert."""
    validation: dict[str, Any] | None = None
    """The ``mig-validated`` event, until the next statement about the message takes
    it (:meth:`take_validation`)."""
    withheld: bool = False
    """The ``control-message-withheld`` event is recorded."""

    def known_headers(self, where: Lookups) -> dict[str, directory.Address]:
        """The header addresses of the message that Single Window knows, looked up once
        per transaction (every recipient's header check and copy use the same)."""
        if self.known is None:
            assert self.prepared is not None
            self.known = where.known_addresses(a for _, a in self.prepared.addresses)
        return self.known

    def take_validation(self) -> list[tuple[str, dict[str, Any]]]:
        """The ``mig-validated`` event, taken once: it is recorded with the next
        statement about the message, never a statement of its own."""
        detail, self.validation = self.validation, None
        return [("mig-validated", detail)] if detail is not None else []


def prepare(raw: bytes, mail_from: str, allowed: tuple[str, ...], key: bytes) -> Prepared:
    """Parse ``raw`` once: its head, its stamp (MAC checked with ``key``), a
    submission's one body part of an ``allowed`` type, a delivery report on a copy."""
    fields, body_offset = translate.head(raw)
    forged: str | None = None
    try:
        origin = origin_of(fields, key)
    except originmod.OriginError as error:
        origin, forged = None, str(error)
    part: checks.BodyPart | None = None
    content: Reply | None = None
    if origin:
        try:
            part = checks.body_part(raw, allowed)
        except checks.ContentError as error:
            content = error.reply
    return Prepared(
        raw=raw, origin=origin, fields=fields, body_offset=body_offset, part=part,
        content=content,
        addresses=translate.addresses_in(fields) if origin else [],
        header_message_id=translate.field_named(fields, "message-id"),
        sha256=hashlib.sha256(raw).hexdigest(),
        queue_id=retry.queue_id(translate.field_named(fields, "received")),
        hops=translate.hops(fields),
        forged=forged,
        report=None if forged else agency_dsn(raw, fields, mail_from, origin),
        subject=decoded_subject(translate.field_named(fields, "subject")),
        in_reply_to=first_id(translate.field_named(fields, "in-reply-to")),
    )


#: A Subject longer than a line may be (RFC 5322 2.1.1) is cut there: the console lists
#: it, and no reader needs more.
SUBJECT_LENGTH = 998


def decoded_subject(value: str | None) -> str | None:
    """A Subject's text as its writer meant it: RFC 2047 encoded words decoded (leniently,
    as a mail client shows a malformed one), NUL replaced (no text column holds it), cut
    at :data:`SUBJECT_LENGTH` characters; None when there is no Subject."""
    if value is None:
        return None
    text = str(email.policy.default.header_factory("subject", value))
    return text.replace("\0", "\ufffd")[:SUBJECT_LENGTH]


def first_id(value: str | None) -> str | None:
    """The first ``<id>`` of an In-Reply-To value, or None."""
    ids = translate.message_ids_in(value) if value else []
    return ids[0] if ids else None


def _stamps(fields: list[translate.Field]) -> list[str]:
    return [translate.field_value(f) for name, f in fields
            if name == originmod.HEADER.lower()]


def origin_of(fields: list[translate.Field], key: bytes) -> originmod.Origin | None:
    """The milter's stamp, its MAC verified; None if there is none. The milter writes
    exactly one, so a doubled, malformed or unsigned stamp, or one whose MAC is wrong,
    raises :class:`originmod.OriginError` (issue 12)."""
    stamps = _stamps(fields)
    if len(stamps) > 1:
        raise originmod.OriginError(f"{len(stamps)} {originmod.HEADER} headers")
    return originmod.verify(stamps[0], key) if stamps else None


def stamp_id(raw: bytes, key: bytes) -> str | None:
    """The Single Window id in the stamp, for a failure before the router had read it."""
    with contextlib.suppress(originmod.OriginError):
        origin = origin_of(translate.head(raw)[0], key)
        return origin.message_id if origin else None
    return None


def claimed(fields: list[translate.Field]) -> dict[str, str]:
    """What a refused stamp claimed (id, party, queue of the first stamp), for the log."""
    stamps = _stamps(fields)
    found = {m[1]: m[2] for m in _CLAIM.finditer(stamps[0])} if stamps else {}
    return {f"claimed_{k}": v for k, v in found.items()}


def arrival(fields: list[translate.Field]) -> float:
    """When Postfix received the message: the date of its own (first) Received field."""
    received = translate.field_named(fields, "received")
    if received and ";" in received:
        with contextlib.suppress(TypeError, ValueError, IndexError):
            return email.utils.parsedate_to_datetime(
                received.rsplit(";", 1)[1].strip()).timestamp()
    return time.time()


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


def about(raw: bytes, fields: list[translate.Field]) -> str | None:
    """The Single Window message generated mail is about, when it says so: control
    messages and agency-failure notices name it, a DSN returns the submission's headers
    with the milter's origin stamp (``fields``: the head of ``raw``, parsed once)."""
    named = translate.field_named(fields, "x-singlewindow-message")
    if named:
        return named
    match = _STAMP_LINE.search(raw)
    if match is None:
        return None
    try:
        return originmod.parse(match[1].decode("ascii", "replace")).message_id
    except originmod.OriginError:
        return None


def about_submission(raw: bytes) -> bool:
    """Does this Postfix DSN return a submission's headers (the milter's stamp in them)?

    Then it reports this hub's own answer to the submission (e.g. a routing loop), not
    an agency leg, even when the submission carries the Message-ID of a copy the hub sent
    before (a party that sends copies back): copies never carry the stamp.
    """
    return _STAMP_LINE.search(raw) is not None


def agency_dsn(raw: bytes, fields: list[translate.Field], mail_from: str,
               origin: originmod.Origin | None) -> dsn.Report | None:
    """The delivery report on a copy's agency leg that ``raw`` may be (SPEC §5): mail
    with the null sender, either stamped (a DSN from a party's MTA, an agency's usually)
    or Postfix's own DSN about a copy's outbound leg (unstamped, no notice header). One
    that returns a submission's stamped headers is the hub's answer to a submission,
    never a leg. The report is parsed here once; whether it is about a copy of ours,
    and one its reporter may report on, :mod:`.agency_report` decides."""
    if mail_from:
        return None
    if origin is None and (generated_kind(mail_from, fields) != "dsn"
                           or about_submission(raw)):
        return None
    return dsn.parse(raw)
