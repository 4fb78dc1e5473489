"""``validate(payload, content_type)``: the one call the transport makes per body part.

Where it sits in the mail flow: after the transport's technical and address checks pass.
An EDIFACT interchange is checked and converted (syntax, envelope counts, structure,
formats, code lists), its XML then checked like any XML submission (XSD, rules); the XSD
check runs message by message in worker threads while the conversion goes on
(:func:`convert_checked`), and so do the business rules of a type that declares them
message-local (``[rules] message_local``), so memory follows the largest message, not
the interchange. A rule that fails on EDIFACT names the EDIFACT position (message,
segment, element). The :class:`Result` carries the message type, the error list for the
control message, and the XML to forward when there are no errors.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from lxml import etree

from singlewindow.mig import xmlcheck
from singlewindow.mig.edifact.convert import Converter, MessageKey, Summary
from singlewindow.mig.edifact.message import EdifactProfile
from singlewindow.mig.edifact.places import SegmentNumbers, edifact_place
from singlewindow.mig.edifact.syntax import CHUNK, Segment, chunked
from singlewindow.mig.errors import MAX_APPENDS, ErrorClass, Findings, MigError, Place
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
class FunctionalGroup:
    """A functional group of an interchange (UNG ... UNE), as CONTRL's UCF answers it."""

    reference: str  # UNG 0048
    sender: tuple[str, ...]  # UNG S006 application sender
    recipient: tuple[str, ...]  # UNG S007 application recipient
    first: int  # UNG's position in the interchange
    last: int | None  # UNE's, None when the group has none


@dataclass(frozen=True, slots=True)
class Interchange:
    """What an EDIFACT submission said about itself; the CONTRL message answers it."""

    syntax_id: str
    version: int
    sender: tuple[str, ...]
    recipient: tuple[str, ...]
    reference: str
    messages: tuple[tuple[str, str], ...]  # (UNH 0062, "TYPE:D:03B:UN")
    groups: tuple[FunctionalGroup, ...] = ()
    message_groups: tuple[int | None, ...] = ()  # per message: its group's index in groups


@dataclass(frozen=True, slots=True)
class Result:
    message_type: str | None
    syntax: str  # "edifact", "xml" or "unknown"
    errors: tuple[MigError, ...]
    xml: bytes | None = None
    interchange: Interchange | None = None
    namespace: str | None = field(default=None)
    xml_file: BinaryIO | None = None
    """With ``spool``: the XML to forward in a temporary file, in place of ``xml``."""

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
             reg: Registry | None = None, *, limit: int | None = None,
             spool: int | None = None) -> Result:
    """Validate one submitted body part against the MIG.

    ``limit``: the largest XML that may be forwarded, in bytes. An XML submission larger
    than that, or an interchange whose conversion gets there without an error, raises
    :class:`TooLarge` (the conversion stops there); an interchange with conversion errors
    is converted to the end for its error list, keeping none of the XML.

    ``spool`` (issue 13): the XML converted from EDIFACT goes to a temporary file, kept
    in memory up to ``spool`` bytes and on disk beyond, handed over as ``xml_file`` (the
    caller closes it); ``xml`` is then None. An XML submission is forwarded from
    ``payload`` itself, as ``xml``.
    """
    reg = reg or registry()
    kind = kind_of(payload, content_type)
    if kind == "edifact":
        return validate_edifact(payload, reg, limit=limit, spool=spool)
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


