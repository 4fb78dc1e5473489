"""Terminal answers (issue 10): what the transport answers where it once deferred.

After the queue, the router answers Postfix once per recipient; these build the answers
that end a recipient's delivery for inputs that used to wait in the queue. No I/O here.
"""

from __future__ import annotations

from singlewindow import replies
from singlewindow.mig.validate import Result
from singlewindow.replies import Reply

# Room for the constant's own words and the Single Window id in one reply line
# (RFC 5321 4.5.3.1.5: 512 octets with the code).
_MAX_DETAIL = 250


def _clip(text: str, limit: int = _MAX_DETAIL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def mig_refusal(result: Result, message_id: str) -> Reply:
    """SPEC R6.1 for the null sender: the errors go into the refusal itself.

    A message with the null reverse-path gets no control message, nor any other mail
    (RFC 5321 4.5.5, RFC 3461 6.2: nothing is sent to <>, so that no loop can start).
    Without a control message the 250 "delivered, not forwarded" would leave the
    submitter no way to learn why nothing arrived: the recipient fails instead, and the
    reply (which Postfix logs, and quotes in the DSN it would write) names the errors.
    """
    count = len(result.errors)
    first = _clip(str(result.errors[0])) if result.errors else "none named"
    return replies.MIG_ERRORS_NULL_SENDER.with_text(
        f"Not forwarded: {count} MIG error{'' if count == 1 else 's'}, the first: {first}; "
        f"no control message is sent to the null sender (Single Window message "
        f"{message_id})")
