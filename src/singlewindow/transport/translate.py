"""Address translation of everything Single Window sends (SPEC F2, R4.4, D5; issue 12).

After the queue, in the transport: a copy must name its sender only by logical address
and must not carry anything that reveals the submitter's host, IP or physical address,
nor anything of the hub's insides. Headers are therefore written by allow-list
(:func:`allowed_headers`): what is not translated or known to be harmless is dropped.
Headers are rewritten on the raw bytes; the body is passed through untouched (it was
checked already, and re-encoding would change what the submitter signed or counted).
The transport splits the header block once per message (:func:`head`) and hands the
fields to the functions here, so the body is never copied to be looked at again. Mail
the hub generates (DSNs, control messages, notices) is rewritten part by part
(:func:`generated`). No I/O: the caller supplies the lookups.
"""

from __future__ import annotations

import base64
import email.message
import email.utils
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from singlewindow import addresses

#: Headers whose addresses Single Window translates and checks (SPEC R5.3 #8): an address
#: it does not know there is refused before any copy is built.
TRANSLATED = ("from", "sender", "reply-to", "to", "cc")
#: The headers that name who sent the message (RFC 5322 3.6.2): each address in them must
#: be one of the submitting party's own (issue 12), not merely one Single Window knows.
SENDERS = ("from", "sender", "reply-to")
#: Address headers that only advise the reader's client where replies, receipts or resent
#: copies go. Translated like the others; an address Single Window does not know is left
#: out (and the field with it when none is left), not refused: SPEC R5.3 #8 refuses only
#: on the headers that address the message, and an unknown address here is either one
#: outside Single Window, which nobody may learn, or one nothing could be delivered to.
ADVISORY = ("resent-from", "resent-sender", "resent-to", "resent-cc", "mail-followup-to",
            "mail-reply-to", "disposition-notification-to", "return-receipt-to")
ADDRESSES = TRANSLATED + ADVISORY
#: Headers that name other messages (RFC 5322 3.6.4, 3.6.6): every id in them translated.
#: A message's own Message-ID is always the one Single Window writes.
MESSAGE_IDS = ("in-reply-to", "references", "resent-message-id")
#: The content headers a message keeps, each because a reader needs it and its value,
#: normalised where it is structured, names no host:
#: Subject and Date (what and when; Date re-written from its parsed value, so a comment
#: in it goes); MIME-Version (written as "1.0"); the Content-* fields a MIME reader needs
#: to decode and show a part (type, encoding, disposition, description, language);
#: Auto-Submitted (RFC 3834 2: responders must see it to stay quiet, so loops end) and
#: Precedence bulk/junk/list (the older signal many responders still honour). Content-ID
#: and Content-Location are left out: they are URLs/ids that commonly name the writer's
#: host, and no message Single Window carries refers to its own parts. Importance,
#: Priority and every X- header are left out: no reader needs them, any could leak.
CONTENT = ("subject", "date", "mime-version", "content-type", "content-transfer-encoding",
           "content-disposition", "content-description", "content-language",
           "auto-submitted", "precedence")
#: Headers that only Single Window writes; from anywhere else they are dropped. Mail it
#: generates itself carries them (control messages, agency-failure notices).
HUB_HEADERS = ("x-singlewindow-message", "x-singlewindow-notice")
_PRECEDENCE = frozenset({"bulk", "junk", "list"})
_HUB_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .-]{0,200}$")
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


#: A display name that names a host ("Acme EDI (mx1.acme.example)"): a careless client
#: writes its own address or domain there; "J. Smith" and "Acme B.V." are no host names.
_HOSTLIKE = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z][A-Za-z0-9-]+")


def _shown(display: str) -> str:
    if not display or not _PLAIN_NAME.match(display) or _HOSTLIKE.search(display):
        return ""
    return display


