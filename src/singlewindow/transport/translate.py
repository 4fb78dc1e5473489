"""Address translation of the copies Single Window sends (SPEC F2, R4.4, D5).

After the queue, in the transport: a copy must name its sender only by logical address
and must not carry anything that reveals the submitter's host, IP or physical address.
Headers are rewritten on the raw bytes; the body is passed through untouched (it was
checked already, and re-encoding would change what the submitter signed or counted).
No I/O: the caller supplies the address lookup.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from email.utils import getaddresses

#: Headers whose addresses Single Window translates (and checks, SPEC R5.3 #8).
TRANSLATED = ("from", "sender", "reply-to", "to", "cc")
#: Headers removed from every copy: trace fields and anything that can name the client's
#: host or address, the origin stamp, and signatures the rewrite would break anyway.
REMOVED = frozenset({
    "received", "return-path", "x-singlewindow-origin", "message-id", "x-originating-ip",
    "x-sender-ip", "x-forwarded-for", "x-authenticated-sender", "x-authenticated-user",
    "delivered-to", "x-original-to", "dkim-signature", "authentication-results",
    "arc-seal", "arc-message-signature", "arc-authentication-results", "bcc",
    "resent-from", "resent-sender", "resent-to", "resent-cc", "resent-bcc",
    "resent-date", "resent-message-id", "resent-reply-to", "x-postfix-queue-id",
    "disposition-notification-to", "return-receipt-to", "errors-to",
})
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9 .,'()-]*$")

Lookup = Callable[[str], str | None]


def split(raw: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """The header fields as (lower-case name, raw field bytes incl. folding) and the body."""
    end = raw.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = raw.find(b"\n\n"), 2
    head, body = (raw, b"") if end < 0 else (raw[:end + sep // 2], raw[end + sep:])
    fields: list[tuple[str, bytes]] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + line)
        elif line.strip():
            name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
            fields.append((name, line))
    return fields, body


def field_value(field: bytes) -> str:
    value = field.split(b":", 1)[1] if b":" in field else b""
    return " ".join(value.decode("utf-8", "replace").split())


def header_addresses(raw: bytes) -> list[tuple[str, str]]:
    """Every (header name, address) in the headers Single Window translates."""
    fields, _ = split(raw)
    found = []
    for name, field in fields:
        if name in TRANSLATED:
            for _, address in getaddresses([field_value(field)]):
                if address:
                    found.append((name, address))
    return found


def header(raw: bytes, name: str) -> str | None:
    fields, _ = split(raw)
    for field_name, field in fields:
        if field_name == name.lower():
            return field_value(field)
    return None


def _translated_field(name: str, field: bytes, lookup: Lookup) -> bytes:
    parts = []
    for display, address in getaddresses([field_value(field)]):
        logical = lookup(address)
        if logical is None:
            raise KeyError(address)
        shown = display if display and _PLAIN_NAME.match(display) else ""
        parts.append(f'"{shown}" <{logical}>' if shown else f"<{logical}>")
    canonical = name.title() if name != "cc" else "Cc"
    return f"{canonical}: {', '.join(parts)}\r\n".encode()


_MSG_ID = re.compile(r"<[^<>\s]+>")
#: Headers that name other messages: threading (RFC 5322 3.6.4).
THREADING = ("in-reply-to", "references")


def _threading_field(name: str, field: bytes, message_ids: Lookup) -> bytes:
    value = field_value(field)
    mapped = _MSG_ID.sub(lambda m: message_ids(m[0]) or m[0], value)
    canonical = "In-Reply-To" if name == "in-reply-to" else "References"
    return f"{canonical}: {mapped}\r\n".encode()


def translate(raw: bytes, lookup: Lookup, message_id: str,
              extra: Iterable[tuple[str, str]] = (),
              message_ids: Lookup | None = None) -> bytes:
    """The copy: translated address headers, trace headers removed, a new Message-ID.

    ``lookup`` maps any known address (physical or logical) to its logical address and
    returns None for an unknown one; an unknown address raises KeyError (the caller has
    refused such messages before, SPEC R5.3 #8). ``message_ids`` maps a Message-ID named
    in In-Reply-To/References to the one the reader knows (a response names the copy the
    agency received; the company knows its own original), or None to leave it.
    """
    fields, body = split(raw)
    out = [f"Message-ID: {message_id}\r\n".encode()]
    out += [f"{name}: {value}\r\n".encode() for name, value in extra]
    for name, field in fields:
        if name in REMOVED:
            continue
        if name in TRANSLATED:
            out.append(_translated_field(name, field, lookup))
        elif name in THREADING and message_ids is not None:
            out.append(_threading_field(name, field, message_ids))
        else:
            out.append(field if field.endswith(b"\n") else field + b"\r\n")
    return b"".join(out) + b"\r\n" + body


def with_body(raw: bytes, content_type: str, payload: bytes) -> bytes:
    """``raw``'s headers with a new single body part (base64, so any bytes travel 7-bit)."""
    fields, _ = split(raw)
    kept = [f if f.endswith(b"\n") else f + b"\r\n" for name, f in fields
            if not name.startswith("content-") and name != "mime-version"]
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (b"".join(kept) + b"MIME-Version: 1.0\r\n"
            + f"Content-Type: {content_type}\r\n".encode()
            + b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded)


def with_message_id(raw: bytes, message_id: str) -> bytes:
    """``raw`` with its Message-ID replaced: every copy Single Window sends has its own,
    which is what proves later that it was sent (:mod:`.evidence`)."""
    fields, body = split(raw)
    kept = [f if f.endswith(b"\n") else f + b"\r\n" for name, f in fields
            if name != "message-id"]
    return f"Message-ID: {message_id}\r\n".encode() + b"".join(kept) + b"\r\n" + body
