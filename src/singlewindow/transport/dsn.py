"""Reading delivery status notifications (RFC 3464) about copies Single Window forwarded.

After the queue: a DSN about the agency leg (from Postfix's own bounce service, or from an
agency's MTA) carries the copy's own ENVID (Original-Envelope-Id, RFC 3464 2.2.1), a token
only the copy's receiver saw, and usually returns the copy's headers with its Message-ID
(RFC 3462 text/rfc822-headers, or the whole message/rfc822); :mod:`.agency_report`
matches the report to the copy by these (issue 12). No I/O.
"""

from __future__ import annotations

import email
import email.message
import email.policy
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    final_recipient: str
    original_recipient: str
    action: str
    status: str
    diagnostic: str


@dataclass(frozen=True, slots=True)
class Report:
    envid: str
    recipients: tuple[RecipientStatus, ...]
    returned_message_id: str = ""
    """The Message-ID of the returned message (the report's third part), if any."""

    @property
    def failed(self) -> bool:
        """Anything the submitter must hear of: a failure or a delay (RFC 3464 2.3.3)."""
        return any(r.action in ("failed", "delayed") for r in self.recipients)


def _address(value: str) -> str:
    """``rfc822; a@b`` → ``a@b`` (RFC 3464 2.3.1 address-type; address)."""
    return value.split(";", 1)[-1].strip()


def _field(block: email.message.Message, name: str) -> str:
    """One field's value as text the store can hold: the fields are the reporting MTA's
    words, any bytes; NUL (which no text or jsonb value holds) and what is not UTF-8
    become U+FFFD."""
    value = str(block.get(name, "")).encode("utf-8", "surrogateescape")
    return value.decode("utf-8", "replace").replace("\0", "\ufffd")


def _returned_message_id(message: email.message.Message) -> str:
    """The Message-ID in the returned message or headers (RFC 3464 2, RFC 3462 3): only
    that part counts, not the report's own headers nor anything its text mentions."""
    for part in message.walk():
        kind = part.get_content_type()
        returned: email.message.Message | None = None
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and \
                    isinstance(payload[0], email.message.Message):
                returned = payload[0]
        elif kind == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                returned = email.message_from_bytes(text, policy=email.policy.compat32)
        if returned is not None:
            return _field(returned, "Message-ID").strip()
    return ""


def parse(raw: bytes) -> Report | None:
    """The report in ``raw``, or None if it is no delivery-status report."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    report_type = message.get_param("report-type", "")
    if message.get_content_type() != "multipart/report" or \
            not isinstance(report_type, str) or report_type.lower() != "delivery-status":
        return None
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list) or not blocks:
            return None
        per_message = blocks[0]
        if not isinstance(per_message, email.message.Message):
            return None
        recipients = tuple(
            RecipientStatus(
                final_recipient=_address(_field(b, "Final-Recipient")),
                original_recipient=_address(_field(b, "Original-Recipient")),
                action=_field(b, "Action").strip().lower(),
                status=_field(b, "Status").strip(),
                diagnostic=" ".join(_field(b, "Diagnostic-Code").split()))
            for b in blocks[1:] if isinstance(b, email.message.Message))
        envid = _field(per_message, "Original-Envelope-Id").strip()
        return Report(envid, recipients, _returned_message_id(message))
    return None
