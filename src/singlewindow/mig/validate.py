"""``validate(payload, content_type)``: the one call the transport makes per body part.

Where it sits in the mail flow: after the transport's technical and address checks pass.
An EDIFACT interchange is checked and converted (syntax, envelope counts, structure,
formats, code lists), its XML then checked like any XML submission (XSD, rules); the XSD
check runs message by message in worker threads while the conversion goes on
(:func:`convert_checked`). The :class:`Result` carries the message type, the error list
for the control message, and the XML to forward when there are no errors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from lxml import etree

from singlewindow.mig import xmlcheck
from singlewindow.mig.edifact.convert import Converter, MessageKey, Summary
from singlewindow.mig.edifact.message import EdifactProfile
from singlewindow.mig.edifact.syntax import CHUNK, chunked
from singlewindow.mig.errors import ErrorClass, Findings, MigError, Place
from singlewindow.mig.loader import MessageType, Registry, registry

EDIFACT_TYPES = frozenset({"application/edifact", "application/edi-consent", "application/edi"})
XML_TYPES = frozenset({"application/xml", "text/xml"})
SNIFF_TYPES = frozenset({"text/plain", "application/octet-stream"})


class TooLarge(Exception):
    """The XML to forward would be larger than a copy may carry (``transport.copy_size_limit``
    in config.py); the conversion stopped as soon as it got there."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the XML reached {size} bytes, more than the {limit} a copy "
                         "may carry")
        self.size = size
        """Bytes (at least) of XML when it stopped."""
        self.limit = limit


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
             reg: Registry | None = None, *, limit: int | None = None) -> Result:
    """Validate one submitted body part against the MIG.

    ``limit``: the largest XML that may be forwarded, in bytes. An XML submission larger
    than that, or an interchange whose conversion gets there without an error, raises
    :class:`TooLarge` (the conversion stops there); an interchange with conversion errors
    is converted to the end for its error list, keeping none of the XML.
    """
    reg = reg or registry()
    kind = kind_of(payload, content_type)
    if kind == "edifact":
        return validate_edifact(payload, reg, limit=limit)
    if kind == "xml":
        return validate_xml(payload, reg, limit=limit)
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


def validate_edifact(payload: bytes, reg: Registry, *, limit: int | None = None) -> Result:
    """Convert and check an interchange (:func:`convert_checked`), then the business rules."""
    summary, errors, xml = convert_checked(payload, reg, limit=limit)
    info = _interchange(summary)
    mt = reg.types.get(summary.profile.name) if summary.profile else None
    name = mt.name if mt else None
    if mt is None or xml is None:
        # An XSD failure names the namespace (the XML was built); a conversion error not.
        schema_failed = bool(errors) and all(e.cls in (ErrorClass.XSD, ErrorClass.LIMIT)
                                             for e in errors)
        return Result(name, "edifact", tuple(errors), None, info,
                      mt.namespace if mt and schema_failed else None)
    if mt.rules is not None:
        # Business rules may relate any parts of the document: they see all of it.
        errors = xmlcheck.check_rules(mt, etree.fromstring(xml, _converted_parser()))
    return Result(name, "edifact", tuple(errors), None if errors else xml, info, mt.namespace)


