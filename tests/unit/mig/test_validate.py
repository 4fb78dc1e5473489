"""validate(): content types, XML types, XSD and rule errors, bounded-memory conversion."""

from __future__ import annotations

import importlib
import io
import random
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from singlewindow.mig import loader, xmlcheck
from singlewindow.mig.edifact.convert import Converter
from singlewindow.mig.edifact.syntax import chunked
from singlewindow.mig.errors import MAX_FINDINGS, ErrorClass, Findings, MigError
from singlewindow.mig.loader import Registry
from singlewindow.mig.validate import (
    TooLarge,
    _lookup,
    convert_checked,
    convert_stream,
    kind_of,
    validate,
)
from tests.support.factory import (
    HEADER_V4,
    gendec,
    iftdgn,
    interchange,
    mutate,
    overlay,
    paxlst,
    paxlst_message,
    paxlst_of_size,
)

# The module, not the function that singlewindow.mig exports under the same name.
validate_module = importlib.import_module("singlewindow.mig.validate")

DECRES = """<DeclarationResponse xmlns="urn:singlewindow:mig:declaration-response:1">
<ResponseId>R1</ResponseId><Issued>2024-01-01T10:00:00Z</Issued><Agency>CUSTOMS</Agency>
<DeclarationReference>GD-2024-0001</DeclarationReference><DeclarationType>GENDEC-1</DeclarationType>
<Status>{status}</Status>{errors}</DeclarationResponse>"""
PROCRES = """<ProcessResponse xmlns="urn:singlewindow:mig:process-response:1">
<ResponseId>P1</ResponseId><Issued>2024-01-01T10:00:00Z</Issued><Agency>CUSTOMS</Agency>
<DeclarationReference>GD-2024-0001</DeclarationReference><Outcome>{outcome}</Outcome>
</ProcessResponse>"""


@pytest.mark.parametrize(("ctype", "payload", "kind"), [
    ("application/EDIFACT", b"", "edifact"),
    ("application/xml; charset=utf-8", b"", "xml"),
    ("application/vnd.x+xml", b"", "xml"),
    (None, b"\r\nUNA:+.? 'UNB", "edifact"),
    ("text/plain", b"<?xml version='1.0'?><a/>", "xml"),
    ("image/png", b"UNB", "unknown"),
])
def test_kind_of(ctype: str | None, payload: bytes, kind: str) -> None:
    assert kind_of(payload, ctype) == kind


def test_unsupported_content_type(reg: Registry) -> None:
    result = validate(b"\x89PNG", "image/png", reg)
    assert result.errors[0].cls is ErrorClass.TYPE


@pytest.mark.parametrize("payload", [
    gendec(), DECRES.format(status="Accepted", errors="").encode(),
    DECRES.format(status="Rejected", errors="<Error><Code>E1</Code><Description>x"
                  "</Description></Error>").encode(),
    PROCRES.format(outcome="Cleared").encode(),
])
def test_valid_xml_types_pass_through_unchanged(reg: Registry, payload: bytes) -> None:
    result = validate(payload, "application/xml", reg)
    assert result.errors == () and result.xml == payload


def test_valid_edifact_converts_to_schema_valid_xml(reg: Registry) -> None:
    for data, name in ((paxlst(2), "PAXLST-D03B"), (paxlst(1, 1, "05B"), "PAXLST-D05B"),
                       (iftdgn(), "IFTDGN-D03A")):
        result = validate(data, "application/edifact", reg)
        assert result.message_type == name and result.xml is not None
        assert reg.types[name].schema.validate(etree.fromstring(result.xml))
        # The XML form is itself a valid submission of the same type.
        assert validate(result.xml, "application/xml", reg).message_type == name


def test_unknown_xml_root(reg: Registry) -> None:
    result = validate(b'<x xmlns="urn:nobody"/>', None, reg)
    assert result.errors[0].rule == "SW-MIG-TYPE"


@pytest.mark.parametrize(("payload", "marker"), [
    (gendec().replace(b"<Flag>PA</Flag>", b"<Flag>Panama</Flag>"), b"<Flag>"),
    (gendec().replace(b"<Master>K. PAPADOPOULOS</Master>\n", b""), b"<CrewCount>"),
    (DECRES.format(status="Maybe", errors="").encode(), b"<Status>"),
])
def test_xsd_errors_name_xpath_and_line(reg: Registry, payload: bytes, marker: bytes) -> None:
    result = validate(payload, "application/xml", reg)
    assert result.errors and {e.cls for e in result.errors} == {ErrorClass.XSD}
    line = payload[:payload.index(marker)].count(b"\n") + 1
    assert result.errors[0].place.line == line and result.errors[0].place.xpath


