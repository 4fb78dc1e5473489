"""The MIG's EDIFACT definitions and the readers of ``segments.txt`` and
``structure.txt`` (layout: ``mig/data/README.md``)."""

from __future__ import annotations

import re

import pytest

from singlewindow.mig.model import (
    ComponentDef,
    DataError,
    ElementDef,
    Fmt,
    GroupDef,
    SegmentRef,
    is_format,
    read_segments,
    read_structure,
)


@pytest.mark.parametrize(("text", "match"), [
    ("UNH M 1\n  BGM X 1\n", "status must be M or C"),
    ("SG1 C 5\n", "must start with a segment"),
    ("UNH M one\n", "expected"),
])
def test_structure_reader_errors(text: str, match: str) -> None:
    from singlewindow.mig.model import read_structure
    with pytest.raises(DataError, match=match):
        read_structure(text + ("SG2 C 1\n" if "SG1" in text else ""), "x", "M")


def test_segment_reader_errors() -> None:
    from singlewindow.mig.model import read_segments
    with pytest.raises(DataError, match="not a data element format"):
        read_segments("ABC Name\n  C001 M 1 Comp\n    1234 M xx..3 Bad\n", "x")



@pytest.mark.parametrize(("text", "kind", "maximum", "fixed", "minimum"), [
    ("an..35", "an", 35, False, 1),
    ("n3", "n", 3, True, 3),
    ("a..3", "a", 3, False, 1),
    ("an1", "an", 1, True, 1),
])
def test_formats_read_and_written_back(text: str, kind: str, maximum: int, fixed: bool,
                                       minimum: int) -> None:
    fmt = Fmt.parse(text)
    assert (fmt.kind, fmt.max, fmt.fixed, fmt.min) == (kind, maximum, fixed, minimum)
    assert str(fmt) == text
    assert is_format(text)


@pytest.mark.parametrize("text", ["x..3", "an..", "an.3", "AN..35", "n3 ", "35", ""])
def test_what_is_not_a_format(text: str) -> None:
    assert not is_format(text)
    with pytest.raises(DataError, match="not a data element format"):
        Fmt.parse(text)


SEGMENTS = """\
# A comment line, and a blank one, say nothing.

BGM Beginning of message
  C002 C 1 Document name   # composite: components follow
    1001 C an..3 Document name code
    1131 C an..17 Code list identification code
  1004 M 1 an..35 Document identifier
  1225 C 1 an..3 Message function code
NAD Name and address
  3035 M 1 an..3 Party function code qualifier
  3124 C 5 an..35 Name and address description
"""


def test_segments_with_simple_and_composite_elements() -> None:
    segments = read_segments(SEGMENTS, "segments.txt")
    assert list(segments) == ["BGM", "NAD"]
    bgm = segments["BGM"]
    assert bgm.name == "Beginning of message"
    c002, d1004, d1225 = bgm.elements
    assert c002 == ElementDef("C002", "Document name", False, 1, None, (
        ComponentDef("1001", "Document name code", False, Fmt("an", 3, False)),
        ComponentDef("1131", "Code list identification code", False, Fmt("an", 17, False))))
    assert c002.composite and c002.xml_name == "C_C002"
    assert d1004 == ElementDef("1004", "Document identifier", True, 1, Fmt("an", 35, False))
    assert not d1004.composite and d1004.xml_name == "D_1004"
    assert d1225.mandatory is False
    assert segments["NAD"].elements[1].repeat == 5


@pytest.mark.parametrize(("text", "complaint"), [
    ("  1004 M 1 an..35 Id\n", "segments.txt:1: element before any segment"),
    ("BGM Begin\n   1004 M 1 an..35 Id\n", "segments.txt:2: unexpected indentation"),
    ("BGM Begin\n  1004 M\n", "segments.txt:2: expected 'ID M|C REPEAT"),
    ("BGM Begin\n  C002 C 1 Name\n", "segment BGM: composite C002 has no components"),
    ("# head\nBGM Begin\n  1004 M 1 an..35 Id\n    1001 C an..3 Code\n",
     "segments.txt:4: unexpected indentation"),
])
def test_segment_file_errors_name_the_line(text: str, complaint: str) -> None:
    with pytest.raises(DataError, match=re.escape(complaint)):
        read_segments(text, "segments.txt")


STRUCTURE = """\
UNH M 1
BGM M 1
SG1 C 9        # a group: entered by its first segment
  NAD M 1
  SG2 C 5
    RFF M 1
    DTM C 1
  COM C 2
UNT M 1
"""


def test_structure_nests_groups_by_indentation() -> None:
    root = read_structure(STRUCTURE, "structure.txt", "M_PAXLST")
    assert (root.name, root.mandatory, root.max) == ("M_PAXLST", True, 1)
    assert root.triggers == ("UNH", "BGM", "NAD", "UNT")
    unh, bgm, sg1, unt = root.children
    assert unh == SegmentRef("UNH", True, 1) and unt == SegmentRef("UNT", True, 1)
    assert bgm == SegmentRef("BGM", True, 1)
    assert isinstance(sg1, GroupDef)
    assert (sg1.name, sg1.mandatory, sg1.max, sg1.trigger) == ("SG1", False, 9, "NAD")
    nad, sg2, com = sg1.children
    assert nad == SegmentRef("NAD", True, 1)
    assert isinstance(sg2, GroupDef) and sg2.triggers == ("RFF", "DTM")
    assert sg2.max == 5 and com == SegmentRef("COM", False, 2)
    assert root.trigger == "UNH"


def test_structure_errors_name_the_line() -> None:
    with pytest.raises(DataError, match=re.escape("structure.txt:2: status must be M or C")):
        read_structure("UNH M 1\nBGM Y 1\n", "structure.txt", "M")
    with pytest.raises(DataError, match="segment group SG2 must start with a segment"):
        read_structure("UNH M 1\nSG1 C 1\n  NAD M 1\n  SG2 C 1\n    SG3 C 1\n"
                       "      RFF M 1\n", "structure.txt", "M")