def _translated_mailbox(box: Mailbox, lookup: Lookup, strict: bool) -> str | None:
    logical = lookup(box.address) if box.readable else None
    if logical is None:
        if strict:
            raise KeyError(box.address)
        return None
    shown = _shown(box.display)
    return f'"{shown}" <{logical}>' if shown else f"<{logical}>"


_CANONICAL = {"cc": "Cc", "resent-cc": "Resent-Cc", "mime-version": "MIME-Version",
              "message-id": "Message-ID", "in-reply-to": "In-Reply-To",
              "resent-message-id": "Resent-Message-ID", "content-id": "Content-ID"}


def canonical(name: str) -> str:
    """A lower-case field name as it is conventionally written."""
    return _CANONICAL.get(name) or "-".join(w.capitalize() for w in name.split("-"))


def _translated_field(name: str, field: bytes, lookup: Lookup, strict: bool = True) -> bytes:
    """An address field with every mailbox translated; ``strict``: an unknown one raises
    KeyError, else it is left out (and so is the field when nothing is left of it)."""
    # Pieces that are never split, with their punctuation; folded between them.
    pieces: list[str] = []
    entries = parse_addresses(field_value(field))
    for entry in entries:
        if pieces:
            pieces[-1] += ","
        if isinstance(entry, Group):
            members = [m for m in (_translated_mailbox(b, lookup, strict)
                                   for b in entry.members) if m is not None]
            # A group's name is a phrase like a display name: kept only when plain.
            label = _shown(entry.display) or ("Recipients" if members
                                              else "undisclosed-recipients")
            if not members and entry.members:  # every member left out: so is the group
                if pieces:
                    pieces[-1] = pieces[-1][:-1]
                continue
            if not members:
                pieces.append(f"{label}:;")
                continue
            pieces.append(f"{label}:")
            pieces += [f"{m}," for m in members[:-1]] + [f"{members[-1]};"]
        else:
            shown = _translated_mailbox(entry, lookup, strict)
            if shown is not None:
                pieces.append(shown)
            elif pieces:
                pieces[-1] = pieces[-1][:-1]
    if not pieces:
        if name not in ("to", "cc"):
            return b""  # no address to name: the field goes (its comments could leak)
        pieces.append("undisclosed-recipients:;")
    return (_folded(f"{canonical(name)}:", pieces) + "\r\n").encode()


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
#: Maps a message id the writer used to the one the reader may see (always one).
IdMap = Callable[[str], str]


def message_ids_in(value: str) -> list[str]:
    """The ``<id>`` tokens of an In-Reply-To/References/Message-ID value, in order; the
    phrases and comments of the obsolete syntax (RFC 5322 4.5.4) around them go."""
    return _MSG_ID.findall(value)


#: References keeps the thread's first id and its latest ones (what threading uses, RFC
#: 5322 3.6.4), so a hostile list of thousands of ids cannot make as many aliases; an id
#: longer than one can reasonably be (RFC 5322 2.1.1 line length) is no id.
_MAX_REFERENCES = 20
_MAX_ID = 250


def _ids_field(name: str, field: bytes, message_ids: IdMap) -> bytes:
    found = [m for m in message_ids_in(field_value(field)) if len(m) <= _MAX_ID]
    if name != "references":
        found = found[:1]  # In-Reply-To names the one parent that counts; Resent-* one id
    elif len(found) > _MAX_REFERENCES:
        found = found[:1] + found[1 - _MAX_REFERENCES:]
    mapped = [message_ids(m) for m in found]
    if not mapped:
        return b""
    return (_folded(f"{canonical(name)}:", mapped) + "\r\n").encode()


