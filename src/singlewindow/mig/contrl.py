"""The UN/EDIFACT CONTRL message answering an interchange with syntax errors.

Where it sits in the mail flow: when :func:`singlewindow.mig.validate` finds errors, the
transport sends the submitter a control message instead of forwarding
(:mod:`singlewindow.notices.control`); for an EDIFACT submission with syntax errors that
notice carries a CONTRL (the syntax and service report message of ISO 9735-4, syntax
version 4, or of syntax version 3 when the interchange used it), built here because it is
EDIFACT, which the MIG knows, not prose.

What is built is bounded whatever the input: the first :data:`MAX_LISTED` errors, and
values echoed into the CONTRL cut to the lengths their data elements allow.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from singlewindow.mig.edifact.syntax import Delimiters, format_segment
from singlewindow.mig.errors import SE_UNSPECIFIED, SYNTAX_CLASSES, ErrorClass, MigError
from singlewindow.mig.validate import Interchange, Result

# Data element 0083 (action, coded), ISO 9735-4 / UN service code list: 4 = this level
# and all lower levels rejected (one or more errors reported at this or a lower level).
# Single Window forwards nothing of an interchange in error, so it never acknowledges a
# level (7) in a CONTRL.
ACTION_REJECTED = "4"
SW_EDI_ID = "SINGLEWINDOW"  # UNB sender of CONTRL messages when the submitter named none

#: Errors reported in one CONTRL, the same ones the control message lists.
MAX_LISTED = 200

# Service segment tags (0013) each level of a CONTRL may name (ISO 9735-4): UCI the
# interchange's, UCF the functional group's, UCM the message's; body segments are UCS.
_UCI_TAGS = frozenset({"UNA", "UNB", "UNZ"})
_UCF_TAGS = frozenset({"UNG", "UNE"})
_UCM_TAGS = frozenset({"UNH", "UNT"})
# Segment groups of CONTRL: at most 999 UCS per message, 99 UCD per UCS (ISO 9735-4).
_MAX_UCS = 999
_MAX_UCD = 99


def in_contrl(error: MigError) -> bool:
    """Whether a CONTRL reports ``error``: an error of the interchange's syntax (it has an
    ISO 9735 syntax error code, 0085) at an EDIFACT position. Business rules and the XSD
    of the XML form are application errors, for the text and FRM parts only."""
    return (error.syntax_code is not None and error.place.xpath is None
            and (error.cls in SYNTAX_CLASSES or error.cls is ErrorClass.TYPE))


def contrl(result: Result, now: float | None = None) -> bytes | None:
    """A CONTRL message answering an EDIFACT submission with syntax errors, else ``None``.

    The interchange is rejected as a whole (UCI 0083 = 4; nothing of it is forwarded),
    so each level below is reported only where it has errors: a functional group (UCF)
    or message (UCM) in error is rejected, with the first error of its own service
    segments (UNG/UNE, UNH/UNT) or without a segment in its 0085/0013/S011, and one UCS
    per body segment in error (0096 its position, UNH = 1), with a UCD per data element
    or component in error below it (or the error in the UCS's own 0085 when it concerns
    the whole segment). An interchange-level error (UNA, UNB, UNZ, or a segment outside
    any message) is UCI's 0085, with 0013 and S011 when it is in a service segment.
    """
    info = result.interchange
    # A finding repeated word for word (see errors.Findings) is reported at each of the
    # places it lists: every segment it names is a segment in error.
    errors = [e if place is e.place else replace(e, place=place)
              for e in result.errors[:MAX_LISTED] if in_contrl(e)
              for place in (e.place, *e.also)]
    if result.syntax != "edifact" or info is None or not errors:
        return None
    v4 = info.version >= 4
    d = Delimiters() if v4 else Delimiters(repetition=None)
    stamp = time.strftime("%Y%m%d:%H%M" if v4 else "%y%m%d:%H%M", time.gmtime(now))
    reference = info.reference[:14]
    own_ref = f"C{reference}"[:14]
    sender = _party(info.sender)
    recipient = _party(info.recipient)
    interchange, groups, messages = _levels(errors, info)
    uci: list[Any] = ["UCI", [[reference]], [sender], [recipient], [[ACTION_REJECTED]],
                      *_own_code(interchange, _UCI_TAGS)]
    body: list[list[Any]] = [uci]
    body += _message_responses([(k[0], v) for k, v in messages.items() if k[1] is None], info)
    for group in sorted(groups.keys() | {g for _, g in messages if g is not None}):
        header = info.groups[group]
        body.append(["UCF", [[header.reference[:14]]], [_party(header.sender)],
                     [_party(header.recipient)], [[ACTION_REJECTED]],
                     *_own_code(groups.get(group, []), _UCF_TAGS)])
        body += _message_responses([(k[0], v) for k, v in messages.items() if k[1] == group],
                                   info)
    segs = [["UNH", [["1"]], [["CONTRL", "4" if v4 else "D", "1" if v4 else "3", "UN"]]],
            *body]
    segs.append(["UNT", [[str(len(segs) + 1)]], [["1"]]])
    unb_sender = _party(info.recipient) if info.recipient and info.recipient[0] else [SW_EDI_ID]
    text = d.una() + format_segment(
        "UNB", [[[info.syntax_id[:4], str(info.version)]], [unb_sender[:2]], [sender[:2]],
                [stamp.split(":")], [[own_ref]]], d)
    text += "".join(format_segment(s[0], s[1:], d) for s in segs)
    text += format_segment("UNZ", [[["1"]], [[own_ref]]], d)
    return text.encode("latin-1", "replace")


def _party(ids: tuple[str, ...]) -> list[str]:
    """An identification composite echoed back (S002/S003, S006/S007): each component cut
    to its length in ISO 9735 (identification an..35, qualifier an..4, the rest an..35)."""
    sizes = (35, 4, 35, 35)
    return [value[:size] for value, size in zip(ids, sizes, strict=False)]


def _levels(errors: list[MigError], info: Interchange
            ) -> tuple[list[MigError], dict[int, list[MigError]],
                       dict[tuple[str, int | None], list[MigError]]]:
    """The errors by the level that reports them: the interchange's, each functional
    group's (by its index), each message's (by reference and group), in order."""
    interchange: list[MigError] = []
    groups: dict[int, list[MigError]] = {}
    messages: dict[tuple[str, int | None], list[MigError]] = {}
    group_of = dict(zip((ref for ref, _ in info.messages), info.message_groups, strict=False))
    for e in errors:
        if e.place.message is not None:
            key = (e.place.message, group_of.get(e.place.message))
            messages.setdefault(key, []).append(e)
            continue
        group = _group_at(e, info)
        if group is None:
            interchange.append(e)
        else:
            groups.setdefault(group, []).append(e)
    return interchange, groups, messages


def _group_at(error: MigError, info: Interchange) -> int | None:
    """The functional group whose UNG..UNE holds an error outside any message, if any."""
    at = error.place.interchange_segment
    if at is None or error.place.tag in _UCI_TAGS:
        return None
    for n, group in enumerate(info.groups):
        if group.first <= at and (group.last is None or at <= group.last):
            return n
    return None


def _own_code(errors: list[MigError], tags: frozenset[str]) -> list[list[list[str]]]:
    """A level's own error (0085; 0013 and S011 when it is in one of its service
    segments): the first error reported at that level. The segment has room for one."""
    if not errors:
        return []
    e = errors[0]
    fields: list[list[list[str]]] = [[[str(e.syntax_code or SE_UNSPECIFIED)]]]
    if e.place.tag in tags:
        fields.append([[e.place.tag or ""]])
        if e.place.element is not None:
            fields.append([_s011(e)])
    return fields


def _s011(e: MigError) -> list[str]:
    """S011 data element identification: 0098 element position, 0104 component position."""
    position = [str(e.place.element)]
    if e.place.component is not None:
        position.append(str(e.place.component))
    return position


def _message_responses(messages: list[tuple[str, list[MigError]]], info: Interchange
                       ) -> list[list[Any]]:
    """UCM, then its UCS and UCD, for each message in error (reference, its errors)."""
    out: list[list[Any]] = []
    ids = dict(info.messages)
    for ref, errs in messages:
        own = [e for e in errs if e.place.tag in _UCM_TAGS or e.place.segment is None]
        mine = {id(e) for e in own}
        # 0013 names UNH or UNT when the error is in it; a missing UNT is noticed at the
        # next segment (its tag is that one's), so it has the code alone.
        tags = _UCM_TAGS if own and own[0].place.segment is not None else frozenset()
        out.append(["UCM", [[ref[:14]]], [_message_id(ids.get(ref, ""))], [[ACTION_REJECTED]],
                    *_own_code(own, tags)])
        out += _segment_errors([e for e in errs if id(e) not in mine])
    return out


def _message_id(text: str) -> list[str]:
    """S009 as the message's UNH gave it: 0065 an..6, 0052 an..3, 0054 an..3, 0051 an..3,
    0057 an..6."""
    sizes = (6, 3, 3, 3, 6)
    return [value[:size] for value, size in zip(text.split(":"), sizes, strict=False)]


def _segment_errors(errors: list[MigError]) -> list[list[Any]]:
    """One UCS per body segment in error, by position: its 0085 when the error is the
    segment's own (missing, out of place, repeated too often), and one UCD (0085, S011)
    per data element or component in error."""
    by_segment: dict[int, list[MigError]] = {}
    for e in errors:
        if e.place.segment is not None:
            by_segment.setdefault(e.place.segment, []).append(e)
    out: list[list[Any]] = []
    for position, errs in list(by_segment.items())[:_MAX_UCS]:
        own = [e for e in errs if e.place.element is None]
        ucs: list[Any] = ["UCS", [[str(position)]]]
        if own:
            ucs.append([[str(own[0].syntax_code or SE_UNSPECIFIED)]])
        out.append(ucs)
        out += [["UCD", [[str(e.syntax_code or SE_UNSPECIFIED)]], [_s011(e)]]
                for e in errs if e.place.element is not None][:_MAX_UCD]
    return out
