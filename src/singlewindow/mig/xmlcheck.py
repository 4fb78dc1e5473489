"""XML submissions: hardened parsing, then XSD, then business rules (ISO Schematron).

Where it sits in the mail flow: MIG validation of every XML body part, and of the XML that
an EDIFACT submission converts to. A submitted document is untrusted: it is size-limited,
refused outright if it carries a DTD (so no entity expansion, external DTD or external
entity is ever attempted), and parsed with entity resolution, DTD loading and network
access off and libxml2's huge-tree limits on. Only then is it matched to a MIG type by its
root element and namespace.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from lxml import etree

from singlewindow.mig.errors import ErrorClass, MigError, Place
from singlewindow.mig.loader import MessageType, compile_schema

MAX_XML_BYTES = 50 * 1024 * 1024  # larger submissions are refused unread
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.I)
_SVRL = "{http://purl.oclc.org/dsdl/svrl}"
_XS = "http://www.w3.org/2001/XMLSchema"


def _parser() -> etree.XMLParser:
    # One parser per call: lxml parsers must not be shared between threads.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_comments=True)


def _unsafe(text: str, rule: str) -> MigError:
    return MigError(ErrorClass.UNSAFE, rule, text, Place(xpath="/", line=1))


def parse(payload: bytes, limit: int = MAX_XML_BYTES) -> tuple[etree._Element | None,
                                                                list[MigError]]:
    """Parse an untrusted document; a DTD of any kind is an error, never processed."""
    if len(payload) > limit:
        return None, [_unsafe(f"the XML document is {len(payload)} bytes, more than the "
                              f"{limit} allowed", "SW-XML-SIZE")]
    if _DTD.search(payload) or _DTD.search(_as_utf8(payload)):
        return None, [_unsafe("the XML document carries a DTD (DOCTYPE or ENTITY); DTDs, "
                              "entities and external references are not accepted",
                              "SW-XML-NO-DTD")]
    try:
        root = etree.fromstring(payload, _parser())
    except etree.XMLSyntaxError as exc:
        line = exc.position[0] if exc.position else None
        return None, [MigError(ErrorClass.XML, "XML-1.0", f"not well-formed XML: {exc.msg}",
                               Place(xpath="/", line=line))]
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        # Unreachable after the byte scan; kept so the refusal never depends on one check.
        return None, [_unsafe("the XML document carries a DTD", "SW-XML-NO-DTD")]
    return root, []


def _as_utf8(payload: bytes) -> bytes:
    """UTF-16/32 documents would hide a DOCTYPE from a byte scan; look at them as UTF-8."""
    if payload[:2] in (b"\xff\xfe", b"\xfe\xff") or payload[:4] in (
            b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00") or payload[:1] == b"\x00" or (
            payload[1:2] == b"\x00"):
        for enc in ("utf-32", "utf-16"):
            try:
                return payload.decode(enc).encode("utf-8", "replace")
            except UnicodeDecodeError:
                continue
    return b""


def root_key(root: etree._Element) -> tuple[str, str]:
    qname = etree.QName(root)
    return qname.namespace or "", qname.localname


def check_schema(mt: MessageType, root: etree._Element) -> list[MigError]:
    """The XSD errors of ``root``; safe to call from several threads at once."""
    with _schema_copy(mt) as schema:
        if schema.validate(root):
            return []
        return [MigError(ErrorClass.XSD, f"{mt.name}:XSD", e.message,
                         Place(xpath=e.path or None, line=e.line or None))
                for e in schema.error_log]


class _Copies:
    """Compiled copies of one type's XSD and rules that no thread is using at the moment."""

    def __init__(self, owner: etree.XMLSchema) -> None:
        self.owner = owner  # the type's own schema: holding it keeps its id() unique
        self.schemas: list[etree.XMLSchema] = []
        self.rules: list[etree.XSLT] = []
        self.lean: list[etree.XSLT] = []
        self.document_wide: bool | None = None


_copies_lock = threading.Lock()
_copies: dict[int, _Copies] = {}
_KEEP_TYPES = 64  # past this many types (reloads add new ones) the oldest copies are dropped


