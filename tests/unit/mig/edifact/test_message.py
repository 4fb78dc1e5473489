"""Structure, format and code-list checks of one message, each error class with a broken case."""

from __future__ import annotations

import pytest

from singlewindow.mig.errors import ErrorClass, MigError
from singlewindow.mig.loader import Registry
from singlewindow.mig.validate import validate
from tests.support.factory import iftdgn, interchange, paxlst, paxlst_message, with_unt


def check(reg: Registry, segments: list[str]) -> list[MigError]:
    return list(validate(interchange([with_unt(segments)]), None, reg).errors)


def base() -> list[str]:
    return paxlst_message("M0", 1)


def test_factory_messages_are_valid(reg: Registry) -> None:
    for data in (paxlst(3), paxlst(2, 3, "05B"), iftdgn()):
        result = validate(data, None, reg)
        assert result.errors == () and result.xml is not None


@pytest.mark.parametrize(("mutate", "rule", "code", "text"), [
    (lambda s: [x for x in s if not x.startswith("BGM")], "PAXLST-D03B:BGM", 13, "missing"),
    (lambda s: s[:4] + s[9:], "PAXLST-D03B:SG2", 13, "missing"),
    (lambda s: [*s[:2], "QTY+1:1'", *s[2:]], "PAXLST-D03B:QTY", 15, "not allowed"),
    (lambda s: [*s[:2], "RFF+ABO:1'", "RFF+ABO:2'", *s[2:]], "PAXLST-D03B:RFF", 35, "more than 1"),
    (lambda s: s[:-2] + ["DOC+P+1'"] * 6 + s[-2:], "PAXLST-D03B:SG5", 36, "more than 5"),
])
def test_structure_errors(reg: Registry, mutate: object, rule: str, code: int, text: str) -> None:
    errors = check(reg, mutate(base()))  # type: ignore[operator]
    found = [e for e in errors if e.cls is ErrorClass.STRUCTURE]
    # The first finding may be a consequence (without SG2, a person's NAD reads as SG1).
    assert any(e.rule == rule and e.syntax_code == code and text in e.text for e in found), found


@pytest.mark.parametrize(("segment", "rule", "code"), [
    ("NAT+2+NLDX'", "PAXLST-D03B:NAT/3293", 39),            # an..3 too long
    ("CNT+42:X'", "PAXLST-D03B:CNT/6066", 37),              # n..18 not numeric
    ("DTM+:20240101:102'", "PAXLST-D03B:DTM/2005", 13),     # mandatory component missing
    ("NAT'", "PAXLST-D03B:NAT/3493", 13),                   # mandatory element missing
    ("NAT+2+NLD+X'", "PAXLST-D03B:NAT", 16),                # more elements than defined
    ("NAT+2+NLD:1:2:DUTCH:3'", "PAXLST-D03B:NAT/C042", 16),  # more components than defined
    ("ATT+2++M*M*M*M*M*M'", "PAXLST-D03B:ATT/C956", 35),    # repetitions over 5
    ("NAT+2*3+NLD'", "PAXLST-D03B:NAT/3493", 35),           # repetition of a non-repeating one
])
def test_format_errors(reg: Registry, segment: str, rule: str, code: int) -> None:
    msg = base()
    at = next(i for i, s in enumerate(msg) if s.startswith(segment[:3]) and segment[:3] != "CNT")\
        if segment[:3] != "CNT" else len(msg) - 2
    msg[at] = segment
    errors = [e for e in check(reg, msg) if e.cls is ErrorClass.FORMAT]
    assert errors and errors[0].rule == rule and errors[0].syntax_code == code
    assert errors[0].place.segment == at + 1 and errors[0].place.tag == segment[:3]


def test_code_list_error(reg: Registry) -> None:
    msg = base()
    msg[1] = "BGM+745++99'"
    errors = check(reg, msg)
    assert [e.cls for e in errors] == [ErrorClass.CODELIST]
    assert errors[0].rule == "PAXLST-D03B:BGM/1225/codes"
    assert errors[0].place.element == 3 and errors[0].syntax_code == 12


def test_second_person_is_a_new_group_repetition(reg: Registry) -> None:
    result = validate(paxlst(2), None, reg)
    assert result.xml is not None and result.xml.count(b"<G_SG4>") == 2


def test_public_sample_groups_nest_as_expected(public: object, reg: Registry) -> None:
    from pathlib import Path

    from lxml import etree
    data = (Path(str(public)) / "paxlst-d03b-smooks-message_01.edi").read_bytes()
    xml = validate(data, None, reg).xml
    assert xml is not None
    ns = {"p": "urn:singlewindow:mig:PAXLST:D03B"}
    root = etree.fromstring(xml)
    msg = root.find("p:G_UNG/p:M_PAXLST", ns)
    assert [etree.QName(c).localname for c in msg] == [
        "S_UNH", "S_BGM", "S_RFF", "G_SG2", "G_SG4", "S_UNT"]
    assert [etree.QName(c).localname for c in msg.find("p:G_SG2", ns)] == ["S_TDT", "S_DTM"]
    sg4 = [etree.QName(c).localname for c in msg.find("p:G_SG4", ns)]
    assert sg4 == ["S_NAD", "S_ATT", "S_DTM", "S_EMP", "S_NAT", "G_SG5", "G_SG5"]
    sg5 = msg.findall("p:G_SG4/p:G_SG5", ns)
    assert [[etree.QName(c).localname for c in g] for g in sg5] == [
        ["S_DOC", "S_LOC", "S_LOC"], ["S_DOC", "S_LOC"]]
    assert len(msg.findall("p:G_SG4/p:S_ATT/p:C_C956", ns)) == 5  # syntax-4 repetitions
    street = msg.find("p:G_SG4/p:S_NAD/p:C_C059/p:D_3042", ns).text
    assert street == "11107 SUNSET HILL'S ROAD"  # release character removed
    assert msg.find("../p:S_UNG/p:C_S007/p:D_0044", ns).text == "CBP-A+CE-TEST"
