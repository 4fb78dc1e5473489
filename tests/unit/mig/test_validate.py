"""validate(): content types, XML types, XSD and rule errors, bounded-memory conversion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from singlewindow.mig.errors import ErrorClass
from singlewindow.mig.loader import Registry
from singlewindow.mig.validate import kind_of, validate
from tests.unit.mig.factory import gendec, iftdgn, interchange, paxlst, paxlst_message

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
    msg[-2] = "CNT+42:3'"  # says three persons, has two
    result = validate(interchange([msg]), None, reg)
    assert [e.rule for e in result.errors] == ["PAXLST-D03B:PAX-R4"]
    assert "M_PAXLST" in str(result.errors[0].place.xpath)


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
from tests.unit.mig.factory import paxlst_stream

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
