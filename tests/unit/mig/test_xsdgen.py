"""The XML Schema generated from an EDIFACT type's MIG data: it accepts the converter's XML
and refuses what the MIG refuses (order, occurrences, formats, code lists)."""

from __future__ import annotations

import pytest
from lxml import etree

from singlewindow.mig.edifact.message import EdifactProfile
from singlewindow.mig.loader import registry
from singlewindow.mig.model import DataError, GroupDef, SegmentRef, read_segments, read_structure
from singlewindow.mig.validate import convert_checked
from singlewindow.mig.xsdgen import XS, schema_for
from tests.support.factory import paxlst

NS = "urn:test:xsdgen"


@pytest.fixture(scope="module")
def paxlst_xml() -> tuple[etree.XMLSchema, bytes]:
    """The shipped PAXLST D.03B type's schema, generated here, and the converter's XML of
    a factory interchange in the schema's namespace."""
    reg = registry()
    mt = reg.types["PAXLST-D03B"]
    assert mt.edifact is not None and mt.schema_generated
    text = schema_for(mt.edifact, reg.service, mt.namespace)
    _, errors, xml = convert_checked(paxlst(2), reg)
    assert not errors and xml is not None
    return etree.XMLSchema(etree.fromstring(text.encode())), xml


def valid(schema: etree.XMLSchema, xml: bytes) -> bool:
    return bool(schema.validate(etree.fromstring(xml)))


def test_the_converters_xml_is_valid(paxlst_xml: tuple[etree.XMLSchema, bytes]) -> None:
    schema, xml = paxlst_xml
    assert valid(schema, xml), schema.error_log


@pytest.mark.parametrize(("old", "new", "why"), [
    # BGM's 1001 has no code list of its own here; 9017 (ATT) has one.
    (b"<D_9017>2</D_9017>", b"<D_9017>ZZ</D_9017>", "a code outside the code list"),
    (b"<D_3035>MS</D_3035>", b"<D_3035>MSXX</D_3035>", "longer than an..3"),
    (b"<D_3035>MS</D_3035>", b"<D_3035></D_3035>", "shorter than an..3's minimum"),
    (b"<D_0062>M0</D_0062>", b"", "a mandatory element missing"),
    (b"<S_BGM>", b"<S_FOO/><S_BGM>", "a segment the structure does not have"),
    (b"<D_0052>D</D_0052><D_0054>03B</D_0054>", b"<D_0054>03B</D_0054><D_0052>D</D_0052>",
     "elements out of order"),
    (b"<D_3207>NL</D_3207>", b"<D_3207>NL</D_3207><D_3207>BE</D_3207>",
     "a repeat beyond the table's"),
])
def test_what_the_mig_refuses_the_schema_refuses(paxlst_xml: tuple[etree.XMLSchema, bytes],
                                                 old: bytes, new: bytes, why: str) -> None:
    schema, xml = paxlst_xml
    assert old in xml
    assert not valid(schema, xml.replace(old, new, 1)), why


SEGMENTS = """\
AAA First
  1000 M 1 n..5 Amount
  2000 C 2 a3 Letters
  2000 C 1 a3 Letters again
BBB Second
  C100 M 1 Composite
    3000 M an..4 Part
    3001 C n2 Number
"""


def tiny(structure: str, segments: str = SEGMENTS,
         codes: dict[str, frozenset[str]] | None = None) -> etree.XMLSchema:
    """A one-message type of the segments above, the service segments from the MIG."""
    profile = EdifactProfile("TINY-1", "TINY", read_structure(structure, "s", "M_TINY"),
                             read_segments(segments, "g"), codes or {}, "TINY-1")
    text = schema_for(profile, registry().service, NS)
    root = etree.fromstring(text.encode())
    assert root.tag == f"{{{XS}}}schema" and root.get("targetNamespace") == NS
    return etree.XMLSchema(root)


ENVELOPE = ("<S_UNB><C_S001><D_0001>UNOA</D_0001><D_0002>4</D_0002></C_S001><C_S002>"
            "<D_0004>A</D_0004></C_S002><C_S003><D_0010>B</D_0010></C_S003><C_S004>"
            "<D_0017>240101</D_0017><D_0019>1200</D_0019></C_S004><D_0020>R</D_0020>"
            "</S_UNB>{messages}<S_UNZ><D_0036>1</D_0036><D_0020>R</D_0020></S_UNZ>")


def doc(*messages: str) -> bytes:
    body = ENVELOPE.format(messages="".join(f"<M_TINY>{m}</M_TINY>" for m in messages))
    return f'<Interchange xmlns="{NS}">{body}</Interchange>'.encode()


def test_occurrences_formats_and_codes_of_a_small_type() -> None:
    schema = tiny("AAA M 1\nSG1 C 2\n  BBB M 1\n", codes={"3000": frozenset({"X", "Y"})})
    aaa = "<S_AAA><D_1000>-12,5</D_1000><D_2000>abc</D_2000><D_2000>def</D_2000></S_AAA>"
    bbb = "<G_SG1><S_BBB><C_C100><D_3000>X</D_3000><D_3001>7</D_3001></C_C100></S_BBB></G_SG1>"
    assert valid(schema, doc(aaa + bbb + bbb)), schema.error_log
    assert valid(schema, doc(aaa, aaa))  # many messages in one interchange
    assert not valid(schema, doc(bbb))  # AAA is mandatory
    assert not valid(schema, doc(aaa + bbb * 3))  # SG1 at most twice
    # Two positions of 2000 in a row: one element, at most three times.
    assert not valid(schema, doc(aaa.replace("</S_AAA>", "<D_2000>ghi</D_2000>" * 2 + "</S_AAA>")
                                 + bbb))
    assert not valid(schema, doc(aaa.replace("abc", "ab1") + bbb))  # a3: letters only
    assert not valid(schema, doc(aaa.replace("-12,5", "12a") + bbb))  # n..5: a number
    assert not valid(schema, doc(aaa + bbb.replace(">X<", ">Z<")))  # not in the code list


def test_one_element_at_two_separate_positions_is_refused() -> None:
    segments = "AAA First\n  1000 M 1 n..5 A\n  2000 C 1 a3 B\n  1000 C 1 n..5 A again\n"
    with pytest.raises(DataError, match="AAA: 1000 stands at two separate positions"):
        tiny("AAA M 1\n", segments)


def test_the_structures_groups_become_nested_elements() -> None:
    structure = read_structure("AAA M 1\nSG1 C 3\n  BBB M 1\n", "s", "M_TINY")
    assert isinstance(structure.children[1], GroupDef)
    assert structure.children[0] == SegmentRef("AAA", True, 1)
    profile = EdifactProfile("TINY-1", "TINY", structure, read_segments(SEGMENTS, "g"), {},
                             "TINY-1")
    root = etree.fromstring(schema_for(profile, registry().service, NS).encode())
    group = root.find(f".//{{{XS}}}element[@name='G_SG1']")
    assert group is not None
    assert (group.get("minOccurs"), group.get("maxOccurs")) == ("0", "3")
    assert group.find(f".//{{{XS}}}element[@name='S_BBB']") is not None
