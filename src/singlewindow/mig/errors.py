"""The typed error list a MIG validation produces.

Where it sits in the mail flow: after the transport's technical and address checks pass,
:func:`singlewindow.mig.validate` runs; every problem it finds is one :class:`MigError`. The
same list feeds the control message text, the FRM-style XML report, the UN/EDIFACT CONTRL
message and ``swctl mig validate``, so all four say the same thing.

The checks append to a :class:`Findings` list, which keeps each defect once: a finding
repeated word for word (the same bad character in 500 names) becomes one finding with a
count and its first places, and past :data:`MAX_FINDINGS` the list stops with a last
finding that says how many more were not listed (issue 11). Texts and places are cut to
bounded lengths, so the control message stays small whatever the input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import SupportsIndex

#: At most this many findings per interchange or XML document, the last of them saying how
#: many more were cut: past it the sender learns more from a corrected resubmission than
#: from a longer list. With :data:`MAX_TEXT` and :data:`MAX_PLACE` it bounds the control
#: message (text, FRM XML and CONTRL together stay well under 1 MB).
MAX_FINDINGS = 200
#: A finding's text is cut to this many characters (it may quote a submitted value).
MAX_TEXT = 400
#: Each string of a place (message reference, tag, XPath) is cut to this many characters.
MAX_PLACE = 200
#: A repeated finding names this many of its further places.
SHOWN_PLACES = 5
#: The checks stop reading once this many findings were appended, repeats included:
#: the list is as full as it gets, and reading on costs time for nothing shown.
MAX_APPENDS = 10_000


class ErrorClass(StrEnum):
    """What kind of check failed; the control message names it as the error's code."""

    SYNTAX = "SYNTAX"  # ISO 9735 syntax: separators, service segments, envelope order
    REPERTOIRE = "REPERTOIRE"  # a character outside UNOA/UNOB/UNOC/UNOY
    COUNT = "COUNT"  # UNT/UNE/UNZ control counts and control references
    STRUCTURE = "STRUCTURE"  # segment order, segment groups, occurrences
    FORMAT = "FORMAT"  # an..35 / n..15, mandatory elements, too many elements
    CODELIST = "CODELIST"  # a coded value outside the MIG's code list
    XML = "XML"  # not well-formed XML
    UNSAFE = "UNSAFE"  # DTD, entity or size limit: refused before any expansion
    XSD = "XSD"  # schema validation of the XML form
    RULE = "RULE"  # business rule (Schematron)
    TYPE = "TYPE"  # content type or message type unknown to the MIG
    LIMIT = "LIMIT"  # not a defect: the list stops here (MAX_FINDINGS, MAX_APPENDS)


#: Error classes that a UN/EDIFACT CONTRL message reports (ISO 9735-4 syntax errors);
#: the others are application errors, reported only in the control message and FRM report.
SYNTAX_CLASSES = frozenset(
    {
        ErrorClass.SYNTAX,
        ErrorClass.REPERTOIRE,
        ErrorClass.COUNT,
        ErrorClass.STRUCTURE,
        ErrorClass.FORMAT,
        ErrorClass.CODELIST,
    }
)


@dataclass(frozen=True, slots=True)
class Place:
    """Where an error is: a segment (EDIFACT) or an XPath and line (XML).

    A business rule failing on converted EDIFACT has both: the EDIFACT position, which
    is what its text names, and the XPath into the XML form."""

    segment: int | None = None  # position in the message, UNH = 1 (CONTRL 0096)
    tag: str | None = None
    element: int | None = None  # data element position in the segment, 1-based
    component: int | None = None  # component position in the composite, 1-based
    message: str | None = None  # UNH message reference (0062)
    interchange_segment: int | None = None  # position in the whole interchange
    xpath: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        edifact = (self.tag, self.segment, self.message) != (None, None, None)
        if (self.xpath is not None or self.line is not None) and not edifact:
            where = self.xpath or "/"
            return f"{where} (line {self.line})" if self.line is not None else where
        parts: list[str] = []
        if self.message is not None:
            parts.append(f"message {self.message}")
        if self.segment is not None:
            parts.append(f"segment {self.segment}")
        elif self.interchange_segment is not None:
            parts.append(f"interchange segment {self.interchange_segment}")
        if self.tag:
            parts.append(self.tag)
        if self.element is not None:
            pos = f"element {self.element}"
            if self.component is not None:
                pos += f".{self.component}"
            parts.append(pos)
        return " ".join(parts) or "interchange"

    def as_dict(self) -> dict[str, str | int]:
        return {k: v for k in self.__slots__ if (v := getattr(self, k)) is not None}


