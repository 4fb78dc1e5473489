from __future__ import annotations

from singlewindow.notices import agency
from singlewindow.transport import dsn

REPORT = (b"From: MAILER-DAEMON@mail.sw.test\r\n"
          b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n"
          b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nsorry\r\n"
          b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
          b"Reporting-MTA: dns; mail.sw.test\r\nOriginal-Envelope-Id: SW123\r\n\r\n"
          b"Final-Recipient: rfc822; in@customs.example\r\n"
          b"Original-Recipient: rfc822;customs@sw.test\r\n"
          b"Action: failed\r\nStatus: 5.1.1\r\n"
          b"Diagnostic-Code: smtp; 550 5.1.1 <in@customs.example>: no such user\r\n"
          b"--b--\r\n")


def test_parse_delivery_status() -> None:
    report = dsn.parse(REPORT)
    assert report is not None and report.envid == "SW123" and report.failed
    [r] = report.recipients
    assert (r.final_recipient, r.original_recipient) == ("in@customs.example",
                                                         "customs@sw.test")
    assert (r.action, r.status) == ("failed", "5.1.1")


def test_nul_and_8bit_fields_are_text_the_store_holds() -> None:
    raw = REPORT.replace(b"Id: SW123", b"Id: \xe9\x00SW123").replace(
        b"no such user", b"no \x00such \xff\xfeuser")
    report = dsn.parse(raw)
    assert report is not None and report.envid == "\ufffd\ufffdSW123"
    [r] = report.recipients
    assert r.diagnostic.endswith("no \ufffdsuch \ufffd\ufffduser")
    assert "\x00" not in repr(report) and report.failed


def test_not_a_report() -> None:
    assert dsn.parse(b"Subject: x\r\n\r\nhello\r\n") is None


def test_agency_failure_notice_hides_the_agency() -> None:
    diag = agency.clean_diagnostic(
        "host mx.customs.example[192.0.2.7] said: 550 5.1.1 <in@customs.example>: unknown")
    assert "customs.example" not in diag and "192.0.2.7" not in diag
    raw = agency.build(message_id="SW123", to="acme@sw.test", domain="sw.test",
                       hostname="mail.sw.test",
                       failed=[agency.Failed("customs@sw.test", "failed", "5.1.1", diag)])
    parsed = dsn.parse(raw)
    assert parsed is not None and parsed.envid == ""  # never matched as a report again
    assert [r.final_recipient for r in parsed.recipients] == ["customs@sw.test"]
    assert b"customs.example" not in raw
    assert b"X-SingleWindow-Notice: agency-dsn SW123" in raw


def test_returned_message_id_only_from_the_returned_part() -> None:
    """The copy's Message-ID counts only in the returned headers (RFC 3462), not in the
    report's own headers nor in its human-readable text (issue 12)."""
    headers = REPORT.replace(b"From: MAILER-DAEMON", b"Message-ID: <own@mx>\r\nFrom: M").replace(
        b"sorry\r\n", b"sorry about Message-ID: <SW1.ab@sw.test>\r\n").replace(
        b"--b--\r\n", b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
                      b"Subject: x\r\nMessage-ID: <SW1.cd@sw.test>\r\n\r\n--b--\r\n")
    parsed = dsn.parse(headers)
    assert parsed is not None and parsed.returned_message_id == "<SW1.cd@sw.test>"
    whole = REPORT.replace(b"--b--\r\n", b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
                           b"Message-ID: <SW2.ef@sw.test>\r\nSubject: y\r\n\r\nbody\r\n--b--\r\n")
    parsed = dsn.parse(whole)
    assert parsed is not None and parsed.returned_message_id == "<SW2.ef@sw.test>"
    parsed = dsn.parse(REPORT)
    assert parsed is not None and parsed.returned_message_id == ""
