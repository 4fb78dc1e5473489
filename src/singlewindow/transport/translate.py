"""Address translation of the copies Single Window sends (SPEC F2, R4.4, D5).

After the queue, in the transport: a copy must name its sender only by logical address
and must not carry anything that reveals the submitter's host, IP or physical address.
Headers are rewritten on the raw bytes; the body is passed through untouched (it was
checked already, and re-encoding would change what the submitter signed or counted).
The transport splits the header block once per message (:func:`head`) and hands the
fields to the functions here, so the body is never copied to be looked at again.
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
#: One header field: its lower-case name and its raw bytes, folding included.
Field = tuple[str, bytes]
#: Base64 input per encoded chunk: whole 57-byte groups, so each chunk is whole 76-character
#: lines (RFC 2045 6.8), and chunks join without a seam.
_ENCODE_CHUNK = 57 * 16384


def head(raw: bytes) -> tuple[list[Field], int]:
    """The header fields and the offset at which the body starts (``len(raw)``: none)."""
    end = raw.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = raw.find(b"\n\n"), 2
    if end < 0:
        block, body_offset = raw, len(raw)
    else:
        block, body_offset = raw[:end + sep // 2], end + sep
    fields: list[Field] = []
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + line)
        elif line.strip():
            name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
            fields.append((name, line))
    return fields, body_offset


def split(raw: bytes) -> tuple[list[Field], bytes]:
    """The header fields as (lower-case name, raw field bytes incl. folding) and the body."""
    fields, body_offset = head(raw)
    return fields, raw[body_offset:]


def field_value(field: bytes) -> str:
    value = field.split(b":", 1)[1] if b":" in field else b""
    return " ".join(value.decode("utf-8", "replace").split())


def header_addresses(raw: bytes) -> list[tuple[str, str]]:
    """Every (header name, address) in the headers Single Window translates."""
    return addresses_in(head(raw)[0])


def addresses_in(fields: Iterable[Field]) -> list[tuple[str, str]]:
    """:func:`header_addresses` of header fields split already."""
    found = []
    for name, field in fields:
        if name in TRANSLATED:
            for _, address in getaddresses([field_value(field)]):
                if address:
                    found.append((name, address))
    return found


def header(raw: bytes, name: str) -> str | None:
    return field_named(head(raw)[0], name)


def field_named(fields: Iterable[Field], name: str) -> str | None:
    """The (unfolded) value of the first field called ``name``, or None."""
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


def translate(fields: Iterable[Field], body: bytes, lookup: Lookup, message_id: str,
              extra: Iterable[tuple[str, str]] = (),
              message_ids: Lookup | None = None) -> bytes:
    """The copy of a message with header ``fields`` and ``body``: translated address
    headers, trace headers removed, a new Message-ID.

    ``lookup`` maps any known address (physical or logical) to its logical address and
    returns None for an unknown one; an unknown address raises KeyError (the caller has
    refused such messages before, SPEC R5.3 #8). ``message_ids`` maps a Message-ID named
    in In-Reply-To/References to the one the reader knows (a response names the copy the
    agency received; the company knows its own original), or None to leave it.
    """
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
    out += [b"\r\n", body]
    return b"".join(out)


def with_body(fields: Iterable[Field], content_type: str, payload: bytes
              ) -> tuple[list[Field], bytes]:
    """The header fields and body of a message with ``fields``' headers and a new single
    body part (base64, so any bytes travel 7-bit)."""
    kept = [(name, f) for name, f in fields
            if not name.startswith("content-") and name != "mime-version"]
    kept += [("mime-version", b"MIME-Version: 1.0\r\n"),
             ("content-type", f"Content-Type: {content_type}\r\n".encode()),
             ("content-transfer-encoding", b"Content-Transfer-Encoding: base64\r\n")]
    view = memoryview(payload)
    encoded = b"".join(base64.encodebytes(view[at:at + _ENCODE_CHUNK]).replace(b"\n", b"\r\n")
                       for at in range(0, len(view), _ENCODE_CHUNK))
    return kept, encoded
