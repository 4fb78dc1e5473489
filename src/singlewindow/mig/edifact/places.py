"""Where an element of the converted XML came from in the EDIFACT interchange.

Where it sits in the mail flow: after conversion, when a business rule (Schematron, run on
the XML form) fails on an EDIFACT submission. The sender knows its interchange, not our
XML, so the control message names the EDIFACT position: the message (UNH 0062), the
segment's number in the message (UNH = 1, as CONTRL's UCS 0096 counts) and tag, and the
data element and component positions (CONTRL's S011).

Nothing needs to be recorded during conversion: rules run only on a message that converted
without error, and then every segment of it became one ``S_`` element, in order (see
``data/README.md``, "The XML form of an EDIFACT type"). So a segment's number is one plus
the number of ``S_`` elements before it in its ``M_`` element, and its data elements are
the ``C_``/``D_`` children in the order of the segment's definition. One thing the XML does
not keep is an empty position between two filled positions of the same data element
(NAD's party-name lines ``C080`` 3036); such a value is named at the first free position
of its data element, which is where it stands unless the sender left gaps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from lxml import etree

from singlewindow.mig.errors import Place
from singlewindow.mig.model import ComponentDef, ElementDef, SegmentDef


def _local(el: etree._Element) -> str:
    tag = el.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _segments(node: etree._Element) -> Iterator[etree._Element]:
    """The ``S_`` elements of a message or group, in document order (groups opened)."""
    for child in node:
        name = _local(child)
        if name.startswith("S_"):
            yield child
        elif name.startswith("G_"):
            yield from _segments(child)


class SegmentNumbers:
    """Segment numbers of the messages of one document, each message numbered once (the
    first time one of its segments is asked for), so that placing many findings in a
    large message costs one walk of it, not one per finding."""

    def __init__(self) -> None:
        self.numbers: dict[etree._Element, dict[etree._Element, int]] = {}

    def __call__(self, message: etree._Element, segment: etree._Element) -> int:
        numbers = self.numbers.get(message)
        if numbers is None:
            numbers = self.numbers[message] = {s: n for n, s in enumerate(_segments(message), 1)}
        return numbers.get(segment, len(numbers) + 1)


def edifact_place(el: etree._Element | None, segments: Mapping[str, SegmentDef],
                  xpath: str | None = None, numbers: SegmentNumbers | None = None) -> Place:
    """The EDIFACT position of ``el`` in converted XML; ``xpath`` is kept as given.

    A message (``M_``) is named by its reference alone; a segment group (``G_``) by its
    first segment, which opened it; an element inside a segment by its segment and the
    data element (and component) position. Outside any message (``S_UNB``, ``S_UNZ``,
    ``G_UNG``...) the service segment is named by its tag. ``numbers`` numbers the
    segments (pass one for all the places of a document).
    """
    if el is None:
        return Place(xpath=xpath)
    chain: list[etree._Element] = []  # el and its ancestors up to the message
    message: etree._Element | None = None
    node: etree._Element | None = el
    while node is not None:
        if _local(node).startswith("M_"):
            message = node
            break
        chain.append(node)
        node = node.getparent()
    segment = next((n for n in chain if _local(n).startswith("S_")), None)
    if segment is None and chain and _local(chain[0]).startswith("G_"):
        segment = next(_segments(chain[0]), None)  # a group: the segment that opened it
        chain = [segment] if segment is not None else chain
    ref = None
    if message is not None:
        ns = etree.QName(message).namespace
        ref = message.findtext(f"{{{ns}}}S_UNH/{{{ns}}}D_0062" if ns else "S_UNH/D_0062")
    if segment is None:
        return Place(message=ref, xpath=xpath)
    tag = _local(segment)[2:]
    inner = chain[:chain.index(segment)]  # below the segment: [D_] or [C_] or [D_, C_]
    element = component = None
    sdef = segments.get(tag)
    if inner and sdef is not None:
        top = inner[-1]
        element = _position(segment, top, sdef.elements)
        if len(inner) > 1 and element is not None:
            comps = sdef.elements[element - 1].components
            component = _position(top, inner[-2], comps)
    if message is None:  # a service segment of the envelope
        return Place(tag=tag, element=element, component=component, xpath=xpath)
    number = (numbers or SegmentNumbers())(message, segment)
    return Place(segment=number, tag=tag, element=element, component=component,
                 message=ref, xpath=xpath)


def _position(parent: etree._Element, child: etree._Element,
              defs: tuple[ElementDef, ...] | tuple[ComponentDef, ...]) -> int | None:
    """1-based position in ``defs`` of ``child``: the children of ``parent`` are matched to
    the definitions in order, each at the next position with its id; a repeated element
    (syntax 4 repetition, ``repeat`` > 1) stays at its position."""
    at = -1
    previous = ""
    for node in parent:
        if not isinstance(node.tag, str):
            continue
        ident = _local(node)[2:]
        here = defs[at] if at >= 0 else None
        if not (ident == previous and isinstance(here, ElementDef) and here.repeat > 1):
            at = next((i for i in range(at + 1, len(defs)) if defs[i].id == ident), -1)
            if at < 0:
                return None
        if node is child:
            return at + 1
        previous = ident
    return None
