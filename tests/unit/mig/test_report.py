"""Control message content for every error class; CONTRL; FRM-style XML."""

from __future__ import annotations

import pytest
from lxml import etree

from singlewindow.mig.edifact.syntax import chunked, iter_segments
from singlewindow.mig.errors import ErrorClass
from singlewindow.mig.loader import Registry
from singlewindow.mig.report import contrl, control_text, frm_xml
from singlewindow.mig.validate import Result, validate
from tests.unit.mig.factory import gendec, interchange, paxlst, paxlst_message

FRM = {"f": "urn:singlewindow:mig:frm:1"}


def broken(kind: str) -> bytes:
    msg = paxlst_message("M0", 1)
    if kind == "syntax":
        return interchange([msg]).replace(b"UNZ+1+REF1'\n", b"")
    if kind == "count":
        return interchange([msg]).replace(b"UNZ+1+", b"UNZ+2+")
    if kind == "structure":
        msg.insert(2, "QTY+1:1'")
    elif kind == "format":
        msg[1] = "BGM+745+" + "X" * 40 + "'"
    elif kind == "codelist":
        msg[1] = "BGM+745++99'"
    elif kind == "rule":  # a date of birth in month 99
        at = next(i for i, s in enumerate(msg) if s.startswith("DTM+329"))
        msg[at] = "DTM+329:19609915:102'"
    body = [s for s in msg if not s.startswith("UNT")]
    body.append(f"UNT+{len(body) + 1}+M0'")
    return interchange([body])


CASES = [
    ("syntax", ErrorClass.SYNTAX, "ISO9735-UNZ", "has no UNZ"),
    ("count", ErrorClass.COUNT, "ISO9735-UNZ-0036", "UNZ says 2 messages"),
    ("structure", ErrorClass.STRUCTURE, "PAXLST-D03B:QTY", "QTY is not allowed here"),
    ("format", ErrorClass.FORMAT, "PAXLST-D03B:BGM/1004", "at most 35"),
    ("codelist", ErrorClass.CODELIST, "PAXLST-D03B:BGM/1225/codes", "not in the MIG's code list"),
    ("rule", ErrorClass.RULE, "PAXLST-D03B:PAX-R5", "not a date of the calendar"),
]


@pytest.mark.parametrize(("kind", "cls", "rule", "text"), CASES)
def test_control_message_names_each_error_class(reg: Registry, kind: str, cls: ErrorClass,
                                                rule: str, text: str) -> None:
    result = validate(broken(kind), None, reg)
    assert not result.valid and result.xml is None  # nothing to forward
    body = control_text(result, "<m1@company.test>")
    assert f"SW-{cls.value} ({cls.value})" in body
    assert f"rule:  {rule}" in body and text in body
    assert "has not been forwarded" in body
    frm = etree.fromstring(frm_xml(result))
    assert frm.findtext("f:Status", namespaces=FRM) == "Rejected"
    assert frm.findtext("f:Error/f:Code", namespaces=FRM) == f"SW-{cls.value}"
    assert frm.findtext("f:Error/f:Rule", namespaces=FRM) == rule


def test_xsd_error_in_control_message(reg: Registry) -> None:
    payload = gendec().replace(b"<Flag>PA</Flag>", b"<Flag>P</Flag>")
    line = str(payload[:payload.index(b"<Flag>")].count(b"\n") + 1)
    result = validate(payload, None, reg)
    body = control_text(result)
    assert "SW-XSD (XSD)" in body and "GENDEC-1:XSD" in body and f"(line {line})" in body
    frm = etree.fromstring(frm_xml(result))
    assert frm.findtext("f:Error/f:Pointer/f:XPath", namespaces=FRM)
    assert frm.findtext("f:Error/f:Pointer/f:Line", namespaces=FRM) == line
    assert contrl(result) is None  # XML submissions get no CONTRL


def test_unsafe_xml_control_message(reg: Registry) -> None:
    result = validate(b'<!DOCTYPE a SYSTEM "http://x/a.dtd"><a/>', None, reg)
    assert "SW-UNSAFE" in control_text(result)


def test_contrl_for_syntax_errors(reg: Registry) -> None:
    result = validate(broken("format"), None, reg)
    text = contrl(result, now=0)
    assert text is not None
    segs = list(iter_segments(chunked(text), []))
    tags = [s.tag for s in segs]
    assert tags == ["UNB", "UNH", "UCI", "UCM", "UCS", "UCD", "UNT", "UNZ"]
    assert segs[1].value(2) == "CONTRL" and segs[1].value(2, 2) == "4"
    assert segs[2].value(1) == "REF1" and segs[2].value(4) == "4"  # interchange rejected
    assert segs[3].value(1) == "M0" and segs[3].value(3) == "4"  # message rejected
    assert segs[4].value(1) == "2"  # BGM is segment 2
    assert segs[5].value(1) == "39" and segs[5].value(2) == "2"  # too long, element 2
    assert segs[6].value(1) == str(len(segs) - 2)  # UNT counts UNH..UNT
    assert segs[0].value(3) == "SENDER"  # goes back to the submitter


def test_contrl_also_for_count_errors_and_not_for_rules(reg: Registry) -> None:
    count = contrl(validate(broken("count"), None, reg))
    assert count is not None and b"UCI+REF1+SENDER:ZZZ+NLSW:ZZZ+4+29+UNZ'" in count
    assert contrl(validate(broken("rule"), None, reg)) is None


def test_templates_are_strict(reg: Registry) -> None:
    import jinja2

    from singlewindow.mig import report
    env = report._environment(False)
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("control_message.txt.j2").render({})


def test_valid_result_frm_is_accepted() -> None:
    assert b"<Status>Accepted</Status>" in frm_xml(Result("GENDEC-1", "xml", ()))


def test_valid_paxlst_has_no_contrl(reg: Registry) -> None:
    assert contrl(validate(paxlst(1), None, reg)) is None
