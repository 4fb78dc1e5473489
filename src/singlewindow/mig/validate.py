"""``validate(payload, content_type)``: the one call the transport makes per body part.

Where it sits in the mail flow: after the transport's technical and address checks pass.
An EDIFACT interchange is checked and converted (syntax, envelope counts, structure,
formats, code lists), its XML then checked like any XML submission (XSD, rules). The
:class:`Result` carries the message type, the error list for the control message, and the
XML to forward when there are no errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

from lxml import etree

from singlewindow.mig import xmlcheck
from singlewindow.mig.edifact.convert import Converter, MessageKey, Summary
from singlewindow.mig.edifact.message import EdifactProfile
from singlewindow.mig.edifact.syntax import CHUNK, chunked
from singlewindow.mig.errors import ErrorClass, MigError, Place
from singlewindow.mig.loader import MessageType, Registry, registry

EDIFACT_TYPES = frozenset({"application/edifact", "application/edi-consent", "application/edi"})
XML_TYPES = frozenset({"application/xml", "text/xml"})
SNIFF_TYPES = frozenset({"text/plain", "application/octet-stream"})


@dataclass(frozen=True, slots=True)
class Interchange:
    """What an EDIFACT submission said about itself; the CONTRL message answers it."""

    syntax_id: str
    version: int
    sender: tuple[str, ...]
    recipient: tuple[str, ...]
    reference: str
    messages: tuple[tuple[str, str], ...]  # (UNH 0062, "TYPE:D:03B:UN")


@dataclass(frozen=True, slots=True)
class Result:
    message_type: str | None
    syntax: str  # "edifact", "xml" or "unknown"
    errors: tuple[MigError, ...]
    xml: bytes | None = None
    interchange: Interchange | None = None
    namespace: str | None = field(default=None)

    @property
    def valid(self) -> bool:
        return not self.errors


def kind_of(payload: bytes, content_type: str | None) -> str:
    """"edifact", "xml" or "unknown": by Content-Type, or by the first bytes if it says little."""
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype in EDIFACT_TYPES:
        return "edifact"
    if ctype in XML_TYPES or ctype.endswith("+xml"):
        return "xml"
    if ctype and ctype not in SNIFF_TYPES:
        return "unknown"
    head = payload[:16].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:3] in (b"UNA", b"UNB"):
        return "edifact"
    if head[:1] == b"<" or payload[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "xml"
    return "unknown"


def validate(payload: bytes, content_type: str | None = None,
             reg: Registry | None = None) -> Result:
    """Validate one submitted body part against the MIG."""
    reg = reg or registry()
    kind = kind_of(payload, content_type)
    if kind == "edifact":
        return validate_edifact(payload, reg)
    if kind == "xml":
        return validate_xml(payload, reg)
    return Result(None, "unknown", (MigError(
        ErrorClass.TYPE, "SW-CONTENT-TYPE", f"content type {content_type or 'unknown'} is "
        "neither UN/EDIFACT nor XML"),))


def _lookup(reg: Registry) -> Callable[[MessageKey], tuple[EdifactProfile, str] | None]:
    def lookup(key: MessageKey) -> tuple[EdifactProfile, str] | None:
        mt = reg.by_unh.get(key)
        if mt is None or mt.edifact is None:
            return None
        return mt.edifact, mt.namespace
    return lookup


def validate_edifact(payload: bytes, reg: Registry) -> Result:
    errors: list[MigError] = []
    pieces: list[str] = []
    summary = Converter(_lookup(reg), reg.service, errors, pieces.append).run(chunked(payload))
    info = _interchange(summary)
    mt = reg.types.get(summary.profile.name) if summary.profile else None
    name = mt.name if mt else None
    if not summary.messages and not errors:
        errors.append(MigError(ErrorClass.SYNTAX, "ISO9735-1-7", "the interchange holds no "
                               "message", Place(tag="UNH"), 13))
    if errors or mt is None:
        return Result(name, "edifact", tuple(errors), None, info)
    xml = "".join(pieces).encode("utf-8")
    root = etree.fromstring(xml, etree.XMLParser(huge_tree=True, resolve_entities=False,
                                                 no_network=True))
    after = xmlcheck.check_schema(mt, root) or xmlcheck.check_rules(mt, root)
    return Result(name, "edifact", tuple(after), None if after else xml, info, mt.namespace)


def _interchange(summary: Summary) -> Interchange | None:
    if summary.header is None and summary.unb is None:
        return None
    unb = summary.unb
    return Interchange(
        unb.value(1, 1) if unb else "UNOA",
        int(unb.value(1, 2)) if unb and unb.value(1, 2).isdigit() else 4,
        tuple(unb.elements[1][0]) if unb and len(unb.elements) > 1 else (),
        tuple(unb.elements[2][0]) if unb and len(unb.elements) > 2 else (),
        unb.value(5) if unb else "",
        tuple(summary.messages))


def validate_xml(payload: bytes, reg: Registry) -> Result:
    root, errors = xmlcheck.parse(payload)
    if root is None:
        return Result(None, "xml", tuple(errors))
    ns, local = xmlcheck.root_key(root)
    mt: MessageType | None = reg.by_xml.get((ns, local))
    if mt is None:
        return Result(None, "xml", (MigError(
            ErrorClass.TYPE, "SW-MIG-TYPE", f"root element {{{ns}}}{local} is not a message "
            "type of the Single Window MIG", Place(xpath=f"/{local}", line=root.sourceline)),))
    errors = xmlcheck.check_schema(mt, root) or xmlcheck.check_rules(mt, root)
    return Result(mt.name, "xml", tuple(errors), None if errors else payload, None,
                  mt.namespace)


def read_chunks(src: BinaryIO, size: int = CHUNK) -> Iterable[bytes]:
    while chunk := src.read(size):
        yield chunk


def convert_stream(src: BinaryIO, out: BinaryIO, reg: Registry | None = None
                   ) -> tuple[str | None, list[MigError]]:
    """Convert an EDIFACT interchange to XML, writing as it reads (bounded memory).

    Each message is checked against the XSD as it is written; on errors the output is
    incomplete and must not be used. Returns the MIG type name and the errors.

    The XSD check of message *n* runs in a worker thread while message *n + 1* is
    converted (libxml2 parses and validates without the GIL); its errors are put where a
    check in line would have put them, and message *n + 1* is checked only if nothing
    before it failed, as in line. At most one message is in flight, so memory stays flat.
    """
    reg = reg or registry()
    errors: list[MigError] = []
    state: dict[str, MessageType] = {}
    inflight: list[tuple[int, Future[list[MigError]]]] = []

    def settle() -> None:
        for mark, future in inflight:
            errors[mark:mark] = future.result()
        inflight.clear()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mig-xsd") as pool:

        def sink(text: str) -> None:
            settle()
            if text.startswith('<Interchange xmlns="'):
                found = reg.by_xml.get((text.split('"')[1], "Interchange"))
                if found is not None:
                    state["type"] = found
            elif text.startswith("<M_") and not errors and "type" in state:
                inflight.append((len(errors), pool.submit(_check_message, text,
                                                          state["type"])))
            out.write(text.encode("utf-8"))

        conv = Converter(_lookup(reg), reg.service, errors, sink)
        try:
            summary = conv.run(read_chunks(src))
        finally:
            settle()
    return (summary.profile.name if summary.profile else None), errors


def _check_message(text: str, mt: MessageType) -> list[MigError]:
    # A message alone validates against the type's global M_ element.
    tag_end = text.index(">")
    doc = f'{text[:tag_end]} xmlns="{mt.namespace}"{text[tag_end:]}'
    root = etree.fromstring(doc.encode("utf-8"), etree.XMLParser(huge_tree=True))
    return xmlcheck.check_schema(mt, root)
