"""The control message (SPEC R6.1): what is wrong with a submission, sent to its submitter.

After the queue: the transport found MIG errors, forwards nothing and sends this instead,
to the submitter's logical address, with the null envelope sender (issue 12); its From is
Single Window's own address, which is no party's: a reply to it is refused at RCPT
(550 5.1.1, unknown recipient), so it reaches nobody and loops nowhere. One body part
(SPEC R5.3 holds for what Single Window sends, too): the readable report, then the same
errors as FRM-style XML, then, for EDIFACT syntax errors, a UN/EDIFACT CONTRL message
(:mod:`singlewindow.mig.contrl`). The text and XML parts are the templates
``control_message.txt.j2`` and ``control_message.xml.j2``.

What is rendered is bounded whatever the input: at most ``MAX_LISTED`` errors (the ones
the CONTRL reports, :mod:`singlewindow.mig.contrl`), each text and field cut to a few
hundred characters; so a control message stays well under 1 MB.
"""

from __future__ import annotations

import base64
import email.utils
import re
import time

from singlewindow import automatic, notices
from singlewindow.mig.contrl import MAX_LISTED, contrl
from singlewindow.mig.errors import MigError
from singlewindow.mig.validate import Result

SUBJECT = "Controlebericht / Control message"
# RFC 5322 3.6.4 msg-id, in printable ASCII: "<" id-left "@" id-right ">", and short
# enough for one header line (RFC 5322 2.1.1: 998 octets).
_MSG_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")
_MAX_MSG_ID = 900
#: Characters kept of an error's text, and of its rule, place and pointer fields.
MAX_TEXT = 400
MAX_FIELD = 300
#: Between the readable report and the FRM XML in the one body part.
_XML_PART = "\n\n--- Machine-readable report (FRM XML) ---\n\n"


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


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[:size - 3] + "..."


def _listed(error: MigError) -> dict[str, object]:
    """``error.as_dict()`` with every text cut to size."""
    found = error.as_dict()
    found["text"] = _cut(error.text, MAX_TEXT)
    for key in ("rule", "place"):
        found[key] = _cut(str(found[key]), MAX_FIELD)
    location = found["location"]
    assert isinstance(location, dict)
    found["location"] = {k: _cut(v, MAX_FIELD) if isinstance(v, str) else v
                         for k, v in location.items()}
    return found


def _context(result: Result, submitted: str) -> dict[str, object]:
    """What both parts' templates are given (docs/notices.md)."""
    contrl_text = contrl(result)
    info = result.interchange
    return {
        "message_type": result.message_type,
        "syntax": result.syntax,
        "reference": _cut(info.reference, MAX_FIELD) if info else "",
        "submitted": submitted,
        "count": len(result.errors),
        "errors": [_listed(e) for e in result.errors[:MAX_LISTED]],
        "unlisted": max(0, len(result.errors) - MAX_LISTED),
        "has_contrl": contrl_text is not None,
        "contrl": (contrl_text or b"").decode("latin-1"),
    }


def control_text(result: Result, submitted: str = "") -> str:
    """The human part of the control message."""
    return notices.render("control_message.txt.j2", **_context(result, submitted))


def frm_xml(result: Result, submitted: str = "") -> bytes:
    """The machine-readable part: status, and per error code, description, pointer."""
    return notices.render("control_message.xml.j2", **_context(result, submitted)).encode("utf-8")


def build(result: Result, *, message_id: str, sender: str, to: str, domain: str,
          in_reply_to: str | None, now: float | None = None) -> bytes:
    context = _context(result, message_id)
    text = notices.render("control_message.txt.j2", **context)
    xml = notices.render("control_message.xml.j2", **context)
    body = text.rstrip("\n") + _XML_PART + xml
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