@pytest.mark.parametrize(("payload", "rule"), [
    (gendec(imo="9074728"), "GENDEC-1:GENDEC-R1"),
    (gendec(gross="1000"), "GENDEC-1:GENDEC-R2"),
    (gendec(crew="0"), "GENDEC-1:GENDEC-R4"),
    (DECRES.format(status="Rejected", errors="").encode(), "DECLARATION-RESPONSE-1:DECRES-R1"),
    (PROCRES.format(outcome="Inspection").encode(), "PROCESS-RESPONSE-1:PROCRES-R2"),
])
def test_rule_errors(reg: Registry, payload: bytes, rule: str) -> None:
    result = validate(payload, "application/xml", reg)
    assert [e.rule for e in result.errors] == [rule]
    assert result.errors[0].cls is ErrorClass.RULE and result.errors[0].place.xpath


def test_rules_apply_to_converted_edifact(reg: Registry) -> None:
    msg = paxlst_message("M0", 2)
    msg[msg.index("DTM+36:20300101:102'")] = "DTM+36:20300231:102'"  # 31 February
    result = validate(interchange([msg]), None, reg)
    assert [e.rule for e in result.errors] == ["PAXLST-D03B:PAX-R5"]
    place = result.errors[0].place
    # The expiry date: DTM of the document (segment group 5) of the first person.
    assert (place.message, place.segment, place.tag, place.element) == ("M0", 18, "DTM", 1)
    # and where it is in the XML form, as XSD errors say it
    _, _, xml = convert_checked(interchange([msg]), reg)
    assert xml is not None
    found = etree.fromstring(xml).getroottree().xpath(str(place.xpath))
    assert isinstance(found, list) and etree.QName(found[0]).localname == "C_C507"


def test_cnt_is_the_flights_total_not_the_messages_count(reg: Registry) -> None:
    """CNT+42 gives the passengers of the whole flight (WCO/IATA/ICAO guideline), which
    a flight split over several messages does not repeat per message."""
    msg = paxlst_message("M0", 2)
    msg[-2] = "CNT+42:187'"
    assert validate(interchange([msg]), None, reg).valid


def test_iftdgn_rule(reg: Registry) -> None:
    data = iftdgn().replace(b"DGS+IMD+3+1090+", b"DGS+IMD+3++")
    assert [e.rule for e in validate(data, None, reg).errors] == ["IFTDGN-D03A:DGN-R2"]


def test_one_message_type_per_interchange(reg: Registry) -> None:
    a = paxlst_message("M1", 1)
    b = paxlst_message("M2", 1, "05B")
    result = validate(interchange([a, b]), None, reg)
    assert [e.rule for e in result.errors] == ["SW-ONE-TYPE"]


_PEAK_RSS = """
import resource, sys
from singlewindow.mig.loader import registry
from singlewindow.mig.validate import convert_stream
from tests.support.factory import paxlst_stream

class Sink:
    size = 0
    def write(self, b):
        self.size += len(b)
        return len(b)

reg = registry()
src, size = paxlst_stream(float(sys.argv[1]), unique=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sink = Sink()
name, errors = convert_stream(src, sink, reg)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert name == "PAXLST-D03B" and errors == [], errors[:3]
print(size, sink.size, (after - before) * 1024)
"""


def _peak_growth(*megabytes: float) -> list[tuple[int, int, int]]:
    """For each size, in fresh processes run side by side: input bytes, XML bytes, and the
    growth of the peak RSS while converting an interchange of that many MB that is
    generated as it is read (the input is never held)."""
    root = Path(__file__).resolve().parents[3]
    procs = [subprocess.Popen([sys.executable, "-c", _PEAK_RSS, str(mb)], cwd=root,
                              stdout=subprocess.PIPE, text=True) for mb in megabytes]
    found = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        size, xml, growth = map(int, out.split())
        found.append((size, xml, growth))
    return found


def test_twenty_megabytes_convert_with_bounded_memory() -> None:
    # The same 200 persons in every message keeps the run short (equal segments hit the
    # converter's bounded cache); test_cache_is_bounded covers unique data's memory.
    (size, xml, growth), (small_size, _, small_growth) = _peak_growth(20, 2)
    assert size > 20_000_000 and xml > size
    assert small_size < 3_000_000
    # Ten times the input (and ~100 MB of XML written out) grows the peak by no more than a
    # few MB over the 2 MB case (measured: ~2 MB and ~1.3 MB): what the conversion holds is
    # one message (~70 kB of EDIFACT) and its XML, not the interchange.
    assert growth < small_growth + 8_000_000, (growth, small_growth)
    assert growth < 40_000_000, growth


