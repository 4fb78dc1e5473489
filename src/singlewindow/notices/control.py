"""The control message (SPEC R6.1): what is wrong with a submission, sent to its submitter.

After the queue: the transport found MIG errors, forwards nothing and sends this instead,
to the submitter's logical address, with the null envelope sender (issue 12); its From is
Single Window's own address, which is no party's: a reply to it is refused at RCPT
(550 5.1.1, unknown recipient), so it reaches nobody and loops nowhere. One body part
(SPEC R5.3 holds for what Single Window sends, too): the readable report, then the same
errors as FRM-style XML, then, for EDIFACT syntax errors, a UN/EDIFACT CONTRL message.
"""

from __future__ import annotations

import base64
import email.utils
import re
import time

from singlewindow import automatic
from singlewindow.mig import report
from singlewindow.mig.validate import Result

SUBJECT = "Controlebericht / Control message"
# RFC 5322 3.6.4 msg-id, in printable ASCII: "<" id-left "@" id-right ">", and short
# enough for one header line (RFC 5322 2.1.1: 998 octets).
_MSG_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")
_MAX_MSG_ID = 900


def thread_id(header_value: str | None) -> str | None:
    """The submitter's Message-ID as In-Reply-To/References may carry it, or None.

    The control message is 7-bit (RFC 5322 headers are ASCII; Single Window does not
    rely on SMTPUTF8), so an 8-bit, malformed or huge Message-ID is left out: the
    control message then does not thread, and names the submission by its Single Window
    id anyway.
    """
    value = (header_value or "").strip()
    if len(value) > _MAX_MSG_ID or not _MSG_ID.fullmatch(value):
        return None
    return value


def build(result: Result, *, message_id: str, sender: str, to: str, domain: str,
          in_reply_to: str | None, now: float | None = None) -> bytes:
    text = report.control_text(result, message_id)
    xml = report.frm_xml(result, message_id).decode("utf-8")
    body = (text.rstrip("\n") + "\n\n--- Machine-readable report (FRM XML) ---\n\n" + xml)
    encoded = base64.encodebytes(body.encode("utf-8")).replace(b"\n", b"\r\n")
    headers = [
        f"From: Single Window <{sender}>",
        f"To: <{to}>",
        f"Subject: {SUBJECT} {message_id}",
        f"Date: {email.utils.formatdate(now if now is not None else time.time())}",
        f"Message-ID: <{message_id}.control@{domain}>",
        f"X-SingleWindow-Message: {message_id}",
        # Issue 12: the hub's own mail, recognised by this (its envelope sender is null,
        # like a DSN's), and, RFC 3834 5, an answer no auto-responder answers.
        f"{automatic.NOTICE_HEADER}: control {message_id}",
        f"Auto-Submitted: {automatic.AUTO_REPLIED}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: base64",
    ]
    thread = thread_id(in_reply_to)
    if thread:
        headers.append(f"In-Reply-To: {thread}")
        headers.append(f"References: {thread}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + encoded
