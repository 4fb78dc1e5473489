"""The XML Schema of an EDIFACT message type's XML form, generated from its MIG data.

Where it sits in the mail flow: at MIG load time only. The XML that agencies receive for an
EDIFACT submission, and the XML form a company may send instead, are described by this
schema: envelope (``Interchange``, ``S_UNB``, optional ``G_UNG``), the message's segment
groups and segments in segment-table order with the table's occurrences, and each data
element's representation and code list. An operator may ship a hand-written schema in the
type's ``mig.toml`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TypeVar
from xml.sax.saxutils import quoteattr

from singlewindow.mig.edifact.message import EdifactProfile, codes_of
from singlewindow.mig.model import ComponentDef, DataError, ElementDef, Fmt, GroupDef, SegmentDef

XS = "http://www.w3.org/2001/XMLSchema"


def _occurs(minimum: int, maximum: int) -> str:
    return f' minOccurs="{minimum}" maxOccurs="{maximum}"'


def _type_name(did: str, fmt: Fmt, tag: str = "") -> str:
    return f"T_{tag}{'_' if tag else ''}{did}_{fmt.kind}{'' if fmt.fixed else 'v'}{fmt.max}"


def _simple_type(name: str, fmt: Fmt, codes: frozenset[str] | None) -> str:
    facets: list[str] = []
    if codes is not None:
        facets += [f"<xs:enumeration value={quoteattr(c)}/>" for c in sorted(codes)]
    if fmt.kind == "n":
        # Sign and decimal mark do not count towards the length (ISO 9735-1 section 10).
        facets.append('<xs:pattern value="-?[0-9]*([.,][0-9]*)?"/>')
        facets.append(f'<xs:maxLength value="{fmt.max + 2}"/>')
    else:
        facets.append(f'<xs:minLength value="{fmt.min}"/><xs:maxLength value="{fmt.max}"/>')
        if fmt.kind == "a":
            facets.append('<xs:pattern value="[^0-9]*"/>')
    return (f'<xs:simpleType name="{name}"><xs:restriction base="xs:string">'
            + "".join(facets) + "</xs:restriction></xs:simpleType>")


_D = TypeVar("_D", ElementDef, ComponentDef)


def _runs(items: tuple[_D, ...], where: str) -> Iterator[list[_D]]:
    """Consecutive positions with the same data element form one XML element that repeats."""
    runs: list[list[_D]] = []
    seen: set[str] = set()
    for item in items:
        if runs and runs[-1][0].id == item.id:
            runs[-1].append(item)
            continue
        if item.id in seen:
            raise DataError(f"{where}: {item.id} stands at two separate positions; "
                            "its XML form would be ambiguous")
        seen.add(item.id)
        runs.append([item])
    return iter(runs)


class _Gen:
    def __init__(self, profile: EdifactProfile, service: Mapping[str, SegmentDef]) -> None:
        self.p = profile
        self.service = service
        self.types: dict[str, str] = {}

    def simple(self, did: str, fmt: Fmt, tag: str) -> str:
        """The simple type of ``did`` in segment ``tag``: shared by every segment unless the
        MIG gives the segment its own code list for it (``[codes] "BGM/1001"``)."""
        own = f"{tag}/{did}" in self.p.codes
        name = _type_name(did, fmt, tag if own else "")
        if name not in self.types:
            self.types[name] = _simple_type(name, fmt, codes_of(self.p.codes, tag, did))
        return name

    def segment_type(self, sdef: SegmentDef) -> str:
        parts: list[str] = []
        for run in _runs(sdef.elements, sdef.tag):
            first = run[0]
            mandatory = sum(1 for e in run if e.mandatory)
            repeat = sum(e.repeat for e in run)
            occurs = _occurs(mandatory, repeat)
            if first.fmt is not None:
                parts.append(f'<xs:element name="D_{first.id}" '
                             f'type="{self.simple(first.id, first.fmt, sdef.tag)}"{occurs}/>')
            else:
                parts.append(f'<xs:element name="C_{first.id}"{occurs}><xs:complexType>'
                             f"<xs:sequence>{self.components(first, sdef.tag)}</xs:sequence>"
                             "</xs:complexType></xs:element>")
        return (f'<xs:complexType name="S_{sdef.tag}"><xs:sequence>{"".join(parts)}'
                "</xs:sequence></xs:complexType>")

    def components(self, el: ElementDef, tag: str) -> str:
        parts = []
        for run in _runs(el.components, f"{tag}/{el.id}"):
            first = run[0]
            mandatory = sum(1 for c in run if c.mandatory)
            type_name = self.simple(first.id, first.fmt, tag)
            parts.append(f'<xs:element name="D_{first.id}" type="{type_name}"'
                         f"{_occurs(mandatory, len(run))}/>")
        return "".join(parts)

    def group(self, group: GroupDef) -> str:
        parts = []
        for child in group.children:
            minimum = 1 if child.mandatory else 0
            if isinstance(child, GroupDef):
                parts.append(f'<xs:element name="G_{child.name}"{_occurs(minimum, child.max)}>'
                             f"<xs:complexType><xs:sequence>{self.group(child)}</xs:sequence>"
                             "</xs:complexType></xs:element>")
            else:
                parts.append(f'<xs:element name="S_{child.tag}" type="S_{child.tag}"'
                             f"{_occurs(minimum, child.max)}/>")
        return "".join(parts)

    def schema(self, namespace: str) -> str:
        msg = f"M_{self.p.message}"
        body = self.group(self.p.structure)
        segs = {**self.service, **self.p.segments}
        used = sorted({"UNB", "UNZ", "UNG", "UNE", *_tags(self.p.structure)})
        seg_types = "".join(self.segment_type(segs[t]) for t in used)
        envelope = (
            '<xs:element name="Interchange"><xs:complexType><xs:sequence>'
            '<xs:element name="S_UNB" type="S_UNB"/><xs:choice>'
            '<xs:element name="G_UNG" maxOccurs="unbounded"><xs:complexType><xs:sequence>'
            f'<xs:element name="S_UNG" type="S_UNG"/><xs:element ref="{msg}" '
            'maxOccurs="unbounded"/><xs:element name="S_UNE" type="S_UNE"/>'
            "</xs:sequence></xs:complexType></xs:element>"
            f'<xs:element ref="{msg}" maxOccurs="unbounded"/></xs:choice>'
            '<xs:element name="S_UNZ" type="S_UNZ"/></xs:sequence></xs:complexType>'
            "</xs:element>")
        return (f'<xs:schema xmlns:xs="{XS}" targetNamespace="{namespace}" '
                f'xmlns="{namespace}" elementFormDefault="qualified">{envelope}'
                f'<xs:element name="{msg}"><xs:complexType><xs:sequence>{body}</xs:sequence>'
                f"</xs:complexType></xs:element>{seg_types}{''.join(self.types.values())}"
                "</xs:schema>")


def _tags(group: GroupDef) -> Iterator[str]:
    for child in group.children:
        if isinstance(child, GroupDef):
            yield from _tags(child)
        else:
            yield child.tag


def schema_for(profile: EdifactProfile, service: Mapping[str, SegmentDef], namespace: str
               ) -> str:
    """The XSD text for ``profile``'s XML form."""
    return _Gen(profile, service).schema(namespace)