@dataclass(frozen=True, slots=True)
class MigError:
    """One finding: its class, where, which rule, a readable text.

    ``syntax_code`` is the ISO 9735 syntax error code (data element 0085) the CONTRL
    message carries; it is ``None`` for application errors. A finding that :class:`Findings`
    saw again word for word has ``repeats`` (how many more times) and ``also`` (the places of
    the first :data:`SHOWN_PLACES` of them); its text then ends with both.
    """

    cls: ErrorClass
    rule: str
    text: str
    place: Place = Place()
    syntax_code: int | None = None
    repeats: int = 0
    also: tuple[Place, ...] = ()

    @property
    def code(self) -> str:
        return f"SW-{self.cls.value}"

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "class": self.cls.value,
            "rule": self.rule,
            "text": self.text,
            "place": str(self.place),
            "location": self.place.as_dict(),
            "syntax_code": self.syntax_code,
            "repeats": self.repeats,
        }

    def __str__(self) -> str:
        return f"{self.code} at {self.place}: {self.text} [{self.rule}]"


_Key = tuple[ErrorClass, str, int | None, str, str | None]


def _clip(text: str | None, size: int) -> str | None:
    if text is None or len(text) <= size:
        return text
    keep = size - 3
    return text[:keep - keep // 3] + "..." + text[len(text) - keep // 3:]


def bounded(error: MigError) -> MigError:
    """``error`` with its text and place strings cut to :data:`MAX_TEXT`/:data:`MAX_PLACE`."""
    p = error.place
    if (len(error.text) <= MAX_TEXT and all(v is None or len(v) <= MAX_PLACE
                                            for v in (p.message, p.tag, p.xpath))):
        return error
    place = replace(p, message=_clip(p.message, MAX_PLACE), tag=_clip(p.tag, MAX_PLACE),
                    xpath=_clip(p.xpath, MAX_PLACE))
    text = _clip(error.text, MAX_TEXT)
    assert text is not None
    return replace(error, text=text, place=place)


def _short(place: Place) -> str:
    """A place in a list of places: the segment (in its message, else in the interchange),
    or the XPath, or the line."""
    if place.segment is not None:
        return str(place.segment)
    if place.interchange_segment is not None:
        return str(place.interchange_segment)
    if place.xpath is not None:
        return _clip(place.xpath, 80) or ""
    return f"line {place.line}" if place.line is not None else "?"


def _places_noun(place: Place) -> str:
    if place.segment is not None:
        return "in segments"
    if place.interchange_segment is not None:
        return "in interchange segments"
    return "at"


class Findings(list[MigError]):
    """The findings of one interchange or XML document, each defect once.

    :meth:`append` keeps a finding unless one with the same class, rule, syntax code and
    text, in the same message, is already listed: that one then counts a repeat (the same
    wrong character in every segment is one defect of the sender's software, reported once
    with its count and first places). Distinct findings past :data:`MAX_FINDINGS` are
    counted, not kept; the list then ends with a :attr:`ErrorClass.LIMIT` finding that says
    how many were cut, so it never holds more than :data:`MAX_FINDINGS`. :attr:`appended`
    counts every append, repeats included: a check that wants to know whether it found
    anything compares it before and after (the length does not grow for a repeat).
    """

    def __init__(self, found: Iterable[MigError] = (), cap: int = MAX_FINDINGS) -> None:
        super().__init__()
        self.cap = cap
        self.appended = 0
        self.cut = 0
        self.stopped: str | None = None  # where the checks stopped reading, if they did
        self._index: dict[_Key, int] = {}
        self._note: int | None = None  # index of the LIMIT finding
        self._cut: set[int] = set()  # hashes of the findings not listed
        self._texts: dict[int, str] = {}  # index -> text of a repeated finding, as first seen
        for error in found:
            self.append(error)

    def append(self, error: MigError) -> None:
        self.appended += 1
        key = (error.cls, error.rule, error.syntax_code, error.text, error.place.message)
        at = self._index.get(key)
        if at is not None:
            self._repeat(at, error.place)
            return
        if len(self._index) >= self.cap - 1:
            cut = hash(key)  # a repeat of a finding not listed is not counted again
            if cut not in self._cut:
                self._cut.add(cut)
                self.cut += 1
                self._limit()
            return
        self._index[key] = len(self)
        super().append(bounded(error))

    def extend(self, errors: Iterable[MigError]) -> None:
        for error in errors:
            self.append(error)

    def __iadd__(self, errors: Iterable[MigError]) -> Findings:  # type: ignore[override,misc]
        self.extend(errors)
        return self

    def insert(self, index: SupportsIndex, error: MigError) -> None:
        raise TypeError("findings are appended in the order they are found")

    @property
    def full(self) -> bool:
        """Whether reading on can no longer change what the list shows usefully."""
        return self.appended >= MAX_APPENDS

    def stop(self, where: str) -> None:
        """The checks stop reading at ``where`` (their text); the list says so."""
        self.stopped = where
        self._limit()

    def _repeat(self, at: int, place: Place) -> None:
        first = self[at]
        also = first.also
        if len(also) < SHOWN_PLACES and place != first.place:
            also = (*also, place)
        repeats = first.repeats + 1
        base = self._texts.setdefault(at, first.text)
        shown = ", ".join(_short(p) for p in also)
        more = ", ..." if repeats > len(also) else ""
        where = f" {_places_noun(first.place)} {shown}{more}" if also else ""
        text = f"{base} (and {repeats} more{where})"
        self[at] = replace(first, text=text, repeats=repeats, also=also)

    def _limit(self) -> None:
        parts = []
        if self.cut:
            parts.append(f"{self.cut} more finding{'s' if self.cut != 1 else ''} not listed "
                         f"(the list stops at {self.cap})")
        if self.stopped:
            parts.append(f"the check stopped {self.stopped}, after {self.appended} findings")
        note = MigError(ErrorClass.LIMIT, "SW-FINDINGS-LIMIT", "; ".join(parts)
                        + ": correct the findings listed and submit again to see the rest")
        if self._note is None:
            self._note = len(self)
            super().append(note)
        else:
            self[self._note] = note


def count(errors: list[MigError]) -> int:
    """Findings appended to ``errors`` so far, repeats included (see :class:`Findings`)."""
    return errors.appended if isinstance(errors, Findings) else len(errors)


# ISO 9735 syntax error codes (data element 0085, ISO 9735-1 Annex D / CONTRL). Named here
# so the codec, the structure check and the CONTRL writer agree.
SE_SYNTAX_NOT_SUPPORTED = 2  # syntax level / version not supported
SE_INVALID_VALUE = 12  # value of an element is invalid
SE_MISSING = 13  # mandatory element or segment missing
SE_NOT_SUPPORTED_HERE = 15  # segment not supported in this position
SE_TOO_MANY_CONSTITUENTS = 16  # too many elements or components
SE_UNSPECIFIED = 18  # unspecified error
SE_INVALID_CHARACTER = 21  # character outside the repertoire
SE_INVALID_SERVICE_CHAR = 22  # invalid service character(s)
SE_REFERENCE_MISMATCH = 28  # control reference in trailer differs from header
SE_COUNT_MISMATCH = 29  # control count differs from the number received
SE_GROUPS_AND_MESSAGES = 30  # functional groups and messages mixed in one interchange
SE_OUTSIDE = 33  # segment outside its message, group or interchange
SE_TOO_MANY_REPETITIONS = 35  # segment or element repeated too often
SE_TOO_MANY_GROUP_REPETITIONS = 36  # segment group repeated too often
SE_INVALID_CHAR_TYPE = 37  # letters in a numeric element, digits in an alphabetic one
SE_TOO_LONG = 39  # data element too long
SE_TOO_SHORT = 40  # data element too short
