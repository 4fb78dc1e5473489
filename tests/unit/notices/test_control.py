"""The control message as Single Window sends it: one body part, errors in three forms."""

from __future__ import annotations

import base64
import email

from singlewindow import mig
from singlewindow.notices import agency, control
from tests.support import factory


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


def test_agency_failure_notice_is_marked_auto_replied() -> None:
    raw = agency.build(message_id="SW1", to="acme@sw.test", domain="sw.test",
                       hostname="mail.sw.test", failed=[agency.Failed(
                           "customs@sw.test", "failed", "5.1.1", "no such mailbox")])
    message = email.message_from_bytes(raw)
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-SingleWindow-Notice"] == "agency-dsn SW1"
