"""The interchange envelope: UNB/UNZ, UNG/UNE functional groups, UNH/UNT messages.

Where it sits in the mail flow: between the tokenizer and the message checks. It turns the
segment stream into events (open/close interchange, group, message; a message segment) and
checks what ISO 9735-1 section 7 and the service segments' control elements require: the
order of service segments, UNT's segment count (0074) and reference (0062), UNE's message
count (0060) and reference (0048), UNZ's count (0036) and reference (0020). It keeps only
counters, never a whole message, so memory stays flat whatever the interchange size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import Enum
from typing import NamedTuple

from singlewindow.mig.edifact.syntax import Segment
from singlewindow.mig.errors import (
    SE_COUNT_MISMATCH,
    SE_GROUPS_AND_MESSAGES,
    SE_MISSING,
    SE_OUTSIDE,
    SE_REFERENCE_MISMATCH,
    ErrorClass,
    MigError,
    Place,
)


class Kind(Enum):
    INTERCHANGE = "UNB"
    GROUP = "UNG"
    MESSAGE = "UNH"
    SEGMENT = "SEG"
    END_MESSAGE = "UNT"
    END_GROUP = "UNE"
    END_INTERCHANGE = "UNZ"


class Event(NamedTuple):
    """One step of the envelope walk. ``segment`` is ``None`` for a trailer that is missing;
    ``position`` is the segment's position in its message (UNH = 1), else 0."""

    kind: Kind
    segment: Segment | None
    position: int = 0


def _err(cls: ErrorClass, rule: str, text: str, seg: Segment | None, code: int,
         position: int | None = None, message: str | None = None,
         element: int | None = None) -> MigError:
    place = Place(segment=position, tag=seg.tag if seg else None, element=element,
                  message=message, interchange_segment=seg.index if seg else None)
    return MigError(cls, rule, text, place, code)


