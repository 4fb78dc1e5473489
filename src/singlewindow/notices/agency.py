"""The DSN to a submitter about the agency leg (SPEC §5, "Agency-leg DSNs").

After the queue: when a copy Single Window forwarded fails or is delayed on its way to an
agency (Postfix's own report, or one from the agency's MTA), the submitter gets this RFC
3464 report instead, naming only the agency's logical address; the agency's own report
(its host, its physical address) never reaches the submitter.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass

from singlewindow import addresses, automatic, notices

_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
# "host mx.example[192.0.2.1]", "connect to mx.example[192.0.2.1]:25", bare IPv4.
_HOST = re.compile(r"(\bhost )?\S+\[[0-9a-fA-F.:]+\](:\d+)?")
_IPV4 = re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b")


@dataclass(frozen=True, slots=True)
class Failed:
    logical: str
    action: str
    status: str
    diagnostic: str


def clean_diagnostic(text: str) -> str:
    """The agency MTA's words without any address or host name in them."""
    text = _HOST.sub("the agency's mail server", text)
    text = _IPV4.sub("<address withheld>", text)
    return addresses.IN_TEXT.sub("<address withheld>", text)[:300]


def build(*, message_id: str, to: str, domain: str, hostname: str, failed: list[Failed],
          hub_name: str = "Single Window", now: float | None = None,
          notice_id: str | None = None) -> bytes:
    """The notice; ``notice_id`` is its Message-ID (the transport's, to send it once)."""
    text = notices.render("agency_failure.txt.j2", message_id=message_id, recipients=failed,
                          hub_name=hub_name)
    boundary = f"{message_id}/{hostname}"
    stamp = email.utils.formatdate(now if now is not None else time.time())
    blocks = [f"Reporting-MTA: dns; {hostname}\r\nArrival-Date: {stamp}\r\n"]
    for f in failed:
        status = f.status if _STATUS.match(f.status) else "5.0.0"
        blocks.append(f"Final-Recipient: rfc822; {f.logical}\r\n"
                      f"Original-Recipient: rfc822; {f.logical}\r\n"
                      f"Action: {f.action}\r\nStatus: {status}\r\n"
                      f"Diagnostic-Code: smtp; {f.diagnostic}\r\n")
    default_id = f"<{message_id}.agency-dsn.{int(time.time() * 1000)}@{domain}>"
    headers = "\r\n".join([
        f"From: MAILER-DAEMON@{domain} (Mail Delivery System)",
        f"To: <{to}>",
        f"Subject: Niet afgeleverd / Undelivered: {message_id}",
        f"Date: {stamp}",
        f"Message-ID: {notice_id or default_id}",
        f"{automatic.NOTICE_HEADER}: agency-dsn {message_id}",
        # RFC 3834 5: an answer written by a program; no auto-responder answers it.
        f"Auto-Submitted: {automatic.AUTO_REPLIED}",
        f"X-SingleWindow-Message: {message_id}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ])
    body = (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: 8bit\r\n\r\n{text.replace(chr(10), chr(13) + chr(10))}\r\n"
            f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
            + "\r\n".join(blocks) + f"\r\n--{boundary}--\r\n")
    return (headers + "\r\n\r\n" + body).encode("utf-8")