def convert_checked(payload: bytes, reg: Registry, *, limit: int | None = None
                    ) -> tuple[Summary, list[MigError], bytes | None]:
    """Convert an EDIFACT interchange to XML and check that against the type's XSD.

    Returns the conversion's summary, the errors, and the UTF-8 XML of the whole
    interchange when there are none. The errors are the conversion's when it found any
    (the XSD's are then not reported, as before); otherwise those of the XSD, the same
    list, in the same order and with the same xpaths and lines, that checking the whole
    document at once gives. The XSD check runs message by message in worker threads
    while the conversion goes on (see :class:`_SchemaChecks`).

    Raises :class:`TooLarge` once the XML exceeds ``limit`` bytes while the conversion
    has found no error (then none of the XML is kept, and it goes on for the errors).
    """
    errors = Findings()
    with _SchemaChecks(reg, errors, keep=True, limit=limit) as checks:
        summary = Converter(checks.lookup, reg.service, errors, checks.piece,
                            supported=reg.supported).run(chunked(payload))
        if not summary.messages and not errors:
            errors.append(MigError(ErrorClass.SYNTAX, "ISO9735-1-7", "the interchange holds "
                                   "no message", Place(tag="UNH"), 13))
        found = checks.finish()
    if errors or checks.mt is None:
        return summary, errors, None
    if found:
        return summary, Findings(found), None  # XSD errors: each once, at most MAX_FINDINGS
    xml = checks.xml()
    if limit is not None and len(xml) > limit:  # characters counted so far, bytes now
        raise TooLarge(len(xml), limit)
    return summary, [], xml


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


def validate_xml(payload: bytes, reg: Registry, *, limit: int | None = None) -> Result:
    if limit is not None and len(payload) > limit:
        raise TooLarge(len(payload), limit)
    root, errors = xmlcheck.parse(payload)
    if root is None:
        return Result(None, "xml", tuple(errors))
    ns, local = xmlcheck.root_key(root)
    mt: MessageType | None = reg.by_xml.get((ns, local))
    if mt is None:
        return Result(None, "xml", (MigError(
            ErrorClass.TYPE, "SW-MIG-TYPE", f"root element {{{ns}}}{local} is not a message "
            "type of the Single Window MIG", Place(xpath=f"/{local}", line=root.sourceline)),))
    # XSD errors each once, at most MAX_FINDINGS of them (issue 11), as for EDIFACT.
    errors = Findings(xmlcheck.check_schema(mt, root)) or xmlcheck.check_rules(mt, root)
    return Result(mt.name, "xml", tuple(errors), None if errors else payload, None,
                  mt.namespace)


def read_chunks(src: BinaryIO, size: int = CHUNK) -> Iterable[bytes]:
    while chunk := src.read(size):
        yield chunk


def convert_stream(src: BinaryIO, out: BinaryIO, reg: Registry | None = None
                   ) -> tuple[str | None, list[MigError]]:
    """Convert an EDIFACT interchange to XML, writing as it reads (bounded memory).

    The XML is checked against the XSD as it is written, message by message in worker
    threads (see :class:`_SchemaChecks`); on errors the output is incomplete or invalid and
    must not be used. Returns the MIG type name and the errors: the conversion's if it
    found any, else the XSD's, as :func:`convert_checked` reports them.
    """
    reg = reg or registry()
    errors = Findings()
    with _SchemaChecks(reg, errors, keep=False) as checks:

        def sink(text: str) -> None:
            out.write(text.encode("utf-8"))
            checks.piece(text)

        summary = Converter(checks.lookup, reg.service, errors, sink,
                            supported=reg.supported).run(read_chunks(src))
        found = checks.finish()
    return (summary.profile.name if summary.profile else None), errors or Findings(found)


#: Messages go to the XSD workers in batches of at least this many characters of XML.
BATCH = 64 * 1024


def _converted_parser() -> etree.XMLParser:
    # A new parser per call and thread: lxml parsers must not be shared between threads.
    # The XML is this module's own output; huge_tree lets large interchanges through.
    return etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True)


def _check_messages(batch: list[tuple[int, str]], mt: MessageType
                    ) -> list[tuple[int, list[MigError]]]:
    """:func:`_check_message` for each (index, message) of ``batch``: those with errors."""
    return [(index, found) for index, text in batch if (found := _check_message(text, mt))]


def _check_message(text: str, mt: MessageType) -> list[MigError]:
    """The XSD errors of one converted message (``<M_...>...</M_...>``) alone, checked
    against the type's global ``M_`` element; its xpaths start at the message (``/*``)."""
    tag_end = text.index(">")
    doc = f'{text[:tag_end]} xmlns="{mt.namespace}"{text[tag_end:]}'
    return xmlcheck.check_schema(mt, etree.fromstring(doc.encode("utf-8"),
                                                      _converted_parser()))


