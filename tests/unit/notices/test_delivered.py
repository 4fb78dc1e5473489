"""The "delivered" DSN the transport writes (RFC 3464), read back as a report."""

from __future__ import annotations

import email
import email.policy

from singlewindow.notices import delivered
from singlewindow.transport import dsn

HEAD = (b"Received: from x by mail.sw.test; Mon, 30 Nov 2026 00:00:00 +0000\r\n"
        b"From: <co@sw.test>\r\nTo: <ag@sw.test>\r\nSubject: s\r\n\r\n")
BODY = b"<a/>\r\n"


def build(**changes: object) -> bytes:
    options: dict[str, object] = dict(
        to="co@sw.test", hostname="mail.sw.test", domain="sw.test",
        recipients=[delivered.Delivered("ag@sw.test", "rfc822;AG@sw.test",
                                        "250 2.0.0 Delivered to Single Window as SW1"),
                    delivered.Delivered("ag2@sw.test", None, "250 2.0.0 Delivered")],
        head=HEAD, body=None, envid="ref-1", arrival=0.0, now=60.0, boundary="SW1.x/h")
    options.update(changes)
    return delivered.build(**options)  # type: ignore[arg-type]  # the test's own mix


def test_a_report_of_each_recipient_delivered() -> None:
    raw = build()
    report = dsn.parse(raw)
    assert report is not None and report.envid == "ref-1" and not report.failed
    assert [(r.final_recipient, r.original_recipient, r.action, r.status)
            for r in report.recipients] == [
        ("ag@sw.test", "AG@sw.test", "delivered", "2.0.0"),
        ("ag2@sw.test", "", "delivered", "2.0.0")]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["Date"] == "Thu, 01 Jan 1970 00:01:00 +0000"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    text = parts[0].get_content()
    assert "Uw bericht is afgeleverd" in text and "Your message was delivered" in text
    assert "X-SingleWindow-Message" in text


def test_ret_full_returns_the_message_and_no_envid_no_field() -> None:
    raw = build(body=BODY, envid=None)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert [p.get_content_type() for p in message.iter_parts()][-1] == "message/rfc822"
    assert b"Original-Envelope-Id" not in raw and raw.endswith(b"<a/>\r\n\r\n--SW1.x/h--\r\n")