def validate_edifact(payload: bytes, reg: Registry, *, limit: int | None = None,
                     spool: int | None = None) -> Result:
    """Convert and check an interchange (:func:`convert_checked`), then the business rules:
    message by message during the conversion when the type declares its rules
    message-local (``[rules] message_local``), else on the whole document at the end."""
    summary, errors, xml, ruled = _convert(payload, reg, limit, rules=True, spool=spool)
    info = _interchange(summary)
    mt = reg.types.get(summary.profile.name) if summary.profile else None
    name = mt.name if mt else None
    if mt is None or xml is None:
        # An XSD failure names the namespace (the XML was built); a conversion error not.
        schema_failed = bool(errors) and all(e.cls in (ErrorClass.XSD, ErrorClass.LIMIT)
                                             for e in errors)
        return Result(name, "edifact", tuple(errors), None, info,
                      mt.namespace if mt and schema_failed else None)
    if ruled is not None:
        errors = ruled
    elif mt.rules is not None:
        # Rules that may relate any parts of the document see all of it.
        root = _root(xml)
        found = xmlcheck.rule_findings(mt, root, _locator(mt), RULE_HITS + 1)
        del root
        errors = _rule_list([e for _, e in found])
    if errors:
        if not isinstance(xml, bytes):
            xml.close()  # nothing is forwarded
        return Result(name, "edifact", tuple(errors), None, info, mt.namespace)
    if isinstance(xml, bytes):
        return Result(name, "edifact", (), xml, info, mt.namespace)
    return Result(name, "edifact", (), None, info, mt.namespace, xml_file=xml)


def _root(xml: bytes | BinaryIO) -> etree._Element:
    if isinstance(xml, bytes):
        return etree.fromstring(xml, _converted_parser())
    xml.seek(0)
    root = etree.parse(xml, _converted_parser()).getroot()
    xml.seek(0)
    return root


#: Business-rule findings read per interchange, repeats included; past this the list says
#: the check stopped. The list itself is a :class:`Findings`: each finding once (the same
#: rule failing with the same text in one message is one finding with its count and first
#: places), at most ``MAX_FINDINGS`` of them, as the other checks' findings.
RULE_HITS = MAX_APPENDS


def _locator(mt: MessageType) -> xmlcheck.Locate:
    """Places of rule findings on converted EDIFACT: the EDIFACT position (message,
    segment number and tag, element and component) and the XPath into the XML form, in
    the short form XSD errors have (``/*/*[3]/*[12]``, lxml's ``getpath``)."""
    assert mt.edifact is not None
    segments = mt.edifact.segments
    numbers = SegmentNumbers()  # one locator places the findings of one document

    def locate(element: etree._Element | None, location: str) -> Place:
        xpath = element.getroottree().getpath(element) if element is not None else location
        return edifact_place(element, segments, xpath, numbers)
    return locate


def _rule_list(found: list[MigError]) -> Findings:
    """The business rules' findings in the report's order, as the list a control message
    shows (of the first :data:`RULE_HITS`, and saying so when there were more)."""
    listed = Findings(found[:RULE_HITS])
    if len(found) > RULE_HITS:
        listed.stop("reading the business rules' findings")
    return listed


def convert_checked(payload: bytes, reg: Registry, *, limit: int | None = None
                    ) -> tuple[Summary, list[MigError], bytes | None]:
    """Convert an EDIFACT interchange to XML and check that against the type's XSD.

    Returns the conversion's summary, the errors, and the UTF-8 XML of the whole
    interchange when there are none. The errors are the conversion's when it found any
    (the XSD's are then not reported, as before); otherwise those of the XSD, the same
    list, in the same order and with the same xpaths and lines, that checking the whole
    document at once gives. The XSD check runs message by message in worker threads
    while the conversion goes on (see :class:`_SchemaChecks`); for a type whose XSD is
    generated from its EDIFACT data only the envelope is checked, as the messages were
    held to the same data by the conversion (:func:`_check_message`).

    Raises :class:`TooLarge` once the XML exceeds ``limit`` bytes while the conversion
    has found no error (then none of the XML is kept, and it goes on for the errors).
    """
    summary, errors, xml, _ = _convert(payload, reg, limit, rules=False)
    assert xml is None or isinstance(xml, bytes)
    return summary, errors, xml


