"""The XML form of an interchange back to EDIFACT.

Where it sits in the mail flow: not on the forwarding path (agencies receive XML); it
proves the mapping loses nothing (the round-trip test) and lets an operator turn an XML
form back into an interchange for a party that needs EDIFACT. Positions are filled from the
segment definitions: consecutive positions of one data element (NAD's five 3036 party name
lines) take the repeated XML elements in order; a repeatable element takes them all as
syntax-4 repetitions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from lxml import etree

from singlewindow.mig.edifact.syntax import DEFAULT_V3, DEFAULT_V4, Delimiters, format_segment
from singlewindow.mig.model import ComponentDef, DataError, ElementDef, SegmentDef


def _local(el: etree._Element) -> str:
    return str(etree.QName(el).localname)


def _take(children: Sequence[etree._Element], k: int, name: str) -> tuple[list[etree._Element],
                                                                          int]:
    found = []
    while k < len(children) and _local(children[k]) == name:
        found.append(children[k])
        k += 1
    return found, k


def _runs(defs: Sequence[ElementDef] | Sequence[ComponentDef]
          ) -> Iterator[Sequence[ElementDef] | Sequence[ComponentDef]]:
    i = 0
    while i < len(defs):
        j = i + 1
        while j < len(defs) and defs[j].id == defs[i].id:
            j += 1
        yield defs[i:j]
        i = j


def _components(el: etree._Element, comps: tuple[ComponentDef, ...]) -> list[str]:
    children = list(el)
    values: list[str] = []
    k = 0
    for run in _runs(comps):
        found, k = _take(children, k, f"D_{run[0].id}")
        values += [(found[n].text or "") if n < len(found) else "" for n in range(len(run))]
    return values


def segment_from_xml(el: etree._Element, sdef: SegmentDef) -> list[list[list[str]]]:
    """The data elements of one ``S_`` element, positioned by its definition."""
    children = list(el)
    elements: list[list[list[str]]] = []
    k = 0
    for run in _runs(sdef.elements):
        first = run[0]
        assert isinstance(first, ElementDef)
        found, k = _take(children, k, first.xml_name)

        def value(x: etree._Element, d: ElementDef = first) -> list[str]:
            return _components(x, d.components) if d.components else [x.text or ""]

        if len(run) == 1:
            elements.append([value(x) for x in found] or [[""]])
        else:
            elements += [[value(found[n])] if n < len(found) else [[""]] for n in range(len(run))]
    if k < len(children):
        raise DataError(f"S_{sdef.tag}: unexpected element {_local(children[k])}")
    return elements


def segments_from_xml(root: etree._Element) -> Iterator[etree._Element]:
    """Every ``S_`` element in document order."""
    for el in root.iter():
        if isinstance(el.tag, str) and _local(el).startswith("S_"):
            yield el


def to_edifact(root: etree._Element, defs: Mapping[str, SegmentDef]) -> str:
    """EDIFACT text for an ``Interchange`` XML form, with a UNA that states its separators."""
    unb = next(segments_from_xml(root), None)
    version = 4
    if unb is not None:
        for d in unb.iter():
            if isinstance(d.tag, str) and _local(d) == "D_0002" and (d.text or "").isdigit():
                version = int(d.text or "4")
                break
    delims: Delimiters = DEFAULT_V4 if version >= 4 else DEFAULT_V3
    out = [delims.una()]
    for el in segments_from_xml(root):
        tag = _local(el)[2:]
        out.append(format_segment(tag, segment_from_xml(el, defs[tag]), delims))
    return "".join(out)