class Walk:
    """State of one envelope walk; :func:`walk` (or the converter) drives it."""

    def __init__(self, errors: list[MigError]) -> None:
        self.errors = errors
        self.unb: Segment | None = None
        self.ung: Segment | None = None
        self.unh: Segment | None = None
        self.position = 0
        self.groups = 0
        self.loose_messages = 0
        self.group_messages = 0
        self.closed = False

    def feed(self, seg: Segment) -> Iterator[Event]:
        """The events of one segment (:func:`walk` inlines the common case)."""
        if self.closed:
            self.outside(seg)
        elif self.unh is not None and seg.tag not in HANDLERS:
            self.position += 1
            yield Event(Kind.SEGMENT, seg, self.position)
        else:
            yield from self.step(seg)

    def end(self) -> Iterator[Event]:
        """The events at the end of the stream."""
        if not self.closed and self.unb is not None:
            yield from self.end_message(None)
            yield from self.end_group(None)
            self.errors.append(MigError(ErrorClass.SYNTAX, "ISO9735-UNZ", "the interchange "
                                        "has no UNZ", Place(tag="UNZ"), SE_MISSING))
            yield Event(Kind.END_INTERCHANGE, None)

    def step(self, seg: Segment) -> Iterator[Event]:
        handler = HANDLERS.get(seg.tag)
        if handler is not None:
            yield from handler(self, seg)
        elif self.unh is not None:
            self.position += 1
            yield Event(Kind.SEGMENT, seg, self.position)
        else:
            self.outside(seg)

    def outside(self, seg: Segment) -> None:
        self.errors.append(_err(ErrorClass.SYNTAX, "ISO9735-1-7", f"segment {seg.tag} outside "
                                "a message (only UNG, UNH, UNE, UNZ may stand here)", seg,
                                SE_OUTSIDE))

    def on_unb(self, seg: Segment) -> Iterator[Event]:
        if self.unb is not None:
            self.outside(seg)
            return
        self.unb = seg
        yield Event(Kind.INTERCHANGE, seg)

    def on_ung(self, seg: Segment) -> Iterator[Event]:
        yield from self.end_message(seg)
        yield from self.end_group(seg)
        if self.loose_messages:
            self.errors.append(_err(ErrorClass.SYNTAX, "ISO9735-1-7.2", "functional groups and "
                                    "messages outside groups are mixed", seg,
                                    SE_GROUPS_AND_MESSAGES))
        self.ung, self.groups, self.group_messages = seg, self.groups + 1, 0
        yield Event(Kind.GROUP, seg)

    def on_unh(self, seg: Segment) -> Iterator[Event]:
        yield from self.end_message(seg)
        if self.ung is None:
            if self.groups:
                self.errors.append(_err(ErrorClass.SYNTAX, "ISO9735-1-7.2", "a message outside "
                                        "a functional group in an interchange that has groups",
                                        seg, SE_GROUPS_AND_MESSAGES))
            self.loose_messages += 1
        else:
            self.group_messages += 1
        self.unh, self.position = seg, 1
        yield Event(Kind.MESSAGE, seg, 1)

    def on_unt(self, seg: Segment) -> Iterator[Event]:
        if self.unh is None:
            self.outside(seg)
            return
        self.position += 1
        ref = self.unh.value(1)
        count = seg.value(1)
        if count != str(self.position) and count.lstrip("0") != str(self.position):
            self.errors.append(_err(ErrorClass.COUNT, "ISO9735-UNT-0074",
                                    f"UNT says {count or 'nothing'} "
                                    f"segments but the message has {self.position}", seg,
                                    SE_COUNT_MISMATCH, self.position, ref, 1))
        if seg.value(2) != ref:
            self.errors.append(_err(ErrorClass.COUNT, "ISO9735-UNT-0062", f"UNT reference "
                                    f"{seg.value(2)!r} differs from UNH reference {ref!r}", seg,
                                    SE_REFERENCE_MISMATCH, self.position, ref, 2))
        yield Event(Kind.END_MESSAGE, seg, self.position)
        self.unh = None

    def end_message(self, at: Segment | None) -> Iterator[Event]:
        if self.unh is None:
            return
        self.errors.append(_err(ErrorClass.SYNTAX, "ISO9735-UNT", f"message {self.unh.value(1)!r} "
                                "has no UNT", at, SE_MISSING, message=self.unh.value(1)))
        yield Event(Kind.END_MESSAGE, None, self.position)
        self.unh = None

    def on_une(self, seg: Segment) -> Iterator[Event]:
        yield from self.end_message(seg)
        if self.ung is None:
            self.outside(seg)
            return
        self.check_trailer(seg, "UNE-0060", "UNE-0048", self.group_messages,
                           "messages but the group has", self.ung)
        self.ung = None
        yield Event(Kind.END_GROUP, seg)

    def end_group(self, at: Segment | None) -> Iterator[Event]:
        if self.ung is None:
            return
        self.errors.append(_err(ErrorClass.SYNTAX, "ISO9735-UNE", f"functional group "
                                f"{self.ung.value(5)!r} has no UNE", at, SE_MISSING))
        self.ung = None
        yield Event(Kind.END_GROUP, None)

    def on_unz(self, seg: Segment) -> Iterator[Event]:
        yield from self.end_message(seg)
        yield from self.end_group(seg)
        assert self.unb is not None  # the tokenizer only starts on UNB
        self.check_unz(seg, self.unb)
        self.closed = True
        yield Event(Kind.END_INTERCHANGE, seg)

    def check_unz(self, seg: Segment, unb: Segment) -> None:
        what = "groups" if self.groups else "messages"
        self.check_trailer(seg, "UNZ-0036", "UNZ-0020", self.groups or self.loose_messages,
                           f"{what} but the interchange has", unb)

    def check_trailer(self, seg: Segment, count_rule: str, ref_rule: str, expected: int,
                      what: str, opener: Segment) -> None:
        """A trailer (UNE, UNZ): its control count (element 1) and the reference it must
        repeat from its opening segment's element 5 (ISO 9735 UNG 0048, UNB 0020)."""
        count, ref = seg.value(1), opener.value(5)
        if count.lstrip("0") != str(expected).lstrip("0"):
            self.errors.append(_err(ErrorClass.COUNT, f"ISO9735-{count_rule}",
                                    f"{seg.tag} says {count or 'nothing'} {what} {expected}",
                                    seg, SE_COUNT_MISMATCH, element=1))
        if seg.value(2) != ref:
            self.errors.append(_err(ErrorClass.COUNT, f"ISO9735-{ref_rule}",
                                    f"{seg.tag} reference {seg.value(2)!r} differs from "
                                    f"{opener.tag} reference {ref!r}", seg,
                                    SE_REFERENCE_MISMATCH, element=2))


HANDLERS = {
    "UNB": Walk.on_unb,
    "UNG": Walk.on_ung,
    "UNH": Walk.on_unh,
    "UNT": Walk.on_unt,
    "UNE": Walk.on_une,
    "UNZ": Walk.on_unz,
}


def walk(segments: Iterable[Segment], errors: list[MigError]) -> Iterator[Event]:
    """Envelope events for a segment stream; envelope errors are appended to ``errors``."""
    state = Walk(errors)
    for seg in segments:
        if state.unh is not None and not state.closed and seg.tag not in HANDLERS:
            # The common case, a segment inside a message, without a generator hop.
            state.position += 1
            yield Event(Kind.SEGMENT, seg, state.position)
        else:
            yield from state.feed(seg)
    yield from state.end()