def _convert(payload: bytes, reg: Registry, limit: int | None, rules: bool,
             spool: int | None = None
             ) -> tuple[Summary, list[MigError], bytes | BinaryIO | None,
                        list[MigError] | None]:
    """:func:`convert_checked`, and with ``rules`` the business-rule findings when they
    ran message by message (``None`` when they did not: they are then left to the
    caller, on the whole document); with ``spool`` the XML in a temporary file."""
    errors = Findings()
    with _SchemaChecks(reg, errors, keep=True, limit=limit, rules=rules,
                       spool=spool) as checks:
        summary = Converter(checks.lookup, reg.service, errors, checks.piece,
                            supported=reg.supported).run(chunked(payload))
        if not summary.messages and not errors:
            errors.append(MigError(ErrorClass.SYNTAX, "ISO9735-1-7", "the interchange holds "
                                   "no message", Place(tag="UNH"), 13))
        found = checks.finish()
    if errors or checks.mt is None:
        return summary, errors, None, None
    if found:
        # XSD errors: each once, at most MAX_FINDINGS
        return summary, Findings(found), None, None
    if limit is not None and checks.kept > limit:
        raise TooLarge(checks.kept, limit)
    return summary, [], checks.xml_file() if spool is not None else checks.xml(), \
        checks.rule_errors


def _interchange(summary: Summary) -> Interchange | None:
    if summary.header is None and summary.unb is None:
        return None
    unb = summary.unb
    return Interchange(
        unb.value(1, 1) if unb else "UNOA",
        int(unb.value(1, 2)) if unb and unb.value(1, 2).isdigit() else 4,
        _party(unb, 1) if unb else (),
        _party(unb, 2) if unb else (),
        unb.value(5) if unb else "",
        tuple(summary.messages),
        tuple(FunctionalGroup(ung.value(5), _party(ung, 1), _party(ung, 2), ung.index, end)
              for ung, end in zip(summary.group_headers, summary.group_ends, strict=True)),
        tuple(summary.message_groups))


def _party(seg: Segment, n: int) -> tuple[str, ...]:
    """The components of the party composite at element ``n`` (UNB S002/S003, UNG
    S006/S007), or none."""
    return tuple(seg.elements[n][0]) if len(seg.elements) > n else ()


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


#: One message's rule findings: (pattern number, finding), in the order of its report.
RuleHits = list[tuple[int, MigError]]


def _check_messages(batch: list[tuple[int, str]], mt: MessageType, rules: bool = False
                    ) -> list[tuple[int, list[MigError], RuleHits]]:
    """:func:`_check_message` for each (index, message) of ``batch``: those with XSD
    errors or (with ``rules``) rule findings."""
    found = []
    for index, text in batch:
        xsd, hits = _check_message(text, mt, rules)
        if xsd or hits:
            found.append((index, xsd, hits))
    return found


