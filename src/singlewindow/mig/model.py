"""The MIG's EDIFACT definitions as Python objects, and the readers of their text files.

Where it sits in the mail flow: nowhere at message time. The loader reads the MIG data
directory once (transport start, SIGHUP) through these readers; validation and conversion
then use the frozen objects. The two text formats (``segments.txt``, ``structure.txt``)
are described in ``data/README.md`` and follow the layout of the UN directories' segment
specifications and segment tables, so an operator can copy a row from the directory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

_FMT = re.compile(r"^(an|a|n)(\.\.)?(\d+)$")


class DataError(ValueError):
    """A MIG data file is malformed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Fmt:
    """A UN/EDIFACT representation such as ``an..35`` (variable) or ``n3`` (fixed)."""

    kind: str  # "a", "n" or "an"
    max: int
    fixed: bool

    @property
    def min(self) -> int:
        return self.max if self.fixed else 1

    def __str__(self) -> str:
        return f"{self.kind}{'' if self.fixed else '..'}{self.max}"

    @classmethod
    def parse(cls, text: str) -> Fmt:
        m = _FMT.match(text)
        if m is None:
            raise DataError(f"not a data element format: {text!r}")
        return cls(m.group(1), int(m.group(3)), m.group(2) is None)


def is_format(text: str) -> bool:
    return _FMT.match(text) is not None


@dataclass(frozen=True, slots=True)
class ComponentDef:
    id: str
    name: str
    mandatory: bool
    fmt: Fmt


@dataclass(frozen=True, slots=True)
class ElementDef:
    """A data element position in a segment: simple (``fmt``) or composite (``components``)."""

    id: str
    name: str
    mandatory: bool
    repeat: int
    fmt: Fmt | None = None
    components: tuple[ComponentDef, ...] = ()

    @property
    def composite(self) -> bool:
        return bool(self.components)

    @property
    def xml_name(self) -> str:
        return f"C_{self.id}" if self.composite else f"D_{self.id}"


@dataclass(frozen=True, slots=True)
class SegmentDef:
    tag: str
    name: str
    elements: tuple[ElementDef, ...]


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """A segment's place in a message structure (segment table row)."""

    tag: str
    mandatory: bool
    max: int

    @property
    def trigger(self) -> str:
        return self.tag


@dataclass(frozen=True, slots=True)
class GroupDef:
    """A segment group (or the message itself): entered by its first segment."""

    name: str
    mandatory: bool
    max: int
    children: tuple[SegmentRef | GroupDef, ...] = field(default_factory=tuple)
    #: each child's first segment tag, for the structure walk's look-ahead
    triggers: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "triggers", tuple(c.trigger for c in self.children))

    @property
    def trigger(self) -> str:
        return self.children[0].trigger


def _status(text: str, where: str) -> bool:
    if text not in ("M", "C"):
        raise DataError(f"{where}: status must be M or C, not {text!r}")
    return text == "M"


def _data_lines(text: str, source: str) -> Iterator[tuple[str, int, list[str]]]:
    """The lines of an indented data file that say something: (``file:line``, indent,
    words), comments and blank lines skipped."""
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if line.strip():
            yield f"{source}:{no}", len(line) - len(line.lstrip(" ")), line.split()


def read_segments(text: str, source: str) -> dict[str, SegmentDef]:
    """Read a ``segments.txt``: segment lines, indented element and component lines."""
    segments: dict[str, SegmentDef] = {}
    current: tuple[str, str, list[ElementDef]] | None = None
    comps: list[ComponentDef] | None = None
    for where, indent, words in _data_lines(text, source):
        if indent == 0:
            if current:
                segments[current[0]] = _finish(current, comps)
            current, comps = (words[0], " ".join(words[1:]), []), None
        elif current is None:
            raise DataError(f"{where}: element before any segment")
        elif indent == 2:
            if current[2] and comps is not None:
                current[2][-1] = _with_components(current[2][-1], comps)
            comps = None
            el = _element(words, where)
            current[2].append(el)
            if not el.fmt:
                comps = []
        elif indent == 4 and comps is not None:
            comps.append(ComponentDef(words[0], " ".join(words[3:]), _status(words[1], where),
                                      _fmt(words[2], where)))
        else:
            raise DataError(f"{where}: unexpected indentation")
    if current:
        segments[current[0]] = _finish(current, comps)
    return segments


def _fmt(text: str, where: str) -> Fmt:
    try:
        return Fmt.parse(text)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def _element(words: list[str], where: str) -> ElementDef:
    if len(words) < 3 or not words[2].isdigit():
        raise DataError(f"{where}: expected 'ID M|C REPEAT [FORMAT] NAME'")
    if len(words) > 3 and is_format(words[3]):
        return ElementDef(words[0], " ".join(words[4:]), _status(words[1], where),
                          int(words[2]), _fmt(words[3], where))
    return ElementDef(words[0], " ".join(words[3:]), _status(words[1], where), int(words[2]))


def _with_components(el: ElementDef, comps: list[ComponentDef]) -> ElementDef:
    return ElementDef(el.id, el.name, el.mandatory, el.repeat, el.fmt, tuple(comps))


def _finish(current: tuple[str, str, list[ElementDef]], comps: list[ComponentDef] | None
            ) -> SegmentDef:
    tag, name, elements = current
    if elements and comps is not None:
        elements[-1] = _with_components(elements[-1], comps)
    for el in elements:
        if el.fmt is None and not el.components:
            raise DataError(f"segment {tag}: composite {el.id} has no components")
    return SegmentDef(tag, name, tuple(elements))


def read_structure(text: str, source: str, name: str) -> GroupDef:
    """Read a ``structure.txt`` segment table into the message's root group."""
    stack: list[tuple[int, str, bool, int, list[SegmentRef | GroupDef]]] = [
        (-2, name, True, 1, [])
    ]
    for where, indent, words in _data_lines(text, source):
        if len(words) < 3 or not words[2].isdigit():
            raise DataError(f"{where}: expected 'TAG|SGn M|C MAX'")
        while indent <= stack[-1][0]:
            _close(stack)
        mandatory, mx = _status(words[1], where), int(words[2])
        if re.fullmatch(r"SG\d+", words[0]):
            stack.append((indent, words[0], mandatory, mx, []))
        else:
            stack[-1][4].append(SegmentRef(words[0], mandatory, mx))
    while len(stack) > 1:
        _close(stack)
    _, gname, mand, mx, children = stack[0]
    return GroupDef(gname, mand, mx, tuple(children))


def _close(stack: list[tuple[int, str, bool, int, list[SegmentRef | GroupDef]]]) -> None:
    _, name, mandatory, mx, children = stack.pop()
    if not children or not isinstance(children[0], SegmentRef):
        raise DataError(f"segment group {name} must start with a segment")
    stack[-1][4].append(GroupDef(name, mandatory, mx, tuple(children)))
