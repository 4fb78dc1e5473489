"""The control message as Single Window sends it: one body part, errors in three forms."""

from __future__ import annotations

import base64
import email
import re

import jinja2
import pytest
from lxml import etree

from singlewindow import mig, notices
from singlewindow.mig.contrl import contrl
from singlewindow.mig.errors import ErrorClass, MigError, Place
from singlewindow.mig.loader import Registry
from singlewindow.mig.validate import Interchange, Result, validate
from singlewindow.notices import control
from singlewindow.notices.control import control_text, frm_xml
from tests.support import factory
from tests.support.factory import broken, gendec

FRM = {"f": "urn:singlewindow:mig:frm:1"}


def test_one_body_part_with_text_xml_and_contrl() -> None:
    broken = factory.paxlst().replace(b"UNT+", b"UNT+9")
    result = mig.validate(broken, "application/EDIFACT")
    assert not result.valid
    raw = control.build(result, message_id="SW1", sender="single-window@sw.test",
                        to="acme@sw.test", domain="sw.test", in_reply_to="<o@acme.example>")
    message = email.message_from_bytes(raw)
    assert not message.is_multipart()
    assert message.get_content_type() == "text/plain"
    assert message["In-Reply-To"] == "<o@acme.example>"
    assert message["To"] == "<acme@sw.test>"
    text = base64.b64decode(message.get_payload()).decode()
    assert "(COUNT)" in text and "rule:  ISO9735-UNT-0074" in text
    assert "<Status>Rejected</Status>" in text and "<Code>" in text
    assert "UNH+1+CONTRL" in text


def test_only_an_ascii_msg_id_threads() -> None:
    assert control.thread_id(" <o.1@acme.example> ") == "<o.1@acme.example>"
    for bad in (None, "", "<caf\xe9@acme.example>", "<no-at-sign>", "<a@b> <c@d>",
                "<a@b\x00>", "<" + "x" * 1000 + "@b>", "o@acme.example"):
        assert control.thread_id(bad) is None, bad
    result = mig.validate(b"<a/>", "application/xml")
    raw = control.build(result, message_id="SW1", sender="single-window@sw.test",
                        to="acme@sw.test", domain="sw.test", in_reply_to="<\xe9@a.example>")
    assert raw.isascii() and b"In-Reply-To" not in raw and b"References" not in raw


def test_control_message_is_marked_as_the_hubs_automatic_answer() -> None:
    # Issue 12: RFC 3834 Auto-Submitted, and the header the transport knows its own by.
    result = mig.validate(factory.paxlst().replace(b"UNT+", b"UNT+9"), "application/EDIFACT")
    raw = control.build(result, message_id="SW1", sender="single-window@sw.test",
                        to="acme@sw.test", domain="sw.test", in_reply_to=None)
    message = email.message_from_bytes(raw)
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-SingleWindow-Notice"] == "control SW1"


# --- its text and FRM XML for each error class, bounded in size ------------------------

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



def test_templates_are_strict(reg: Registry) -> None:
    env = notices.environment()
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("control_message.txt.j2").render({})



def test_valid_result_frm_is_accepted() -> None:
    assert b"<Status>Accepted</Status>" in frm_xml(Result("GENDEC-1", "xml", ()))



def huge_result(count: int, syntax: str) -> Result:
    """A result with ``count`` errors, each with a 20 kB text, rule and XPath."""
    big = "x" * 20_000
    if syntax == "xml":
        place = Place(xpath="/" + "*[local-name()='A' and namespace-uri()='urn:x']/" * 400,
                      line=1)
        errors = tuple(MigError(ErrorClass.XSD, big, big, place) for _ in range(count))
        return Result("GENDEC-1", "xml", errors)
    # Long message references: the first few hundred each their own, the rest one.
    refs = [f"M{n}" + big if n < 300 else big for n in range(count)]
    kind = "PAXLST:D:03B:UN:" + big
    info = Interchange("UNOA", 4, (big,), (big,), big, tuple((ref, kind) for ref in refs))
    places = [Place(segment=n, tag="NAD", element=n % 9 + 1, component=1, message=refs[n],
                    interchange_segment=n) for n in range(300)]
    errors = tuple(MigError(ErrorClass.FORMAT, big, big, places[min(n, 299)], 39)
                   for n in range(count))
    return Result("PAXLST-D03B", "edifact", errors, None, info)



@pytest.mark.parametrize("syntax", ["xml", "edifact"])
def test_a_control_message_stays_under_a_megabyte(syntax: str) -> None:
    result = huge_result(100_000, syntax)
    raw = control.build(result, message_id="SW1", sender="single-window@sw.test",
                        to="acme@sw.test", domain="sw.test", in_reply_to=None)
    assert len(raw) <= 1024 * 1024, len(raw)
    text = base64.b64decode(email.message_from_bytes(raw).get_payload()).decode()
    assert re.search(r"has\s+100000 errors", text)
    assert "99800 more errors, not listed here" in text
    assert "<ErrorsNotListed>99800</ErrorsNotListed>" in text
    assert text.count("\n1. ") == 1 and "\n200. " in text and "\n201. " not in text