def _content_field(name: str, field: bytes) -> bytes:
    """A content header as kept: structured values normalised, the rest as written."""
    value = field_value(field)
    if name == "mime-version":
        value = "1.0"
    elif name == "date":
        try:
            value = email.utils.format_datetime(email.utils.parsedate_to_datetime(value))
        except (TypeError, ValueError, IndexError, OverflowError):
            return b""  # a date no one can read says nothing
    elif name == "auto-submitted":
        # RFC 3834 5: a keyword with optional parameters; the keyword is what counts.
        value = value.split(";")[0].split("(")[0].strip().lower()
        if not re.fullmatch(r"[a-z0-9-]{1,40}", value):
            value = "auto-generated"  # unreadable, yet it says "automatic": stay quiet
    elif name == "precedence":
        value = value.strip().lower()
        if value not in _PRECEDENCE:
            return b""
    elif name == "content-transfer-encoding":
        value = value.split("(")[0].strip()
    if name in ("subject", "content-type", "content-disposition", "content-description"):
        return field if field.endswith(b"\n") else field + b"\r\n"
    return f"{canonical(name)}: {value}\r\n".encode()


def allowed_headers(fields: Iterable[Field], lookup: Lookup, message_ids: IdMap | None, *,
                    strict: bool = False, content: Iterable[str] = CONTENT,
                    hub: bool = False) -> list[bytes]:
    """The header allow-list: each field either translated (addresses, message ids),
    kept from ``content`` (normalised), a Single Window header (``hub``: only in mail it
    generated itself) or dropped. No Message-ID: the caller writes or maps that one."""
    keep = frozenset(content)
    out: list[bytes] = []
    for name, field in fields:
        if name in ADDRESSES:
            out.append(_translated_field(name, field, lookup,
                                         strict=strict and name in TRANSLATED))
        elif name in MESSAGE_IDS:
            if message_ids is not None:
                out.append(_ids_field(name, field, message_ids))
        elif name in keep:
            out.append(_content_field(name, field))
        elif hub and name in HUB_HEADERS and _HUB_VALUE.match(field_value(field)):
            out.append(f"{canonical(name).replace('Singlewindow', 'SingleWindow')}: "
                       f"{field_value(field)}\r\n".encode())
    return [f for f in out if f]


def translate(fields: Iterable[Field], body: bytes, lookup: Lookup, message_id: str,
              extra: Iterable[tuple[str, str]] = (),
              message_ids: IdMap | None = None) -> bytes:
    """The copy of a message with header ``fields`` and ``body``, its headers by
    allow-list (:func:`allowed_headers`): translated address headers, translated message
    ids, a short list of content headers, the new Message-ID and what the hub writes
    (``extra``); everything else is dropped.

    ``lookup`` maps any known address (physical or logical) to its logical address and
    returns None for an unknown one; an unknown address in a header SPEC R5.3 #8 checks
    raises KeyError (the caller has refused such messages before), elsewhere it is left
    out. ``message_ids`` maps every id named in In-Reply-To/References/Resent-Message-ID
    to the one the reader may see; without it those headers go.
    """
    # Trace fields lead the header (RFC 5322 3.6.7), before the hub's other fields.
    written = list(extra)
    out = [f"{name}: {value}\r\n".encode() for name, value in written
           if name.lower() == "received"]
    out.append(f"Message-ID: {message_id}\r\n".encode())
    out += [f"{name}: {value}\r\n".encode() for name, value in written
            if name.lower() != "received"]
    out += allowed_headers(fields, lookup, message_ids, strict=True)
    out += [b"\r\n", body]
    return b"".join(out)


def body_fields(fields: Iterable[Field], content_type: str) -> list[Field]:
    """``fields`` for a message whose body is replaced by a new single part of
    ``content_type``, base64-encoded (so any bytes travel 7-bit): the content headers
    replaced, the others kept for :func:`translate`."""
    kept = [(name, f) for name, f in fields
            if not name.startswith("content-") and name != "mime-version"]
    kept += [("mime-version", b"MIME-Version: 1.0\r\n"),
             ("content-type", f"Content-Type: {content_type}\r\n".encode()),
             ("content-transfer-encoding", b"Content-Transfer-Encoding: base64\r\n")]
    return kept


