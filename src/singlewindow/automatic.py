"""Automatic mail: what Single Window never answers with a DSN or a control message.

Shared by the milter (message time: the recipients' NOTIFY becomes NEVER, so Postfix
writes no DSN) and the routing transport (after the queue: no control message, no
agency-failure notice). Both read the same headers, so both decide the same way. No I/O.

A message is automatic when it is

- a delivery status notification: the null envelope sender (RFC 5321 4.5.5: "MUST NOT"
  be answered with a notification) or an RFC 3464 ``multipart/report`` body, which a
  careless MTA may send with a sender;
- written by Single Window itself: its notice header (control messages and
  agency-failure notices) came back, e.g. through a party that forwards everything;
- marked ``Auto-Submitted`` with any value but ``no`` (RFC 3834 5: an auto-responder
  must not answer such a message, and Single Window's notices are such answers).

Loops of messages that look like a person's (a careless auto-responder that writes a new
message without ``Auto-Submitted`` each time) are stopped by the hop count instead
(:mod:`singlewindow.transport.translate`, ``transport.hop_limit``).
"""

from __future__ import annotations

#: The header Single Window writes on every control message and agency-failure notice:
#: ``control SWID`` or ``agency-dsn SWID``. The transport recognises its own mail by it
#: (their envelope sender is null, like Postfix's DSNs).
NOTICE_HEADER = "X-SingleWindow-Notice"
#: RFC 3834 5: the value every notice Single Window writes carries.
AUTO_REPLIED = "auto-replied"


def reason(*, null_sender: bool, auto_submitted: str | None, content_type: str | None,
           notice: str | None) -> str | None:
    """Why a message is automatic, as a sentence for the log and ``swctl trace``, or None
    for a message a person (or a careless program) wrote."""
    if notice is not None:
        return f"it is Single Window's own notice ({NOTICE_HEADER}: {notice[:60]})"
    if null_sender:
        return "it has the null envelope sender (a delivery status notification)"
    # RFC 3834 5: "Auto-Submitted: no" is the only value that means a person wrote it;
    # the keyword is case-insensitive and may carry parameters after ";".
    if auto_submitted is not None:
        keyword = auto_submitted.split(";", 1)[0].strip().lower()
        if keyword != "no":
            return f"it is marked Auto-Submitted: {keyword[:40] or '(empty)'} (RFC 3834)"
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media == "multipart/report":
            return "it is a delivery or disposition report (multipart/report, RFC 6522)"
    return None