def _check_message(text: str, mt: MessageType, rules: bool = False
                   ) -> tuple[list[MigError], RuleHits]:
    """The XSD errors of one converted message (``<M_...>...</M_...>``) alone, checked
    against the type's global ``M_`` element; its xpaths start at the message (``/*``).
    With ``rules`` and no XSD error, also the business rules' findings on the message
    alone (at most :data:`RULE_HITS` + 1), their places EDIFACT positions and
    their locations starting at the message.

    A generated XSD (``mt.schema_generated``) is not checked here: it is made from the
    same MIG data the converter has just enforced on the message (segment table and
    occurrences, formats and lengths, code lists), so it cannot fail on it; that it does
    not is held by the tests (``test_rules.py``: seeded mutations), and it cost ~17 % of
    the path with the rules (bench/README.md). An operator's own XSD may say more, and
    is checked; so is the envelope, and every XML a company submits."""
    if mt.schema_generated and not rules:
        return [], []
    tag_end = text.index(">")
    doc = f'{text[:tag_end]} xmlns="{mt.namespace}"{text[tag_end:]}'
    root = etree.fromstring(doc.encode("utf-8"), _converted_parser())
    xsd = [] if mt.schema_generated else xmlcheck.check_schema(mt, root)
    if xsd or not rules:
        return xsd, []
    return [], xmlcheck.rule_findings(mt, root, _locator(mt), RULE_HITS + 1)


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

    With ``rules`` (and ``keep``), a type whose rules are message-local has them run on each
    message in the same worker, on the tree its XSD check parsed (see :meth:`rules_found`);
    so no step ever holds more than a batch of messages as trees.

    With ``keep`` the XML is kept (:meth:`xml`) as UTF-8 in one growing buffer, at most
    ``limit`` bytes of it (:class:`TooLarge` beyond) and none once the conversion found an
    error (no XML will be forwarded then); and the check falls back to the whole
    document when per-message checking could differ from it: the XSD has constraints
    that span the document (:func:`xmlcheck.document_wide`), or an empty message is valid
    (so the placeholders cannot show which messages libxml2 went into).
    """

    def __init__(self, reg: Registry, errors: list[MigError], keep: bool,
                 limit: int | None = None, rules: bool = False,
                 spool: int | None = None) -> None:
        self.reg = reg
        self.conversion = errors  # the Converter's list; once not empty the XSD is moot
        self.keep = keep
        self.limit = limit
        self.kept = 0  # bytes in buffer
        # One buffer, not a list of pieces joined at the end: the XML is held once; with
        # ``spool`` a temporary file, on disk beyond ``spool`` bytes (issue 13).
        self.spool = spool
        self.buffer: BinaryIO = self.new_buffer()
        self.document: bytes | None = None
        self.rules = rules  # run message-local rules per message
        self.rules_local = False  # ... and the type has such rules
        self.rules_skipped = False  # a message went unchecked by them (an XSD error came)
        #: (pattern, message index, order in its report, finding): the first ones only
        self.hits: list[tuple[int, int, int, MigError]] = []
        #: the rule findings of the whole interchange, when they ran message by message
        self.rule_errors: list[MigError] | None = None
        self.workers = min(2, os.cpu_count() or 1)
        self.pool: ThreadPoolExecutor | None = None
        self.mt: MessageType | None = None
        self.whole = False  # check the whole document at the end instead
        self.envelope: list[str] = []
        self.empty: dict[str, set[str]] = {}  # message tag -> errors of it empty, alone
        self.count = 0  # messages seen
        self.batch: list[tuple[int, str]] = []  # (message index, its XML)
        self.batched = 0  # characters in the batch
        self.inflight: set[Future[list[tuple[int, list[MigError], RuleHits]]]] = set()
        self.found: dict[int, list[MigError]] = {}  # message index -> its own XSD errors

    def __enter__(self) -> _SchemaChecks:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def piece(self, text: str) -> None:
        if self.keep and self.conversion:
            if self.kept:  # no XML is forwarded now; only the errors count
                self.buffer.close()
                self.buffer, self.kept = io.BytesIO(), 0
        elif self.keep:
            data = text.encode("utf-8")
            self.kept += len(data)
            if self.limit is not None and self.kept > self.limit:
                raise TooLarge(self.kept, self.limit)
            self.buffer.write(data)
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
            self.rules_local = (self.rules and self.keep and mt.rules is not None
                                and mt.rules_message_local)
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
        self.inflight.add(self.pool.submit(_check_messages, self.batch, self.mt,
                                           rules=self.with_rules()))
        self.batch, self.batched = [], 0

    def with_rules(self) -> bool:
        """Whether the next batch has the rules run, too: not once an error is known."""
        if not self.rules_local:
            return False
        if self.found or self.conversion:
            self.rules_skipped = True
            return False
        return True

    def collect(self, future: Future[list[tuple[int, list[MigError], RuleHits]]]) -> None:
        self.inflight.discard(future)
        self.record(future.result())

    def record(self, results: list[tuple[int, list[MigError], RuleHits]]) -> None:
        for index, xsd, hits in results:
            if xsd:
                self.found[index] = xsd
            self.hits += [(pattern, index, seq, e) for seq, (pattern, e) in enumerate(hits)]
        if len(self.hits) > 2 * RULE_HITS:
            # Only the first findings are reported: keep those, in the order of the report.
            self.hits.sort(key=lambda hit: hit[:3])
            del self.hits[RULE_HITS + 1:]

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
        self.record(_check_messages(self.batch, mt, rules=self.with_rules()))
        envelope = etree.fromstring("".join(self.envelope).encode("utf-8"),
                                    _converted_parser())
        errors = xmlcheck.check_schema(mt, envelope)
        for future in list(self.inflight):
            self.collect(future)
        tags = [f"{{{mt.namespace}}}{tag}" for tag in self.empty]
        tree = envelope.getroottree()
        spots = list(envelope.iter(*tags)) if tags else []
        places = [tree.getpath(e) for e in spots]
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
        if not result and self.rules_local and not self.rules_skipped:
            self.rule_errors = self.rules_found(mt, envelope, spots, places)
        return result

    def rules_found(self, mt: MessageType, envelope: etree._Element,
                    spots: list[etree._Element], places: list[str]) -> list[MigError]:
        """The rule findings of the whole interchange, as one run on the whole document
        gives them, from the runs on each message and one on the envelope document.

        A Schematron report lists pattern after pattern, each in document order. Message-
        local rules (``[rules] message_local``) look only inside one message, or only at
        the envelope; so the findings of a message's run are the whole run's findings in
        that message, and those of the envelope document (the placeholders stand where the
        messages are) outside of any, once its findings at the placeholders, which stand
        for messages it cannot see, are dropped. Sorting by pattern, then by the place in
        the envelope document of the message or envelope element, gives the whole run's
        order; a message's xpaths are moved under the message's place (``places``).
        """
        located: list[etree._Element | None] = []
        place = _locator(mt)

        def locate(element: etree._Element | None, xpath: str) -> Place:
            located.append(element)
            return place(element, xpath)

        order = {el: n for n, el in enumerate(envelope.iter())}
        at_spot = set(spots)
        keyed: list[tuple[tuple[int, int, int, int], MigError]] = []
        outside = xmlcheck.rule_findings(mt, envelope, locate)
        for seq, ((pattern, error), element) in enumerate(zip(outside, located, strict=True)):
            if element is None or element not in at_spot:
                where = order.get(element, 0) if element is not None else 0
                keyed.append(((pattern, where, 0, seq), error))
        for pattern, index, seq, error in self.hits:
            spot = spots[index]
            xpath = error.place.xpath or ""
            if xpath == "/*" or xpath.startswith("/*/"):  # lxml's path in the message
                error = _moved(error, places[index])
            keyed.append(((pattern, order[spot], 1, seq), error))
        keyed.sort(key=lambda item: item[0])
        return _rule_list([e for _, e in keyed])

    def new_buffer(self) -> BinaryIO:
        if self.spool is None:
            return io.BytesIO()
        # Unlinked at once (mode 0600): nothing is left on disk whatever happens. typeshed
        # gives SpooledTemporaryFile no BinaryIO base, though it has all of its methods.
        return tempfile.SpooledTemporaryFile(  # type: ignore[return-value]
            self.spool, prefix="sw-xml-")

    def xml(self) -> bytes:
        """The whole document (with ``keep``)."""
        if self.document is None:
            if isinstance(self.buffer, io.BytesIO):
                # BytesIO hands over its buffer without a copy when nothing else holds it.
                self.document = self.buffer.getvalue()
                self.buffer = io.BytesIO()
            else:  # spooled; read back only where the whole document is checked
                self.buffer.seek(0)
                self.document = self.buffer.read()
        return self.document

    def xml_file(self) -> BinaryIO:
        """The whole document (with ``keep`` and ``spool``) in its temporary file, at its
        start; handed over, the caller closes it."""
        buffer, self.buffer, self.document = self.buffer, io.BytesIO(), None
        buffer.seek(0)
        return buffer


def _moved(error: MigError, place: str) -> MigError:
    """An error of a message checked alone, at its xpath in the whole document."""
    xpath = error.place.xpath
    if xpath is None or not xpath.startswith("/*"):
        return error
    return replace(error, place=replace(error.place, xpath=place + xpath[2:]))
