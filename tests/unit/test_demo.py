"""``swctl demo``'s own parts, without the stack: the demo data it ships, the messages it
writes, its sinks (real aiosmtpd servers, fed by smtplib) and what it shows of a message.
The whole round trip runs against the demo stack in ``tests/integration/test_demo.py``."""

from __future__ import annotations

import smtplib
import threading
import time
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from lxml import etree

from singlewindow import demo
from singlewindow.mig.loader import registry
from singlewindow.mig.validate import validate
from tests.support.local import free_port


@pytest.mark.parametrize(("name", "ctype", "kind"), [
    ("paxlst.edi", "application/edifact", "PAXLST-D03B"),
    ("gendec.xml", "application/xml", "GENDEC-1"),
    ("declaration-response.xml", "application/xml", "DECLARATION-RESPONSE-1"),
])
def test_the_shipped_demo_messages_are_valid(name: str, ctype: str, kind: str) -> None:
    """Each demo message passes the MIG: the demo shows a delivery, not a refusal."""
    result = validate(demo._data(name), ctype, registry())
    assert result.message_type == kind and result.valid, result


def test_a_demo_message_is_a_mime_message_with_its_own_id() -> None:
    data = demo._message("edi@acme.example", "customs@sw.test", "PAXLST KL0641",
                         b"UNA:+.? '", "application/EDIFACT", "In-Reply-To: <x@sw.test>\r\n")
    head, body = data.split(b"\r\n\r\n", 1)
    assert body == b"UNA:+.? '"
    parsed = message_from_bytes(data, policy=policy.default)
    assert (parsed["From"], parsed["To"], parsed["Subject"]) == (
        "edi@acme.example", "customs@sw.test", "PAXLST KL0641")
    assert parsed["In-Reply-To"] == "<x@sw.test>" and parsed["MIME-Version"] == "1.0"
    assert parsed.get_content_type() == "application/edifact"
    assert parsed["Message-ID"].endswith("@acme.example>")
    time.sleep(0.001)
    again = demo._message("edi@acme.example", "customs@sw.test", "s", b"", "text/plain")
    assert message_from_bytes(again)["Message-ID"] != parsed["Message-ID"]
    assert b"\n" not in head.replace(b"\r\n", b"")  # CRLF line ends only


def test_a_sink_keeps_what_an_smtp_client_sends_and_wait_finds_it() -> None:
    sink = demo._Sink("customs' MTA", free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        def send() -> None:
            time.sleep(0.3)
            with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
                smtp.sendmail("a@sw.test", ["b@customs.example"],
                              b"Subject: needle 42\r\n\r\nbody\r\n")

        sender = threading.Thread(target=send)
        sender.start()
        found = demo._wait(sink, b"needle 42", timeout=10)
        sender.join()
    finally:
        controller.stop()
    assert b"Subject: needle 42" in found
    assert sink.received[0][0] == "a@sw.test"


def test_wait_gives_up_naming_the_sink() -> None:
    sink = demo._Sink("acme's MTA", 1)
    with pytest.raises(TimeoutError, match="nothing with b'DSN' reached acme's MTA within 0s"):
        demo._wait(sink, b"DSN", timeout=0.3)


def shown(data: bytes, lines: int = 14) -> list[str]:
    said: list[str] = []
    demo._show(said.append, "title", data, lines)
    return "\n".join(said).splitlines()


def test_show_prints_the_headers_and_the_start_of_the_body() -> None:
    out = shown(demo._message("a@x.example", "b@sw.test", "GENDEC", demo._data("gendec.xml"),
                              "application/xml"), lines=3)
    assert out[:5] == ["", "=== title ===", "From: a@x.example", "To: b@sw.test",
                       "Subject: GENDEC"]
    assert out[5].startswith("Message-ID: <")
    # The XML one element a line, cut after ``lines`` lines.
    body = out[6:]
    assert len(body) == 4 and body[-1] == "  ..."
    assert body[0].startswith("<?xml") or body[0].startswith("<")
    etree.fromstring(demo._data("gendec.xml"))  # what was cut is the shipped XML


def test_show_prints_each_recipients_status_of_a_dsn() -> None:
    dsn = (b"From: <MAILER-DAEMON@sw.test>\r\nTo: <edi@acme.example>\r\nSubject: delivered\r\n"
           b"MIME-Version: 1.0\r\n"
           b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\nYour message was delivered.\r\n"
           b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
           b"Reporting-MTA: dns; sw.test\r\n\r\n"
           b"Final-Recipient: rfc822; customs@sw.test\r\nAction: delivered\r\n"
           b"Status: 2.0.0\r\n\r\n"
           b"Final-Recipient: rfc822; coastguard@sw.test\r\nAction: failed\r\n"
           b"Status: 5.7.1\r\nDiagnostic-Code: smtp; 550 5.7.1\r\n  not allowed\r\n"
           b"--b--\r\n")
    out = shown(dsn)
    assert out[-3:] == ["  rfc822; customs@sw.test: Action delivered, Status 2.0.0",
                        "  rfc822; coastguard@sw.test: Action failed, Status 5.7.1",
                        "    smtp; 550 5.7.1 not allowed"]
    assert "Your message was delivered." not in "\n".join(out)
