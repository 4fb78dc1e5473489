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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

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
    """The field's value, unfolded; bytes that are not UTF-8 become U+FFFD, and so does
    NUL, which no text column of the store can hold."""
    value = field.split(b":", 1)[1] if b":" in field else b""
    return " ".join(value.decode("utf-8", "replace").replace("\0", "\ufffd").split())


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One mailbox of an address header. ``readable`` False: the entry is no mailbox
    (RFC 5322 3.4) Single Window can read; ``address`` then holds what was written."""

    display: str
    address: str
    readable: bool = True


@dataclass(frozen=True, slots=True)
class Group:
    """An RFC 5322 3.4 group: ``display: member, member;``, possibly with no member at all
    (``undisclosed-recipients:;``)."""

    display: str
    members: tuple[Mailbox, ...]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # atom, quoted, angle, special, bad
    text: str  # the value: unquoted for ``quoted``, the inside for ``angle``
    raw: str  # as written
    spaced: bool  # white space or a comment before it


# RFC 5322 3.4.1 addr-spec, loosely: a dot-atom or quoted local part (any non-ASCII allowed,
# RFC 6532), "@", a domain or a domain literal; at most 254 octets (RFC 5321 4.5.3.1.3).
_ATOM_CHARS = r'[^\s"()<>\[\]:;@\\,]+'
_ADDR_SPEC = re.compile(rf'(?:{_ATOM_CHARS}|"(?:[^"\\]|\\.)*")'
                        rf'@(?:{_ATOM_CHARS}|\[[^\[\]\\\s]*\])')
_MAX_ADDRESS = 254
_SHOWN = 120  # how much of an unreadable entry a reply quotes
_FOLD_AT = 78  # RFC 5322 2.1.1: lines SHOULD be at most 78 characters


def _tokens(value: str) -> list[_Token]:
    """RFC 5322 3.2 lexical tokens of an address list; comments are dropped (they can name
    hosts and people, and carry no address)."""
    out: list[_Token] = []
    i, n, spaced = 0, len(value), False
    while i < n:
        c = value[i]
        if c in " \t":
            i, spaced = i + 1, True
            continue
        if c == "(":
            depth, j = 0, i
            while j < n:
                if value[j] == "\\":
                    j += 2
                    continue
                depth += {"(": 1, ")": -1}.get(value[j], 0)
                if depth == 0:
                    break
                j += 1
            if j >= n:
                out.append(_Token("bad", value[i:], value[i:], spaced))
                break
            i, spaced = j + 1, True
            continue
        if c == '"' or c == "<":
            close = '"' if c == '"' else ">"
            j, inner, quoted = i + 1, [], False
            while j < n and (value[j] != close or quoted):
                if value[j] == "\\" and j + 1 < n and (c == '"' or quoted):
                    inner.append(value[j:j + 2] if c == "<" else value[j + 1])
                    j += 2
                    continue
                if c == "<" and value[j] == '"':
                    quoted = not quoted
                inner.append(value[j])
                j += 1
            if j >= n:
                out.append(_Token("bad", value[i:], value[i:], spaced))
                break
            kind = "quoted" if c == '"' else "angle"
            text = "".join(inner) if kind == "quoted" else "".join(inner).strip()
            out.append(_Token(kind, text, value[i:j + 1], spaced))
            i = j + 1
        elif c in ",:;":
            out.append(_Token("special", c, c, spaced))
            i += 1
        elif c in ">)\\":
            out.append(_Token("bad", c, c, spaced))
            i += 1
        else:
            j = i
            while j < n and value[j] not in ' \t()<>",:;\\':
                if value[j] == "[":
                    end = value.find("]", j)
                    j = n if end < 0 else end
                j += 1
            out.append(_Token("atom", value[i:j], value[i:j], spaced))
            i = j
        spaced = False
    return out


def _mailbox(tokens: list[_Token]) -> Mailbox:
    """A mailbox (RFC 5322 3.4): ``[phrase] <addr-spec>`` or a bare addr-spec."""
    written = " ".join(t.raw for t in tokens)
    unreadable = Mailbox("", written if len(written) <= _SHOWN
                         else written[:_SHOWN - 3] + "...", readable=False)
    if tokens[-1].kind == "angle":
        phrase, address = tokens[:-1], tokens[-1].text
        if any(t.kind not in ("atom", "quoted") or (t.kind == "atom" and "@" in t.text)
               for t in phrase):
            return unreadable
        display = " ".join(t.text for t in phrase)
    elif all(t.kind in ("atom", "quoted") for t in tokens) and not any(
            t.spaced for t in tokens[1:]):
        display, address = "", "".join(t.raw for t in tokens)
    else:
        return unreadable
    if len(address) > _MAX_ADDRESS or not _ADDR_SPEC.fullmatch(address):
        return unreadable
    return Mailbox(display, address)


def parse_addresses(value: str) -> list[Mailbox | Group]:
    """An address header's value (RFC 5322 3.4 address-list, with the obsolete empty list
    elements of 4.4) as mailboxes and groups; what cannot be read is an unreadable
    Mailbox, never silently dropped (SPEC R5.3 #8 refuses it)."""
    entries: list[Mailbox | Group] = []
    current: list[_Token] = []
    group: tuple[str, list[Mailbox]] | None = None

    def flush() -> None:
        if current:
            (group[1] if group is not None else entries).append(_mailbox(current))
            current.clear()

    for token in _tokens(value):
        if token.kind != "special":
            current.append(token)
        elif token.text == ":" and group is None and all(
                t.kind in ("atom", "quoted") and "@" not in t.text for t in current):
            group = (" ".join(t.text for t in current), [])
            current.clear()
        elif token.text == ",":
            flush()
        elif token.text == ";" and group is not None:
            flush()
            entries.append(Group(group[0], tuple(group[1])))
            group = None
        else:  # a stray ":" or ";"
            current.append(_Token("bad", token.text, token.raw, token.spaced))
    flush()
    if group is not None:  # a group without its ";": read it as if it were there
        entries.append(Group(group[0], tuple(group[1])))
    return entries


def mailboxes(entries: Iterable[Mailbox | Group]) -> Iterator[Mailbox]:
    for entry in entries:
        if isinstance(entry, Group):
            yield from entry.members
        else:
            yield entry


def header_addresses(raw: bytes) -> list[tuple[str, str]]:
    """Every (header name, address) in the headers Single Window translates, group members
    included; an entry that is no readable mailbox is listed as written (no address Single
    Window knows looks like it), so the address check refuses it."""
    return addresses_in(head(raw)[0])


def addresses_in(fields: Iterable[Field]) -> list[tuple[str, str]]:
    """:func:`header_addresses` of header fields split already."""
    return [(name, box.address) for name, field in fields if name in TRANSLATED
            for box in mailboxes(parse_addresses(field_value(field)))]


def header(raw: bytes, name: str) -> str | None:
    return field_named(head(raw)[0], name)


def field_named(fields: Iterable[Field], name: str) -> str | None:
    """The (unfolded) value of the first field called ``name``, or None."""
    for field_name, field in fields:
        if field_name == name.lower():
            return field_value(field)
    return None


def _shown(display: str) -> str:
    return display if display and _PLAIN_NAME.match(display) else ""


def _translated_mailbox(box: Mailbox, lookup: Lookup) -> str:
    logical = lookup(box.address) if box.readable else None
    if logical is None:
        raise KeyError(box.address)
    shown = _shown(box.display)
    return f'"{shown}" <{logical}>' if shown else f"<{logical}>"


def _translated_field(name: str, field: bytes, lookup: Lookup) -> bytes:
    # Pieces that are never split, with their punctuation; folded between them.
    pieces: list[str] = []
    entries = parse_addresses(field_value(field))
    for n, entry in enumerate(entries):
        more = "," if n < len(entries) - 1 else ""
        if isinstance(entry, Group):
            members = [_translated_mailbox(m, lookup) for m in entry.members]
            # A group's name is a phrase like a display name: kept only when plain.
            label = _shown(entry.display) or ("Recipients" if members
                                              else "undisclosed-recipients")
            if not members:
                pieces.append(f"{label}:;{more}")
                continue
            pieces.append(f"{label}:")
            pieces += [f"{m}," for m in members[:-1]] + [f"{members[-1]};{more}"]
        else:
            pieces.append(_translated_mailbox(entry, lookup) + more)
    if not pieces:
        if name not in ("to", "cc"):
            return b""  # no address to name: the field goes (its comments could leak)
        pieces.append("undisclosed-recipients:;")
    canonical = name.title() if name != "cc" else "Cc"
    return (_folded(f"{canonical}:", pieces) + "\r\n").encode()


def _folded(start: str, pieces: list[str]) -> str:
    """``start`` and the pieces, separated by a space or, where a line would pass 78
    characters, by a fold (RFC 5322 2.1.1, 2.2.3): no line of a copy passes 998."""
    lines, line = [], start
    for piece in pieces:
        if len(line) + 1 + len(piece) > _FOLD_AT and line.strip():
            lines.append(line)
            line = ""
        line += " " + piece
    return "\r\n".join([*lines, line])


def hops(fields: Iterable[Field]) -> int:
    """How many hops a message has made: its ``Received`` fields (RFC 5321 4.4, 6.3: the
    count that loop detection uses, as Postfix's ``hopcount_limit`` does)."""
    return sum(1 for name, _ in fields if name == "received")


def trace_fields(count: int, domain: str, date: str) -> list[tuple[str, str]]:
    """``count`` host-free ``Received`` fields for a copy (issue 12): the copy carries as
    many hops as its submission made, so the hop count survives the hub.

    The submission's own ``Received`` fields name the submitter's hosts and addresses and
    never reach a copy; these name only the Single Window domain (RFC 5322 3.6.7 allows a
    ``Received`` with no ``from`` clause). Real ``Received`` fields, unlike a header of
    the hub's own, are kept by every MTA a party forwards the copy through and counted by
    its ``hopcount_limit`` as well as by the hub's when the copy comes back; a party can
    only make the count larger by writing more, which only stops its own message sooner.
    """
    return [("Received", f"by {domain} (Single Window, hop {n}); {date}")
            for n in range(count, 0, -1)]


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
    # Trace fields lead the header (RFC 5322 3.6.7), before the hub's other fields.
    written = list(extra)
    out = [f"{name}: {value}\r\n".encode() for name, value in written
           if name.lower() == "received"]
    out.append(f"Message-ID: {message_id}\r\n".encode())
    out += [f"{name}: {value}\r\n".encode() for name, value in written
            if name.lower() != "received"]
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


def with_message_id(raw: bytes, message_id: str) -> bytes:
    """``raw`` with its Message-ID replaced: every copy Single Window sends has its own,
    which is what proves later that it was sent (:mod:`.evidence`)."""
    fields, body = split(raw)
    kept = [f if f.endswith(b"\n") else f + b"\r\n" for name, f in fields
            if name != "message-id"]
    return f"Message-ID: {message_id}\r\n".encode() + b"".join(kept) + b"\r\n" + body