def encoded_size(length: int) -> int:
    """Bytes of the base64 body :class:`Copy` writes for ``length`` bytes: lines of 76
    characters and CRLF (RFC 2045 6.8), the last one shorter."""
    lines, rest = divmod(length, 57)
    return lines * 78 + ((rest + 2) // 3 * 4 + 2 if rest else 0)


class Copy:
    """A copy of a message whose body is a new single part (:func:`body_fields`), as it
    is sent: the header block ``head`` (ending in the empty line, from :func:`translate`)
    in memory, the body read from ``source`` and base64-encoded one chunk at a time, so
    the whole copy never exists in memory (issue 13: the copy of a 7 MB interchange is
    ~50 MB). ``source`` is read from its start by each :meth:`chunks`; it may be a
    temporary file, or memory (:class:`io.BytesIO`). ``bytes(copy)`` is the whole copy,
    for a receiver that needs it in one piece."""

    __slots__ = ("head", "length", "source")

    def __init__(self, head: bytes, source: BinaryIO) -> None:
        self.head = head
        self.source = source
        self.length = source.seek(0, io.SEEK_END)

    @property
    def size(self) -> int:
        """The copy's bytes (RFC 1870 SIZE), before dot-stuffing."""
        return len(self.head) + encoded_size(self.length)

    def chunks(self) -> Iterator[bytes]:
        """The copy in pieces: the head, then the body ~1.2 MB of base64 at a time."""
        yield self.head
        self.source.seek(0)
        while chunk := self.source.read(_ENCODE_CHUNK):
            yield base64.encodebytes(chunk).replace(b"\n", b"\r\n")

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks())


# --- mail Single Window generated: DSNs, control messages, notices ----------------------

#: Per-message fields of a delivery-status part kept (RFC 3464 2.2); Reporting-MTA is
#: written anew. Received-From-MTA, DSN-Gateway and every X- field (Postfix's queue id
#: and sender) go: they name hosts and internal ids, and nobody needs them to read it.
_DSN_MESSAGE = ("original-envelope-id", "arrival-date")
#: Per-recipient fields kept (RFC 3464 2.3); the two recipients translated, the
#: diagnostic cleaned. Remote-MTA goes (it names the next hop, for the transport's LMTP
#: even a socket path), and so do Final-Log-ID and every X- field.
_DSN_RECIPIENT = ("action", "status", "last-attempt-date", "will-retry-until")
_DSN_ADDRESS = ("final-recipient", "original-recipient")
_PART_CONTENT = ("content-type", "content-transfer-encoding", "content-disposition",
                 "content-description", "content-language")
# "mx.example[192.0.2.1]:25", "mail.sw.test[private/lmtp]", "[10.0.0.1]", "[IPv6:::1]":
# a host and the address or socket Postfix reached it at ("[English]" is no address).
_BRACKETED = re.compile(r"([A-Za-z0-9.-]*)\[(?:[0-9A-Fa-f]*[.:][0-9A-Fa-f.:]*|IPv6:[^\]\s]*"
                        r"|[^\]\s]*/[^\]\s]*)\](?::\d+)?")
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PATH = re.compile(r"(?<![\w.:/-])/(?:[\w.+@-]+/)*[\w.+@-]+")
_HOST = re.compile(r"(?<![\w.@-])(?:[A-Za-z0-9-]+\.)+[A-Za-z][A-Za-z0-9-]+(?![\w@-])")
def _ipv6(text: str) -> bool:
    """An IPv6 address, not a time of day ("21:58:12")."""
    return "::" in text or (text.count(":") >= 3
                            and any(c in "abcdefABCDEF" for c in text))


ADDRESS_WITHHELD = "<address withheld>"
HOST_WITHHELD = "<host withheld>"