class _SchemaChecks:
    """The XSD check of an interchange as it is converted: message by message, in threads.

    The Converter's sink gets the XML in pieces: ``<Interchange xmlns="...">``, envelope
    pieces (``<S_UNB>...</S_UNB>``, ``<G_UNG><S_UNG>...</S_UNG>``, ``<S_UNE>...</S_UNE>
    </G_UNG>``, ``<S_UNZ>...</S_UNZ></Interchange>``) and one piece per message, starting
    with ``<M_``. Each message is parsed as a document of its own and checked against the
    type's global ``M_`` element in a worker thread; libxml2 parses and validates without
    the GIL, so the conversion goes on in the calling thread. Messages go to the workers
    in batches of at least :data:`BATCH` characters (one PAXLST message of 200 persons is
    a batch), as handing a few kB to a thread costs more than checking them; a batch not
    yet full at the end is checked in the calling thread, so a small interchange starts no
    thread. At most ``workers + 1`` batches are in flight, which keeps memory flat for any
    size of interchange.

    The envelope is checked at the end, in an *envelope document*: the envelope pieces with
    every message replaced by an empty element of its name (``<M_PAXLST/>``). It has the
    whole document's structure above the messages, so the XSD judges the envelope and the
    number and places of messages just as in the whole document, at the same xpaths. Its
    errors are in the whole check's order; among them, at each placeholder that libxml2
    went into, are the errors an empty message has (those of ``<M_PAXLST/>`` alone). There,
    and only there, go that message's own errors, their xpaths moved under the message's
    place: where the whole check would have reported them, and not for a message the
    whole check skips (libxml2 checks neither an element that is not expected nor its
    later siblings). Lines need no moving: converted XML is one line (the repertoires
    exclude control characters; with ``keep``, a piece holding a line break makes the
    check go whole-document).

    With ``keep`` the pieces are kept (:meth:`xml`), at most ``limit`` characters of them
    (:class:`TooLarge` beyond) and none once the conversion found an error (no XML will be
    forwarded then); and the check falls back to the whole
    document when per-message checking could differ from it: the XSD has constraints
    that span the document (:func:`xmlcheck.document_wide`), or an empty message is valid
    (so the placeholders cannot show which messages libxml2 went into).
    """

    def __init__(self, reg: Registry, errors: list[MigError], keep: bool,
                 limit: int | None = None) -> None:
        self.reg = reg
        self.conversion = errors  # the Converter's list; once not empty the XSD is moot
        self.keep = keep
        self.limit = limit
        self.kept = 0  # characters in pieces
        self.pieces: list[str] = []
        self.document: bytes | None = None
        self.workers = min(2, os.cpu_count() or 1)
        self.pool: ThreadPoolExecutor | None = None
        self.mt: MessageType | None = None
        self.whole = False  # check the whole document at the end instead
        self.envelope: list[str] = []
        self.empty: dict[str, set[str]] = {}  # message tag -> errors of it empty, alone
        self.count = 0  # messages seen
        self.batch: list[tuple[int, str]] = []  # (message index, its XML)
        self.batched = 0  # characters in the batch
        self.inflight: set[Future[list[tuple[int, list[MigError]]]]] = set()
        self.found: dict[int, list[MigError]] = {}  # message index -> its own XSD errors

    def __enter__(self) -> _SchemaChecks:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def piece(self, text: str) -> None:
        if self.keep and self.conversion:
            self.pieces.clear()  # no XML is forwarded now; only the errors count
        elif self.keep:
            self.kept += len(text)
            if self.limit is not None and self.kept > self.limit:
                raise TooLarge(self.kept, self.limit)
            self.pieces.append(text)
        if not text.startswith("<M_"):
            self.envelope.append(text)
            return
        tag_end = text.index(">")
        self.envelope.append(f"{text[:tag_end]}/>")
        index, self.count = self.count, self.count + 1
        if self.whole or self.conversion or self.mt is None:
            return
        tag = text[1:tag_end]
        if tag not in self.empty:
            self.empty[tag] = self.empty_errors(tag, self.mt)
            if self.keep and (not self.empty[tag] or xmlcheck.document_wide(self.mt)):
                self.whole = True
                return
        if self.keep and ("\n" in text or "\r" in text):
            self.whole = True
            return
        self.batch.append((index, text))
        self.batched += len(text)
        if self.batched >= BATCH:
            self.submit()

    def lookup(self, key: MessageKey) -> tuple[EdifactProfile, str] | None:
        """The Converter's message type lookup; the first type it finds is the document's."""
        mt = self.reg.by_unh.get(key)
        if mt is None or mt.edifact is None:
            return None
        if self.mt is None:
            self.mt = mt
        return mt.edifact, mt.namespace

    @staticmethod
    def empty_errors(tag: str, mt: MessageType) -> set[str]:
        doc = etree.fromstring(f'<{tag} xmlns="{mt.namespace}"/>'.encode(), _converted_parser())
        return {e.text for e in xmlcheck.check_schema(mt, doc)}

    def submit(self) -> None:
        """Hand the batch to a worker, once fewer than ``workers + 1`` are in flight."""
        assert self.mt is not None
        while len(self.inflight) > self.workers:
            done, _ = wait(self.inflight, return_when=FIRST_COMPLETED)
            for future in done:
                self.collect(future)
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="mig-xsd")
        self.inflight.add(self.pool.submit(_check_messages, self.batch, self.mt))
        self.batch, self.batched = [], 0

    def collect(self, future: Future[list[tuple[int, list[MigError]]]]) -> None:
        self.inflight.discard(future)
        self.found.update(future.result())

    def finish(self) -> list[MigError]:
        """The XSD errors of the whole interchange; none if the conversion found any."""
        mt = self.mt
        if self.conversion or mt is None:
            for future in self.inflight:
                future.cancel()
            return []
        if self.whole:
            return xmlcheck.check_schema(mt, etree.fromstring(self.xml(), _converted_parser()))
        if self.batch and self.pool is not None and len(self.inflight) <= self.workers:
            self.submit()  # and while the workers finish, this thread does the rest
        self.found.update(_check_messages(self.batch, mt))
        envelope = etree.fromstring("".join(self.envelope).encode("utf-8"),
                                    _converted_parser())
        errors = xmlcheck.check_schema(mt, envelope)
        if self.keep:
            self.xml()  # joined here, while the workers finish
        for future in list(self.inflight):
            self.collect(future)
        tags = [f"{{{mt.namespace}}}{tag}" for tag in self.empty]
        tree = envelope.getroottree()
        places = [tree.getpath(e) for e in envelope.iter(*tags)] if tags else []
        if len(places) != self.count:
            raise RuntimeError(f"{len(places)} message places for {self.count} messages")
        where = {xpath: index for index, xpath in enumerate(places)}
        own = set().union(*self.empty.values())
        result: list[MigError] = []
        entered: set[int] = set()
        for error in errors:
            index = where.get(error.place.xpath or "")
            if index is None or error.text not in own:
                result.append(error)
            elif index not in entered:
                entered.add(index)
                result += [_moved(e, places[index]) for e in self.found.get(index, ())]
        if not all(self.empty.values()):  # an empty message is valid: no sign of entering
            for index in sorted(self.found.keys() - entered):
                result += [_moved(e, places[index]) for e in self.found[index]]
        return result

    def xml(self) -> bytes:
        """The whole document (with ``keep``)."""
        if self.document is None:
            self.document = "".join(self.pieces).encode("utf-8")
        return self.document


def _moved(error: MigError, place: str) -> MigError:
    """An error of a message checked alone, at its xpath in the whole document."""
    xpath = error.place.xpath
    if xpath is None or not xpath.startswith("/*"):
        return error
    return replace(error, place=replace(error.place, xpath=place + xpath[2:]))