def test_cache_is_bounded(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    from singlewindow.mig.edifact import message
    monkeypatch.setattr(message, "CACHE_SIZE", 50)
    seen: list[int] = []
    real_write = message.SegmentWriter.write

    def spy(self: message.SegmentWriter, *args: object) -> None:
        real_write(self, *args)  # type: ignore[arg-type]
        seen.append(len(self.cache))

    monkeypatch.setattr(message.SegmentWriter, "write", spy)
    assert validate(paxlst(100), None, reg).valid
    assert max(seen) <= 50


# --- convert_checked: the XSD check message by message, in threads -------------------------


def grouped(groups: list[list[list[str]]], ref: str = "REF1") -> bytes:
    """An interchange whose messages are in UNG groups (UNZ then counts groups)."""
    segs = [f"UNB+UNOA:4+SENDER:ZZZ+NLSW:ZZZ+240101:1200+{ref}'"]
    for g, messages in enumerate(groups, 1):
        segs.append(f"UNG+PAXLST+SENDER:ZZZ+NLSW:ZZZ+240101:1200+G{g}+UN+D:03B'")
        for m in messages:
            segs += m
        segs.append(f"UNE+{len(messages)}+G{g}'")
    segs.append(f"UNZ+{len(groups)}+{ref}'")
    return (HEADER_V4 + "\n" + "\n".join(segs) + "\n").encode("latin-1")


def messages(*refs: str, persons: int = 2) -> list[list[str]]:
    return [paxlst_message(ref, persons, start=n * persons) for n, ref in enumerate(refs)]


def whole_document(payload: bytes, reg: Registry) -> tuple[list[MigError], bytes, list[MigError]]:
    """What validate_edifact did before convert_checked: all the XML text, then one XSD
    check of the whole document. The conversion's errors, the XML, the XSD's errors as
    validate reports them (each once: :class:`Findings`)."""
    errors = Findings()
    pieces: list[str] = []
    summary = Converter(_lookup(reg), reg.service, errors, pieces.append).run(chunked(payload))
    xml = "".join(pieces).encode("utf-8")
    assert summary.profile is not None
    root = etree.fromstring(xml, etree.XMLParser(huge_tree=True, resolve_entities=False,
                                                 no_network=True))
    return errors, xml, Findings(xmlcheck.check_schema(reg.types[summary.profile.name], root))


def operator_schema(folder: Path, edit: Any) -> Registry:
    """The shipped MIG with PAXLST D.03B checked by an operator's XSD: the generated one,
    changed by ``edit``."""
    target = folder / "types" / "paxlst-d03b"
    shutil.copytree(loader.DATA / "types" / "paxlst-d03b", target)
    text = loader.load().types["PAXLST-D03B"].schema_text.decode()
    changed = edit(text)
    assert changed != text
    (target / "operator.xsd").write_text(changed)
    toml = (target / "mig.toml").read_text()
    root = 'root = "Interchange"\n'
    (target / "mig.toml").write_text(toml.replace(root, root + 'schema = "operator.xsd"\n'))
    reg = loader.load([loader.DATA, folder])
    assert reg.types["PAXLST-D03B"].schema_text == changed.encode()
    return reg


def _stricter(text: str) -> str:
    # Message references must end in an even digit (M0, M2, ... pass; M1, M3 ... fail);
    # the interchange reference (UNB and UNZ) has at most 4 characters; an interchange
    # without groups holds at most 5 messages.
    return (text
            .replace('<xs:simpleType name="T_0062_anv14"><xs:restriction base="xs:string">',
                     '<xs:simpleType name="T_0062_anv14"><xs:restriction base="xs:string">'
                     '<xs:pattern value=".*[02468]"/>')
            .replace('<xs:simpleType name="T_0020_anv14"><xs:restriction base="xs:string">'
                     '<xs:minLength value="1"/><xs:maxLength value="14"/>',
                     '<xs:simpleType name="T_0020_anv14"><xs:restriction base="xs:string">'
                     '<xs:minLength value="1"/><xs:maxLength value="4"/>')
            .replace('<xs:element ref="M_PAXLST" maxOccurs="unbounded"/></xs:choice>',
                     '<xs:element ref="M_PAXLST" maxOccurs="5"/></xs:choice>'))


def _unique_refs(text: str) -> str:
    # Message references unique in the interchange: an identity constraint across messages.
    head = '<xs:element name="M_PAXLST">'
    before, after = text.split(head, 1)
    assert before.endswith("</xs:complexType></xs:element>")
    unique = ('<xs:unique name="refs"><xs:selector xpath="p:M_PAXLST/p:S_UNH"/>'
              '<xs:field xpath="p:D_0062"/></xs:unique>')
    before = before[:-len("</xs:element>")] + unique + "</xs:element>"
    return (before + head + after).replace(
        'elementFormDefault="qualified"',
        'elementFormDefault="qualified" xmlns:p="urn:singlewindow:mig:PAXLST:D03B"', 1)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return operator_schema(tmp_path_factory.mktemp("strict"), _stricter)


@pytest.fixture(scope="module")
def unique(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return operator_schema(tmp_path_factory.mktemp("unique"), _unique_refs)


VALID = {
    "one message": paxlst(2),
    "five messages of 200 persons": paxlst(200, 5),
    "forty small messages": paxlst(2, 40),
    "three groups": grouped([messages("M0"), messages("M1", "M2"), messages("M3", "M4", "M5")]),
    "groups of large messages": grouped([messages("M0", "M1", persons=200),
                                         messages("M2", "M3", persons=200)]),
    "IFTDGN": iftdgn(),
    "one megabyte": paxlst_of_size(1),
}


@pytest.mark.parametrize("payload", list(VALID.values()), ids=list(VALID))
def test_convert_checked_gives_the_xml_the_whole_conversion_gave(
        reg: Registry, payload: bytes) -> None:
    conversion, xml, xsd = whole_document(payload, reg)
    assert conversion == [] and xsd == []
    summary, errors, converted = convert_checked(payload, reg)
    assert errors == [] and converted == xml
    assert summary.profile is not None and summary.messages


def test_convert_checked_on_the_public_paxlst_with_its_group(public: Path, reg: Registry) -> None:
    payload = (public / "paxlst-d03b-smooks-message_01.edi").read_bytes()
    _, xml, _ = whole_document(payload, reg)
    assert b"<G_UNG>" in xml
    assert convert_checked(payload, reg)[1:] == ([], xml)


STRICT_CASES = {
    # Message 2 of 3 fails (M1: its UNH and its UNT).
    "message 2 of 3": (paxlst(2, 3), "/*/*[3]/"),
    # Messages large enough to be checked in the worker threads.
    "large messages 2 and 4 of 5": (paxlst(200, 5), "/*/*[3]/"),
    # Small messages are checked together, in the calling thread.
    "small messages 2 and 4 of 5": (interchange(messages("M0", "M1", "M2", "M3", "M4")),
                                    "/*/*[3]/"),
    "groups": (grouped([messages("M0"), messages("M2", "M1"), messages("M4", "M3")]),
               "/*/*[3]/*[3]/"),
    "groups of large messages": (grouped([messages("M0", "M2", persons=200),
                                          messages("M4", "M1", persons=200)]), "/*/*[3]/*[3]/"),
}


@pytest.mark.parametrize(("payload", "first"), list(STRICT_CASES.values()), ids=list(STRICT_CASES))
def test_xsd_errors_of_messages_are_those_of_the_whole_document(
        strict: Registry, payload: bytes, first: str) -> None:
    conversion, xml, xsd = whole_document(payload, strict)
    assert conversion == [] and xsd
    _, errors, converted = convert_checked(payload, strict)
    assert converted is None
    # The same errors, in the same order, at the same xpaths and lines.
    assert errors == xsd
    assert {e.cls for e in errors} == {ErrorClass.XSD}
    assert {e.place.line for e in errors} == {1}
    assert str(errors[0].place.xpath).startswith(first)
    tree = etree.fromstring(xml).getroottree()
    for e in errors:  # and each xpath names the element in the whole document
        assert tree.xpath(e.place.xpath)
    result = validate(payload, None, strict)
    assert result.errors == tuple(xsd) and result.xml is None
    assert result.namespace == "urn:singlewindow:mig:PAXLST:D03B"


def test_forty_small_messages_in_batches(strict: Registry) -> None:
    # Small messages go to the workers in batches; every other one fails.
    payload = interchange(messages(*(f"M{n}" for n in range(40))))  # no more than 5 allowed
    conversion, _, xsd = whole_document(payload, strict)
    assert conversion == [] and convert_checked(payload, strict)[1] == xsd
    grouped40 = grouped([messages(*(f"M{n}" for n in range(40)))])  # no limit in a group
    conversion, _, xsd = whole_document(grouped40, strict)
    # M1, M3, ... M39: UNH and UNT each, the same text twice: one finding per message
    assert conversion == [] and len(xsd) == 20 and all(e.repeats == 1 for e in xsd)
    assert convert_checked(grouped40, strict)[1] == xsd


@pytest.mark.parametrize("payload", [
    interchange(messages("M0", "M1"), ref="REF123"),
    grouped([messages("M0"), messages("M1", "M2")], ref="REF123"),
], ids=["messages", "groups"])
def test_envelope_xsd_errors_are_reported_in_document_order(
        strict: Registry, payload: bytes) -> None:
    _, _, xsd = whole_document(payload, strict)
    errors = convert_checked(payload, strict)[1]
    assert errors == xsd
    # UNB's reference (and UNZ's, the same text: one finding), message M1's UNH (and UNT).
    assert len(errors) == 2 and all("D_00" in e.text and e.repeats == 1 for e in errors)
    assert "D_0020" in errors[0].text and "D_0062" in errors[1].text
    assert str(errors[0].place.xpath).startswith("/*/*[1]/")  # S_UNB
    assert str(errors[0].also[0].xpath).startswith("/*/*[4]/")  # S_UNZ, after two places


def test_messages_past_the_number_allowed_are_not_checked(strict: Registry) -> None:
    # Six messages where five are allowed: the sixth is not expected, and libxml2 checks
    # it no further (M5 would fail its pattern), nor anything after it.
    payload = interchange(messages("M0", "M1", "M2", "M4", "M6", "M5", "M7"))
    _, _, xsd = whole_document(payload, strict)
    errors = convert_checked(payload, strict)[1]
    assert errors == xsd
    assert [e.place.xpath for e in errors][-1] == "/*/*[7]"
    assert "not expected" in errors[-1].text
    assert not any(str(e.place.xpath).startswith("/*/*[7]/") for e in errors)


def test_conversion_errors_leave_out_the_xsd(strict: Registry,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    bad = messages("M0", "M1", "M2")
    bad[2][-1] = "UNT+99+M2'"  # a wrong segment count in message 3
    payload = interchange(bad)
    conversion, _, xsd = whole_document(payload, strict)
    assert conversion and xsd  # message M1 fails the XSD too
    _, errors, xml = convert_checked(payload, strict)
    assert errors == conversion and xml is None
    assert ErrorClass.XSD not in {e.cls for e in errors}
    assert validate(payload, None, strict).errors == tuple(conversion)
    assert validate(payload, None, strict).namespace is None
    # Once the conversion has found an error, no message is checked against the XSD.
    checked: list[int] = []
    real = validate_module._check_message
    monkeypatch.setattr(validate_module, "_check_message",
                        lambda text, mt, rules=False: checked.append(1) or real(text, mt, rules))
    first_bad = messages(*(f"M{n}" for n in range(6)), persons=200)
    first_bad[0][-1] = "UNT+99+M0'"
    assert convert_checked(interchange(first_bad), strict)[1][0].rule == "ISO9735-UNT-0074"
    assert checked == []


def test_xsd_with_document_wide_constraints_checks_the_whole_document(unique: Registry) -> None:
    assert xmlcheck.document_wide(unique.types["PAXLST-D03B"])
    payload = interchange(messages("M0", "M1", "M0"))
    conversion, _, xsd = whole_document(payload, unique)
    assert conversion == [] and len(xsd) == 1 and "Duplicate" in xsd[0].text
    assert convert_checked(payload, unique)[1] == xsd
    ok = interchange(messages("M0", "M1", "M2"))
    assert convert_checked(ok, unique)[1:] == ([], whole_document(ok, unique)[1])


def test_convert_stream_reports_what_convert_checked_reports(strict: Registry) -> None:
    for payload in (paxlst(200, 3), interchange(messages("M0", "M1"), ref="REF123"),
                    grouped([messages("M0", "M1", persons=200), messages("M3")])):
        _, xml, xsd = whole_document(payload, strict)
        out = io.BytesIO()
        name, errors = convert_stream(io.BytesIO(payload), out, strict)
        assert name == "PAXLST-D03B" and errors == xsd == convert_checked(payload, strict)[1]
        assert out.getvalue() == xml


def test_xsd_checks_in_flight_are_bounded(monkeypatch: pytest.MonkeyPatch, reg: Registry) -> None:
    """Never more than workers + 1 batches handed to the threads and not yet done, even when
    the checks are slower than the conversion."""
    outstanding = 0
    most = 0
    submitted = 0
    lock = threading.Lock()

    class Counting(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
            nonlocal outstanding, most, submitted
            with lock:
                outstanding += 1
                submitted += 1
                most = max(most, outstanding)
            future = super().submit(fn, *args, **kwargs)
            future.add_done_callback(lambda _: done())
            return future

    def done() -> None:
        nonlocal outstanding
        with lock:
            outstanding -= 1

    real = validate_module._check_messages

    def slow(batch: list[tuple[int, str]], mt: Any, rules: bool = False) -> Any:
        time.sleep(0.05)
        return real(batch, mt, rules)

    monkeypatch.setattr(validate_module, "ThreadPoolExecutor", Counting)
    monkeypatch.setattr(validate_module, "_check_messages", slow)
    payload = paxlst(200, 12)
    _, xml, _ = whole_document(payload, reg)
    assert convert_checked(payload, reg)[1:] == ([], xml)
    workers = min(2, validate_module.os.cpu_count() or 1)
    assert submitted >= 8 and most == workers + 1, (submitted, most)


# --- the size limit of a copy (issue 10) ---------------------------------------------------


def test_limit_stops_the_conversion_soon_after_it_is_reached() -> None:
    payload = paxlst_of_size(4)  # ~20 MB of XML
    limit = 1_000_000
    started = time.perf_counter()
    with pytest.raises(TooLarge) as caught:
        validate(payload, "application/EDIFACT", limit=limit)
    assert caught.value.limit == limit
    # It stopped at the first piece beyond the limit (a message of 200 persons is
    # ~350 kB of XML), long before converting the rest.
    assert limit < caught.value.size < limit + 500_000
    assert str(limit) in str(caught.value) and str(caught.value.size) in str(caught.value)
    whole = time.perf_counter()
    assert validate(payload, "application/EDIFACT").valid
    assert time.perf_counter() - whole > 2 * (whole - started)


def test_interchange_within_the_limit_is_forwarded_whole() -> None:
    payload = paxlst(persons=20)
    xml = validate(payload, "application/EDIFACT").xml
    assert xml is not None
    result = validate(payload, "application/EDIFACT", limit=len(xml))
    assert result.valid and result.xml == xml
    with pytest.raises(TooLarge) as caught:
        validate(payload, "application/EDIFACT", limit=len(xml) - 1)
    assert caught.value.size == len(xml)


def test_xml_submission_over_the_limit_is_refused_unparsed() -> None:
    payload = gendec()
    assert validate(payload, "application/xml", limit=len(payload)).valid
    with pytest.raises(TooLarge) as caught:
        validate(payload + b" " * 10, "application/xml", limit=len(payload))
    assert (caught.value.size, caught.value.limit) == (len(payload) + 10, len(payload))


def test_interchange_with_errors_reports_them_whatever_the_limit() -> None:
    # A conversion error (wrong UNT count) means nothing is forwarded: the control
    # message needs the errors, and no XML is kept, so the limit does not apply.
    first = paxlst_message("M0", 200)
    first[-1] = "UNT+3+M0'"
    payload = interchange([first] + [paxlst_message(f"M{n}", 200) for n in range(1, 10)])
    result = validate(payload, "application/EDIFACT", limit=1000)
    assert not result.valid and result.xml is None
    assert any("UNT" in e.text or "0074" in e.text for e in result.errors)


def test_xsd_errors_are_capped_for_edifact_and_xml_alike(strict: Registry) -> None:
    # 500 messages in a group, every other one failing the strict pattern with its own
    # value: 250 distinct XSD findings (UNH and UNT of a message say the same: one each).
    payload = grouped([messages(*(f"M{n}" for n in range(500)), persons=1)])
    conversion, xml, _ = whole_document(payload, strict)
    assert conversion == []
    for errors in (convert_checked(payload, strict)[1],
                   list(validate(xml, "application/xml", strict).errors)):
        assert len(errors) == MAX_FINDINGS
        assert all(e.cls is ErrorClass.XSD for e in errors[:-1])
        assert errors[-1].cls is ErrorClass.LIMIT
        assert errors[-1].text.startswith("51 more findings not listed")


# --- business rules message by message (issue 11) -----------------------------------------

# Message-local rules of the tests' own, so that what is compared does not hang on the
# shipped rules (which follow the published guideline and change with it): envelope rules
# before and after the messages, in a functional group (counting its messages, which it
# may: it looks at no message's content), and rules in three patterns inside messages.
TEST_RULES = """<?xml version="1.0" encoding="UTF-8"?>
<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt">
  <ns prefix="p" uri="urn:singlewindow:mig:PAXLST:D03B"/>
  <pattern id="envelope">
    <rule context="p:S_UNB">
      <assert id="T-REF" test="string-length(p:D_0020) &lt;= 4">short reference</assert>
    </rule>
    <rule context="p:G_UNG">
      <report id="T-GROUP" test="count(p:M_PAXLST) &gt; 2">a large group</report>
    </rule>
    <rule context="p:S_UNZ">
      <assert id="T-TRAILER" test="p:D_0036 &lt; 4">few messages</assert>
    </rule>
  </pattern>
  <pattern id="persons">
    <rule context="p:G_SG4/p:S_DTM/p:C_C507[p:D_2005 = '329']">
      <assert id="T-DOB-FORMAT" test="p:D_2379 = '102'">CCYYMMDD: <value-of
        select="p:D_2380"/></assert>
      <assert id="T-DOB-DIGITS" test="string-length(p:D_2380) = 8">eight digits</assert>
    </rule>
    <rule context="p:G_SG4">
      <report id="T-PERSON" test="p:S_NAD/p:C_C080/p:D_3036 = 'DOE7'">person 7</report>
    </rule>
  </pattern>
  <pattern id="totals">
    <rule context="p:M_PAXLST/p:S_CNT">
      <assert id="T-TOTAL" test="number(p:C_C270/p:D_6066) = count(../p:G_SG4)">total</assert>
    </rule>
    <rule context="p:M_PAXLST">
      <report id="T-MESSAGE" test="p:S_UNH/p:D_0062 = 'M3'">message M3</report>
    </rule>
  </pattern>
</schema>
"""


EDIFACT_TYPES = ("paxlst-d02b", "paxlst-d03b", "paxlst-d05b", "iftdgn-d03a")


@pytest.fixture(scope="module")
def whole_rules(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The shipped MIG with the EDIFACT types' rules run on the whole document at once."""
    return overlay(tmp_path_factory.mktemp("whole-rules"), EDIFACT_TYPES, False)


@pytest.fixture(scope="module")
def test_rules(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, Registry]:
    """:data:`TEST_RULES` for PAXLST D.03B: run per message, and on the whole document."""
    return (overlay(tmp_path_factory.mktemp("test-local"), ("paxlst-d03b",), True, TEST_RULES),
            overlay(tmp_path_factory.mktemp("test-whole"), ("paxlst-d03b",), False, TEST_RULES))


def mutated(seed: int) -> bytes:
    """An interchange of a few messages (in functional groups or not, with a long
    reference or not), with dates of birth in the wrong format and wrong control totals
    seeded at random places."""
    rng = random.Random(seed)
    msgs = [paxlst_message(f"M{n}", rng.randint(1, 30), start=rng.choice([0, 5, 100 * n]))
            for n in range(rng.randint(1, 6))]
    for msg in msgs:
        for _ in range(rng.randint(0, 3)):
            births = [n for n, s in enumerate(msg) if s.startswith("DTM+329:")]
            n = rng.choice(births)
            msg[n] = rng.choice(["DTM+329:640215:101'", "DTM+329:640215:102'",
                                 "DTM+329:19640215:101'"])
        if rng.random() < 0.3:
            msg[-2] = f"CNT+42:{rng.randint(31, 40)}'"
    ref = rng.choice(["REF1", "REF123"])
    if rng.random() < 0.5:
        split = rng.randint(1, len(msgs))
        return grouped([g for g in (msgs[:split], msgs[split:]) if g], ref)
    return interchange(msgs, ref)


RULE_SAMPLES = {
    **VALID,
    "IFTDGN without UN number": iftdgn().replace(b"DGS+IMD+3+1090+", b"DGS+IMD+3++"),
    "IFTDGN without means of transport": iftdgn().replace(b"+++9074729:146:11:MSC ANNA:PA",
                                                          b""),
    **{f"mutated {seed}": mutated(seed) for seed in range(16)},
    "D.02B with impossible dates": interchange([paxlst_message("M0", 3, "02B"), [
        {11: "DTM+329:649915'", 21: "DTM+329:1964021'"}.get(n, s)
        for n, s in enumerate(paxlst_message("M1", 3, "02B", start=3))]]),
    "D.05B with a wrong total": interchange([paxlst_message("M0", 3, "05B"), [
        "CNT+42:9'" if s.startswith("CNT") else s for s in paxlst_message("M1", 2, "05B")]]),
    "a thousand findings": interchange([
        [s.replace(":102'", ":101'") if s.startswith("DTM+329:") else s
         for s in paxlst_message(f"M{n}", 200, start=200 * n)] for n in range(3)]),
}


@pytest.mark.parametrize("rules", ["shipped", "tests'"])
@pytest.mark.parametrize("payload", list(RULE_SAMPLES.values()), ids=list(RULE_SAMPLES))
def test_rules_message_by_message_find_what_the_whole_document_finds(
        reg: Registry, whole_rules: Registry, test_rules: tuple[Registry, Registry],
        payload: bytes, rules: str) -> None:
    per_message, whole_document = (reg, whole_rules) if rules == "shipped" else test_rules
    local = validate(payload, "application/edifact", per_message)
    whole = validate(payload, "application/edifact", whole_document)
    # The same findings, in the same order, at the same places (EDIFACT and XPath).
    assert local.errors == whole.errors
    assert local.xml == whole.xml


def test_rules_per_message_on_the_public_paxlst(public: Path, reg: Registry,
                                               whole_rules: Registry,
                                               test_rules: tuple[Registry, Registry]) -> None:
    payload = (public / "paxlst-d03b-smooks-message_01.edi").read_bytes()
    local = validate(payload, None, reg)
    assert local == validate(payload, None, whole_rules)
    # Its one date of birth as YYMMDD: the same findings either way, in its message.
    wrong = payload.replace(b"DTM+329:19350919:102'", b"DTM+329:350919:101'")
    assert wrong != payload
    local = validate(wrong, None, test_rules[0])
    assert [e.rule for e in local.errors] == ["PAXLST-D03B:T-DOB-FORMAT",
                                              "PAXLST-D03B:T-DOB-DIGITS"]
    assert local.errors == validate(wrong, None, test_rules[1]).errors
    assert {(e.place.message, e.place.segment, e.place.tag, e.place.element)
            for e in local.errors} == {("PAXLST16", 8, "DTM", 1)}


def test_seeded_mutations_do_find_rule_errors(test_rules: tuple[Registry, Registry]) -> None:
    found = [validate(mutated(seed), None, test_rules[0]).errors for seed in range(16)]
    assert sum(1 for errors in found if errors) >= 10
    assert {e.cls for errors in found for e in errors} == {ErrorClass.RULE}
    rules = {e.rule.split(":")[1] for errors in found for e in errors}
    assert rules >= {"T-REF", "T-DOB-FORMAT", "T-DOB-DIGITS", "T-TOTAL", "T-MESSAGE",
                     "T-PERSON", "T-TRAILER"}
    assert any(e.place.message not in (None, "M0") for errors in found for e in errors)


def test_many_rule_findings_are_cut_and_say_so(test_rules: tuple[Registry, Registry]) -> None:
    # 600 dates of birth in the wrong format, each its own value: 600 distinct findings.
    errors = validate(RULE_SAMPLES["a thousand findings"], None, test_rules[0]).errors
    assert len(errors) == MAX_FINDINGS
    assert errors[-1].cls is ErrorClass.LIMIT
    assert errors[-1].text.startswith("402 more findings not listed (the list stops at 200)")
    # The first ones in the report's order: pattern by pattern, the messages in order;
    # persons 0-6: the date of birth; person 7: the group first, then its date of birth.
    assert [e.place.message for e in errors[:3]] == ["M0"] * 3
    assert [e.rule.split(":")[1] for e in errors[:9]] == ["T-DOB-FORMAT"] * 7 + [
        "T-PERSON", "T-DOB-FORMAT"]
    assert (errors[7].place.segment, errors[7].place.tag) == (80, "NAD")


def test_the_rules_stop_after_so_many_findings_alike(
        test_rules: tuple[Registry, Registry], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate_module, "RULE_HITS", 50)
    payload = RULE_SAMPLES["a thousand findings"]
    local, whole = (validate(payload, None, reg).errors for reg in test_rules)
    assert local == whole and len(local) == 51
    assert "the check stopped reading the business rules' findings, after 50" in local[-1].text


def test_a_rule_failing_alike_in_one_message_is_one_finding(
        test_rules: tuple[Registry, Registry]) -> None:
    msgs = [[("DTM+329:640215:102'" if s.startswith("DTM+329:") else s)
             for s in paxlst_message(f"M{n}", 4)] for n in range(2)]
    for reg in test_rules:  # per message and whole document alike
        errors = validate(interchange(msgs), None, reg).errors
        assert [(e.rule.split(":")[1], e.place.message, e.place.segment, e.repeats)
                for e in errors] == [("T-DOB-DIGITS", "M0", 12, 3),
                                     ("T-DOB-DIGITS", "M1", 12, 3)]
        assert "(and 3 more in segments 22, 32, 42)" in errors[0].text


def test_rules_run_on_each_message_alone(test_rules: tuple[Registry, Registry],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    roots: list[tuple[str, int]] = []
    real = xmlcheck.rule_findings

    def spy(mt: Any, root: etree._Element, *args: Any) -> Any:
        roots.append((etree.QName(root).localname, sum(1 for _ in root.iter())))
        return real(mt, root, *args)

    monkeypatch.setattr(xmlcheck, "rule_findings", spy)
    payload = grouped([messages("M0", "M1", persons=200), messages("M2", persons=200)])
    found = validate(payload, None, test_rules[0]).errors
    assert [(e.rule, e.place.message) for e in found] == [  # person 7 of M0 and of M2
        ("PAXLST-D03B:T-PERSON", "M0"), ("PAXLST-D03B:T-PERSON", "M2")]
    # One run per message, and one on the envelope, whose messages are empty elements.
    assert sorted(name for name, _ in roots) == ["Interchange", "M_PAXLST", "M_PAXLST",
                                                 "M_PAXLST"]
    envelope = next(size for name, size in roots if name == "Interchange")
    assert envelope < 100 < 1000 < min(size for name, size in roots if name == "M_PAXLST")


# --- the XSD of the converter's own output (issue 13) -----------------------------------

def _message_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The XSD checks of converted messages (a root ``M_...`` with content) from now on."""
    seen: list[str] = []
    real = xmlcheck.check_schema

    def counting(mt: Any, root: etree._Element) -> list[MigError]:
        if etree.QName(root).localname.startswith("M_") and len(root):
            seen.append(mt.name)
        return real(mt, root)
    monkeypatch.setattr(xmlcheck, "check_schema", counting)
    return seen


def test_a_generated_xsd_is_not_checked_again_on_converted_messages(
        reg: Registry, strict: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _message_checks(monkeypatch)
    payload = paxlst(3, 4)
    assert reg.types["PAXLST-D03B"].schema_generated
    assert validate(payload, None, reg).valid and convert_checked(payload, reg)[2]
    assert seen == []
    # an operator's XSD may say more than the converter checks: it is checked
    assert not strict.types["PAXLST-D03B"].schema_generated
    found = validate(payload, None, strict).errors  # it wants even message numbers
    assert {e.cls for e in found} == {ErrorClass.XSD}
    assert seen.count("PAXLST-D03B") == 4
    # and the XML a company submits is always checked against the XSD
    assert not reg.types["GENDEC-1"].schema_generated
    assert validate(gendec().replace(b"<Flag>PA</Flag>", b"<Flag>Panama</Flag>"), None,
                    reg).errors[0].cls is ErrorClass.XSD


@pytest.mark.parametrize("release", ["02B", "03B", "05B"])
def test_the_generated_xsd_holds_for_whatever_the_converter_passes(
        reg: Registry, release: str) -> None:
    # What the runtime check of the converter's output against its generated XSD would
    # catch, checked here instead: seeded mutations of every kind, and every conversion
    # that passes gives XML the XSD finds valid.
    mt = reg.types[f"PAXLST-D{release}"]
    passed = 0
    for seed in range(400):
        rnd = random.Random(seed)
        msgs = [mutate(rnd, paxlst_message(f"M{n}", 3, release, start=3 * n))
                for n in range(rnd.randint(1, 3))]
        _, errors, xml = convert_checked(interchange(msgs), reg)
        if errors:
            continue
        assert xml is not None
        passed += 1
        root = etree.fromstring(xml, etree.XMLParser(huge_tree=True))
        assert xmlcheck.check_schema(mt, root) == [], seed
    assert passed >= 20
    _, errors, xml = convert_checked(iftdgn(), reg)
    assert not errors and xml is not None
    assert xmlcheck.check_schema(reg.types["IFTDGN-D03A"], etree.fromstring(xml)) == []
