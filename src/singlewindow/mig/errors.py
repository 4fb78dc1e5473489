"""The typed error list a MIG validation produces.

Where it sits in the mail flow: after the transport's technical and address checks pass,
:func:`singlewindow.mig.validate` runs; every problem it finds is one :class:`MigError`. The
same list feeds the control message text, the FRM-style XML report, the UN/EDIFACT CONTRL
message and ``swctl mig validate``, so all four say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
    message carries; it is ``None`` for application errors.
    """

    cls: ErrorClass
    rule: str
    text: str
    place: Place = Place()
    syntax_code: int | None = None

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
        }

    def __str__(self) -> str:
        return f"{self.code} at {self.place}: {self.text} [{self.rule}]"


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
