"""XML submissions: hardened parsing, then XSD, then business rules (ISO Schematron).

Where it sits in the mail flow: MIG validation of every XML body part, and of the XML that
an EDIFACT submission converts to. A submitted document is untrusted: it is size-limited,
refused outright if it carries a DTD (so no entity expansion, external DTD or external
entity is ever attempted), and parsed with entity resolution, DTD loading and network
access off and libxml2's huge-tree limits on. Only then is it matched to a MIG type by its
root element and namespace.
"""

from __future__ import annotations

import re

from lxml import etree

from singlewindow.mig.errors import ErrorClass, MigError, Place
from singlewindow.mig.loader import MessageType

MAX_XML_BYTES = 50 * 1024 * 1024  # larger submissions are refused unread
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.I)
_SVRL = "{http://purl.oclc.org/dsdl/svrl}"


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
    if mt.schema.validate(root):
        return []
    return [MigError(ErrorClass.XSD, f"{mt.name}:XSD", e.message,
                     Place(xpath=e.path or None, line=e.line or None))
            for e in mt.schema.error_log]


def check_rules(mt: MessageType, root: etree._Element) -> list[MigError]:
    if mt.rules is None or mt.rules.validate(root):
        return []
    report = mt.rules.validation_report
    errors = []
    for failed in report.iter(f"{_SVRL}failed-assert"):
        location = failed.get("location", "/")
        text = " ".join("".join(failed.itertext()).split())
        rule = failed.get("id") or failed.get("test", "rule")
        errors.append(MigError(ErrorClass.RULE, f"{mt.name}:{rule}", text,
                               Place(xpath=location, line=_line(root, location))))
    return errors


def _line(root: etree._Element, location: str) -> int | None:
    try:
        found = root.getroottree().xpath(location)
    except etree.XPathError:
        return None
    if isinstance(found, list) and found and isinstance(found[0], etree._Element):
        line = found[0].sourceline
        return int(line) if line is not None else None
    return None