def _entry(mt: MessageType) -> _Copies:
    # Under _copies_lock.
    entry = _copies.get(id(mt.schema))
    if entry is None or entry.owner is not mt.schema:
        entry = _copies[id(mt.schema)] = _Copies(mt.schema)
        while len(_copies) > _KEEP_TYPES:
            del _copies[next(iter(_copies))]
    return entry


@contextmanager
def _schema_copy(mt: MessageType) -> Iterator[etree.XMLSchema]:
    """A compiled copy of ``mt``'s XSD that this thread alone uses until it gives it back.

    lxml's ``XMLSchema`` keeps the error log of its last validation on the object itself,
    so two threads validating with one object read each other's errors (a valid document
    shows the other thread's errors, an invalid one an empty log). libxml2 validates
    without the GIL, which is what lets XSD checks run in parallel at all; each concurrent
    check therefore gets its own copy, compiled once (a few ms) and then reused.
    """
    with _borrowed(mt, lambda e: e.schemas,
                   lambda: compile_schema(mt.schema_text, mt.folder / "schema.xsd")) as schema:
        yield schema


#: What a rule transform may do: read local files as the ISO skeleton's may (``document()``),
#: never write files, make directories or go to the network (EXSLT could).
_RULES_ACCESS = etree.XSLTAccessControl(read_network=False, write_file=False,
                                        create_dir=False, write_network=False)


@contextmanager
def _lean_copy(mt: MessageType) -> Iterator[etree.XSLT]:
    """The rules of ``mt`` as :mod:`rules`' lean XSLT, for this thread alone (a transform
    keeps its last error log on the object), compiled once per concurrent check."""
    lean = mt.rules_lean
    assert lean is not None
    with _borrowed(mt, lambda e: e.lean,
                   lambda: etree.XSLT(lean, access_control=_RULES_ACCESS)) as transform:
        yield transform


@contextmanager
def _rules_copy(mt: MessageType) -> Iterator[etree.XSLT]:
    """The compiled Schematron of ``mt`` (its validating XSLT) for this thread alone.

    ``isoschematron.Schematron`` keeps its last report on the object, as ``XMLSchema``
    keeps its error log, so concurrent checks (the transport validates in several
    threads) each get their own transform, made once from the type's compiled rules."""
    rules = mt.rules
    assert rules is not None
    with _borrowed(mt, lambda e: e.rules,
                   lambda: etree.XSLT(rules.validator_xslt)) as transform:
        yield transform


_T = TypeVar("_T")


@contextmanager
def _borrowed(mt: MessageType, pick: Callable[[_Copies], list[_T]],
              make: Callable[[], _T]) -> Iterator[_T]:
    """A free copy from ``pick(entry)`` (``make()`` one if none), given back afterwards."""
    with _copies_lock:
        entry = _entry(mt)
        free = pick(entry)
        copy = free.pop() if free else None
    if copy is None:
        copy = make()
    try:
        yield copy
    finally:
        with _copies_lock:
            if _copies.get(id(mt.schema)) is entry:
                free.append(copy)


def document_wide(mt: MessageType) -> bool:
    """Whether ``mt``'s XSD can only be checked on a whole document, not piecewise.

    True when it declares identity constraints (``xs:key``, ``xs:keyref``, ``xs:unique``)
    or uses ``xs:ID``/``xs:IDREF(S)`` types, whose scope may reach across messages, or when
    it includes or imports other schema documents, which this check does not read.
    """
    with _copies_lock:
        entry = _entry(mt)
        found = entry.document_wide
    if found is None:
        found = _spans_document(mt.schema_text)
        with _copies_lock:
            entry.document_wide = found
    return found


def _spans_document(schema_text: bytes) -> bool:
    doc = etree.fromstring(schema_text, etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False))
    wide = {f"{{{_XS}}}{n}" for n in ("key", "keyref", "unique", "include", "import",
                                      "redefine", "override")}
    for el in doc.iter(etree.Element):
        if el.tag in wide:
            return True
        for attr in ("type", "base", "itemType", "memberTypes"):
            for qname in (el.get(attr) or "").split():
                prefix, _, local = qname.rpartition(":")
                if local in ("ID", "IDREF", "IDREFS") and el.nsmap.get(prefix or None) == _XS:
                    return True
    return False


def check_rules(mt: MessageType, root: etree._Element) -> list[MigError]:
    """The business rules' findings (failed asserts, and reports, which lxml's Schematron
    also counts as invalid); safe to call from several threads at once."""
    return [error for _, error in rule_findings(mt, root)]