@dataclass(frozen=True, slots=True)
class Reader:
    """What the rewrite of generated mail knows of its reader, as lookups (no I/O here).

    ``addresses`` maps an address to what the reader may see (a logical address, one of
    Single Window's own) or None (left out); ``message_ids`` maps a message id;
    ``hostname`` is Single Window's public host name (the only host a reader is told of),
    ``domain`` its domain; ``internal`` are host names no reader may see (the machine's
    own name) beyond the loopback and private hosts, addresses and paths that are
    withheld anyway. ``own``: the mail is about the reader's own message (a DSN about its
    submission), so an address no one knows in its texts is the reader's own words, which
    the reason for a refusal must quote (SPEC R5.3 #8); otherwise it is withheld.
    """

    addresses: Lookup
    message_ids: IdMap
    hostname: str
    domain: str
    internal: tuple[str, ...] = ()
    own: bool = False

    def public_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        domain = self.domain.lower()
        return host in (self.hostname.lower(), domain) or host.endswith("." + domain)

    def clean(self, text: str) -> str:
        """Free text (a diagnostic, a DSN's readable part) with every address the reader
        may not see translated or withheld, and no host, IP address or path but Single
        Window's public name."""
        def host(m: re.Match[str]) -> str:
            return m[0] if self.public_host(m[0]) else HOST_WITHHELD

        def bracketed(m: re.Match[str]) -> str:
            return m[1] if m[1] and self.public_host(m[1]) else HOST_WITHHELD

        def address(m: re.Match[str]) -> str:
            return self.addresses(m[0]) or (m[0] if self.own else ADDRESS_WITHHELD)

        text = _BRACKETED.sub(bracketed, text)
        for word in self.internal:
            if word:
                # The word as a whole name (and the names under it), never inside another;
                # a short name that is a plain word ("mail", "server") only where it is
                # clearly a host, followed by its domain.
                under = "+" if word.isalpha() and len(word) < 8 else "*"
                pattern = rf"(?<![\w.-]){re.escape(word)}(?:\.[\w-]+){under}(?![\w-])"
                text = re.sub(pattern, host, text, flags=re.IGNORECASE)
        text = addresses.IN_TEXT.sub(address, text)
        text = _PATH.sub("<path withheld>", text)
        text = _IPV4.sub(ADDRESS_WITHHELD, text)
        text = _IPV6.sub(lambda m: ADDRESS_WITHHELD if _ipv6(m[0]) else m[0], text)
        # Hosts last, outside the addresses left: a logical address keeps its domain.
        pieces = re.split(r"(<[^<>\s]+@[^<>\s]+>|[^\s<>]+@[^\s<>]+)", text)
        text = "".join(p if n % 2 else _HOST.sub(host, p) for n, p in enumerate(pieces))
        return re.sub(r"(?i)\blocalhost\b", HOST_WITHHELD, text)


def generated(raw: bytes, reader: Reader, message_id: str,
              returned: Iterable[tuple[str, str]] = ()) -> bytes:
    """Mail Single Window generated (a DSN, a control message, a notice) as its reader
    gets it: the same header allow-list as a copy, applied to every MIME part, the
    Message-ID ``message_id``; in a delivery report (RFC 3464) the delivery-status
    fields allow-listed and translated, the returned headers allow-listed, with
    ``returned`` (hub headers, e.g. the Single Window id) written at their top, and the
    readable text cleaned of hosts. Bodies are passed through otherwise untouched."""
    fields, offset = head(raw)
    kept = allowed_headers(fields, reader.addresses, reader.message_ids, hub=True)
    top = [f"Message-ID: {message_id}\r\n".encode(), *kept]
    if not any(f[:5].lower() == b"from:" for f in kept):
        # An agency MTA's report from its own postmaster: nobody the reader may see, yet
        # a message needs a From (RFC 5322 3.6): the hub's mailer daemon speaks for it.
        top.insert(1, f"From: <MAILER-DAEMON@{reader.domain}>\r\n".encode())
    return b"".join(top) + b"\r\n" + _body(fields, raw[offset:], reader, tuple(returned))


def _content_type(fields: Iterable[Field]) -> tuple[str, str | None]:
    holder = email.message.Message()
    holder["Content-Type"] = field_named(fields, "content-type") or "text/plain"
    boundary = holder.get_param("boundary")
    return holder.get_content_type(), boundary if isinstance(boundary, str) else None


