"""The "delivered" DSN (RFC 3464) to a submitter whose recipients asked for it (SPEC R5.1).

After the queue: Postfix's lmtp(8) writes no success DSN for a DSN-capable LMTP server
(:mod:`singlewindow.transport.lmtp`), so the transport writes it, for the recipients of a
submission it answered 250 and whose NOTIFY has SUCCESS (RFC 3461 4.1): the human part in
the words Postfix used (the success_template of :mod:`.bounce`), the delivery-status
part, and the submission's headers (RFC 3462 text/rfc822-headers), or the whole
submission when it asked RET=FULL and is small. The transport sends it through
the same allow-list as every generated message, as it did Postfix's. No I/O.
"""

from __future__ import annotations

import datetime
import email.utils
from dataclasses import dataclass

from singlewindow import automatic, notices

#: The header of the returned headers that names the Single Window id (bounce.cf.j2's
#: ``message_id_header``); the transport writes it there.
MESSAGE_HEADER = "X-SingleWindow-Message"
#: RET=FULL returns at most this much of the message, else its headers only: Postfix's
#: ``bounce_size_limit`` default, which its DSNs honour.
FULL_LIMIT = 50_000


@dataclass(frozen=True, slots=True)
class Delivered:
    """One recipient of the report (RFC 3464 2.3)."""

    address: str
    """The recipient as the submitter addressed it (Final-Recipient)."""
    orcpt: str | None
    """The ORCPT parameter (``rfc822;a@b``), if Postfix passed one."""
    reply: str
    """The transport's 250 reply, e.g. ``250 2.0.0 Delivered to Single Window as SW…``."""


def _date(when: float) -> str:
    """RFC 5322 3.3 in UTC, as Postfix writes it (``+0000``, not ``-0000``)."""
    return email.utils.format_datetime(
        datetime.datetime.fromtimestamp(when, datetime.UTC))


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def build(*, to: str, hostname: str, domain: str, recipients: list[Delivered],
          head: bytes, body: bytes | None, envid: str | None, arrival: float, now: float,
          boundary: str, hub_name: str = "Single Window") -> bytes:
    """The report from the null sender's mailer daemon to ``to`` (the submitter).

    ``head`` is the submission's header block (with its final empty line or without);
    ``body`` its body when RET=FULL asked for the whole message (None: headers only).
    ``boundary`` must not occur in the message: the caller makes it from the message's
    own id and a random part.
    """
    text = notices.render("success_dsn.txt.j2", hub_name=hub_name, hostname=hostname,
                          header=MESSAGE_HEADER, recipients=recipients)
    blocks = [f"Reporting-MTA: dns; {hostname}\r\n"
              + (f"Original-Envelope-Id: {envid}\r\n" if envid else "")
              + f"Arrival-Date: {_date(arrival)}\r\n"]
    for r in recipients:
        blocks.append(f"Final-Recipient: rfc822; {r.address}\r\n"
                      + (f"Original-Recipient: {r.orcpt.replace(';', '; ', 1)}\r\n"
                         if r.orcpt and ";" in r.orcpt else "")
                      + "Action: delivered\r\nStatus: 2.0.0\r\n"
                      f"Diagnostic-Code: smtp; {r.reply}\r\n")
    headers = "\r\n".join([
        f"Date: {_date(now)}",
        f"From: MAILER-DAEMON@{domain} (Mail Delivery System)",
        "Subject: Afgeleverd / Successful delivery to Single Window",
        f"To: <{to}>",
        # RFC 3834 5: an answer written by a program; no auto-responder answers it.
        f"Auto-Submitted: {automatic.AUTO_REPLIED}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"',
        "Content-Transfer-Encoding: 8bit",
    ])
    returned = head.rstrip(b"\r\n") + b"\r\n"
    if body is not None:
        last = (b"Content-Description: Delivered Message\r\nContent-Type: message/rfc822\r\n"
                b"Content-Transfer-Encoding: 8bit\r\n\r\n" + returned + b"\r\n" + body)
    else:
        last = (b"Content-Description: Message Headers\r\nContent-Type: text/rfc822-headers\r\n"
                b"Content-Transfer-Encoding: 8bit\r\n\r\n" + returned)
    mark = f"--{boundary}\r\n"
    out = (headers + "\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n"
           + mark + "Content-Description: Notification\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           + _crlf(text) + "\r\n" + mark + "Content-Description: Delivery report\r\n"
           "Content-Type: message/delivery-status\r\n\r\n" + "\r\n".join(blocks) + "\r\n"
           + mark).encode("utf-8")
    return out + last + f"\r\n--{boundary}--\r\n".encode()