#: Where a rule finding is: the element its location names (``None`` if it names none)
#: and that location, to the :class:`Place` the finding carries.
Locate = Callable[[etree._Element | None, str], Place]


def rule_findings(mt: MessageType, root: etree._Element, locate: Locate | None = None,
                  limit: int | None = None, iso: bool = False) -> list[tuple[int, MigError]]:
    """:func:`check_rules`' findings, each with the number of its pattern (0, 1, ...).

    The Schematron report lists findings pattern by pattern, each pattern's in document
    order; the pattern numbers let findings of parts of a document checked apart be put
    back in that order. ``locate`` makes each finding's place (default: the location as
    XPath and the element's line); ``limit`` stops after that many findings. The rules
    run as :mod:`rules`' lean XSLT where the type has one; ``iso`` (for the tests that
    compare the two) runs the ISO skeleton's instead, which gives the same findings.
    """
    if mt.rules is None:
        return []
    if mt.rules_lean is not None and not iso:
        with _lean_copy(mt) as transform:
            report = transform(root)
        nodes: Iterator[tuple[int, etree._Element]] = (
            (int(node.get("p", "0")), node) for node in report.getroot())
    else:
        with _rules_copy(mt) as transform:
            report = transform(root)
        nodes = _svrl_findings(report.getroot())
    tree = root.getroottree()
    found: list[tuple[int, MigError]] = []
    for pattern, node in nodes:
        if limit is not None and len(found) >= limit:
            break
        location = node.get("location", "/")
        text = " ".join("".join(node.itertext()).split())
        rule = node.get("id") or node.get("test", "rule")
        element = _element_at(tree, location)
        if locate is not None:
            place = locate(element, location)
        else:
            line = element.sourceline if element is not None else None
            place = Place(xpath=location, line=int(line) if line is not None else None)
        found.append((pattern, MigError(ErrorClass.RULE, f"{mt.name}:{rule}", text, place)))
    return found


def _svrl_findings(report: etree._Element) -> Iterator[tuple[int, etree._Element]]:
    """The failed asserts and successful reports of an SVRL report, with the number of
    the pattern each belongs to (the ``active-pattern`` before it)."""
    pattern = -1
    for node in report.iterchildren(f"{_SVRL}active-pattern", f"{_SVRL}failed-assert",
                                    f"{_SVRL}successful-report"):
        if node.tag == f"{_SVRL}active-pattern":
            pattern += 1
        else:
            yield max(pattern, 0), node


#: One step of a location as the ISO Schematron skeleton writes it (full-path notation 1).
_STEP = re.compile(r"/\*\[local-name\(\)='([^']+)' and namespace-uri\(\)='([^']*)'\]"
                   r"(?:\[(\d+)\])?")


def _element_at(tree: etree._ElementTree, location: str) -> etree._Element | None:
    """The element a finding's location names; for an attribute or text, its element.

    A location of elements only, in the skeleton's notation, is walked step by step (the
    n-th child of that name: a loop in C), as XPath would take each step's predicates
    over all the siblings, once per finding: quadratic in a message of many persons."""
    walked = _walk(tree, location)
    if walked is not None:
        return walked
    try:
        found = tree.xpath(location)
    except etree.XPathError:
        return None
    if not isinstance(found, list) or not found:
        return None
    first = found[0]
    if isinstance(first, etree._Element):
        return first
    parent = getattr(first, "getparent", None)  # lxml's "smart" string results
    owner = parent() if parent is not None else None
    return owner if isinstance(owner, etree._Element) else None


def _walk(tree: etree._ElementTree, location: str) -> etree._Element | None:
    node: etree._Element | None = None
    at = 0
    for m in _STEP.finditer(location):
        if m.start() != at:
            return None
        at = m.end()
        # [n] counts the siblings of that local name, whatever their namespace
        tag = f"{{{m.group(2)}}}{m.group(1)}"
        index = int(m.group(3) or 1) - 1
        if node is None:
            root = tree.getroot()
            node = root if index == 0 else None
        else:
            node = next(itertools.islice(node.iterchildren(f"{{*}}{m.group(1)}"), index, None),
                        None)
        if node is None or node.tag != tag:
            return None
    return node if at == len(location) and at else None