def _body(fields: list[Field], body: bytes, reader: Reader,
          returned: tuple[tuple[str, str], ...]) -> bytes:
    ctype, boundary = _content_type(fields)
    if ctype.startswith("multipart/") and boundary:
        return _multipart(body, boundary.encode("utf-8", "replace"), reader, returned,
                          report=ctype == "multipart/report")
    if ctype == "message/delivery-status":
        return _delivery_status(body, reader)
    if ctype == "text/rfc822-headers":
        return _returned(body, reader, returned, whole=False)
    if ctype in ("message/rfc822", "message/global"):
        return _returned(body, reader, returned, whole=True)
    return body


def _multipart(body: bytes, boundary: bytes, reader: Reader,
               returned: tuple[tuple[str, str], ...], report: bool) -> bytes:
    delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|$)")
    marks = list(delimiter.finditer(body))
    if not marks:
        return body
    out = [body[:marks[0].start()]]
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        if mark[1]:  # the close delimiter: the epilogue after it says nothing
            break
        part = body[mark.end():following.start() if following is not None else len(body)]
        fields, offset = head(part)
        kept = allowed_headers(fields, reader.addresses, None, content=_PART_CONTENT)
        inner = part[offset:]
        ctype, _ = _content_type(fields)
        cte = (field_named(fields, "content-transfer-encoding") or "").lower()
        if report and ctype == "text/plain" and cte in ("", "7bit", "8bit"):
            # The readable part of a report names hosts and paths as Postfix saw them.
            inner = reader.clean(inner.decode("utf-8", "replace")).encode("utf-8")
        else:
            inner = _body(fields, inner, reader, returned)
        out += [b"\r\n--" + boundary + b"\r\n", *kept, b"\r\n", inner]
    out.append(b"\r\n--" + boundary + b"--\r\n")
    return b"".join(out)


def _returned(raw: bytes, reader: Reader, returned: tuple[tuple[str, str], ...],
              whole: bool) -> bytes:
    """The returned message or its headers: the copy's allow-list, its own Message-ID
    mapped like any other id, ``returned`` first."""
    fields, offset = head(raw)
    out = [f"{name}: {value}\r\n".encode() for name, value in returned]
    for name, field in fields:
        if name == "message-id":
            ids = message_ids_in(field_value(field))
            if ids:
                out.append(f"Message-ID: {reader.message_ids(ids[0])}\r\n".encode())
    out += allowed_headers(fields, reader.addresses, reader.message_ids)
    if not whole:
        return b"".join(out)
    return b"".join(out) + b"\r\n" + _body(fields, raw[offset:], reader, ())


def _delivery_status(body: bytes, reader: Reader) -> bytes:
    blocks = [b for b in re.split(rb"\r?\n[ \t]*\r?\n", body) if b.strip()]
    out: list[str] = []
    for n, block in enumerate(blocks):
        fields, _ = head(block + b"\r\n")
        lines: list[str] = []
        if n == 0:
            lines.append(f"Reporting-MTA: dns; {reader.hostname}")
            lines += [f"{canonical(name)}: {field_value(f)}" for name, f in fields
                      if name in _DSN_MESSAGE]
        else:
            for name, f in fields:
                value = field_value(f)
                if name in _DSN_ADDRESS:
                    kind, _, address = value.partition(";")
                    shown = reader.addresses(address.strip()) if address else None
                    if shown is not None:
                        lines.append(f"{canonical(name)}: {kind.strip() or 'rfc822'}; {shown}")
                elif name in _DSN_RECIPIENT:
                    lines.append(f"{canonical(name)}: {value}")
                elif name == "diagnostic-code":
                    kind, _, text = value.partition(";")
                    cleaned = reader.clean(text.strip())
                    lines.append(_folded(f"Diagnostic-Code: {kind.strip() or 'smtp'};",
                                         cleaned.split()))
        out.append("\r\n".join(lines) + "\r\n")
    return "\r\n".join(out).encode("utf-8")
