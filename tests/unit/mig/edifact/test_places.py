"""A business rule failing on an EDIFACT submission names the EDIFACT position."""

from __future__ import annotations

from pathlib import Path

import pytest

from singlewindow.mig.errors import ErrorClass, Place
from singlewindow.mig.loader import Registry
from singlewindow.mig.validate import validate
from tests.support.factory import interchange, overlay, paxlst_message

# Rules that each fire once at a chosen node of a known interchange (successful-report),
# one kind of node per rule: a component, a simple element, a composite, a repeated
# composite, a segment, a segment group, the message, and the envelope's service segments.
PROBES = """<?xml version="1.0" encoding="UTF-8"?>
<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt">
  <ns prefix="p" uri="urn:singlewindow:mig:PAXLST:D03B"/>
  <pattern id="envelope">
    <rule context="p:S_UNB/p:C_S002/p:D_0004">
      <report id="T-UNB" test=". = 'SENDER'">sender</report>
    </rule>
    <rule context="p:S_UNZ">
      <report id="T-UNZ" test="true()">trailer</report>
    </rule>
  </pattern>
  <pattern id="message">
    <rule context="p:M_PAXLST">
      <report id="T-MESSAGE" test="p:S_UNH/p:D_0062 = 'M1'">message</report>
    </rule>
    <rule context="p:G_SG4">
      <report id="T-GROUP" test="p:S_NAD/p:C_C080/p:D_3036 = 'DOE3'">group</report>
    </rule>
    <rule context="p:S_NAD/p:C_C080/p:D_3036">
      <report id="T-COMPONENT" test=". = 'ALBERT' and ../p:D_3036 = 'DOE2'">component</report>
    </rule>
    <rule context="p:S_LOC/p:D_3227">
      <report id="T-SIMPLE" test=". = '91' and ../../../p:S_NAD/p:C_C080/p:D_3036 = 'DOE3'"
        >simple</report>
    </rule>
    <rule context="p:S_DOC/p:C_C002">
      <report id="T-COMPOSITE" test="../p:C_C503/p:D_1004 = 'XP0000002'">composite</report>
    </rule>
    <rule context="p:S_ATT/p:C_C956">
      <report id="T-REPEATED" test=". = 'F'">repeated</report>
    </rule>
    <rule context="p:S_CNT">
      <report id="T-SEGMENT" test="p:C_C270/p:D_6066 = '2' and ../p:S_UNH/p:D_0062 = 'M1'"
        >segment</report>
    </rule>
  </pattern>
</schema>
"""


def probing(folder: Path, local: bool) -> Registry:
    return overlay(folder, ("paxlst-d03b",), local, PROBES)


def sample() -> bytes:
    # Three messages of two persons each (persons 0-5); M1 holds persons 2 and 3.
    messages = [paxlst_message(f"M{n}", 2, start=2 * n) for n in range(3)]
    # Person 3 (second of M1) is a member of a group too: ATT's C956 repeated.
    messages[1] = [s.replace("ATT+2++M'", "ATT+2++M*F'") if n > 18 else s
                   for n, s in enumerate(messages[1])]
    return interchange(messages)


# Segments of a message: UNH 1, BGM 2, NAD 3, COM 4, TDT 5, LOC 6, DTM 7, LOC 8, DTM 9,
# then 10 per person (NAD, ATT, DTM, LOC, LOC, NAT, RFF, DOC, DTM, LOC: segments 10-19 and
# 20-29), then CNT 30, UNT 31.
EXPECTED = [
    ("T-UNB", Place(tag="UNB", element=2, component=1)),
    ("T-UNZ", Place(tag="UNZ")),
    ("T-MESSAGE", Place(message="M1")),
    ("T-COMPONENT", Place(segment=10, tag="NAD", element=4, component=3, message="M1")),
    ("T-COMPOSITE", Place(segment=17, tag="DOC", element=1, message="M1")),
    ("T-GROUP", Place(segment=20, tag="NAD", message="M1")),
    ("T-REPEATED", Place(segment=21, tag="ATT", element=3, message="M1")),
    ("T-SIMPLE", Place(segment=29, tag="LOC", element=1, message="M1")),
    ("T-SEGMENT", Place(segment=30, tag="CNT", message="M1")),
]


@pytest.mark.parametrize("local", [True, False], ids=["per message", "whole document"])
def test_rule_findings_name_the_edifact_position(tmp_path: Path, local: bool) -> None:
    reg = probing(tmp_path, local)
    result = validate(sample(), "application/edifact", reg)
    assert {e.cls for e in result.errors} == {ErrorClass.RULE}
    found = [(e.rule.split(":")[1], e.place) for e in result.errors]
    # Pattern by pattern, each in document order, as one Schematron run reports them; the
    # XPath into the XML form is kept beside the EDIFACT position.
    assert [(rule, Place(**{**place.as_dict(), "xpath": None}))
            for rule, place in found] == EXPECTED
    assert all(place.xpath for _, place in found)


def test_the_text_names_the_edifact_position(tmp_path: Path) -> None:
    result = validate(sample(), "application/edifact", probing(tmp_path, True))
    texts = {e.rule.split(":")[1]: str(e) for e in result.errors}
    assert "at message M1 segment 10 NAD element 4.3:" in texts["T-COMPONENT"]
    assert "at message M1 segment 30 CNT:" in texts["T-SEGMENT"]
    assert "at message M1:" in texts["T-MESSAGE"]
    assert "at UNB element 2.1:" in texts["T-UNB"]
