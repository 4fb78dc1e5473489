"""The technical checks of a submitted message (SPEC R5.3 reasons 1-7).

Where this sits: after the queue, the routing transport receives the message from Postfix
over LMTP and, per recipient, first asks this module whether the content is acceptable.
A failure becomes the recipient's 5xx LMTP reply, and Postfix quotes its text in the
failure DSN, so every text says exactly what is wrong and where: which Content-Type, which
body part, which line of the message body.

Pure functions over the raw message bytes: no I/O, no store, no configuration object.
The bytes are read in place by offsets (regular expressions, ``bytes.find``): nothing is
kept per line, so memory stays a small multiple of the message whatever its line count.
Line numbers count from the first line of the message body (after the header block),
because Postfix and the milter add header lines the submitter never wrote while the body
reaches us as the submitter sent it.

The ``email`` package is deliberately not the judge here: it repairs or ignores most of
these faults (bad Base64, bad quoted-printable, 8-bit bytes, missing boundaries). It is used
only to parse header parameters (quoting, comments, RFC 2231), where it is exact.

Checks run in this order, the first failure wins:

1. the MIME structure (reason 7), walking every multipart;
2. the number of body parts (reasons 2 and 3), counting leaves, so a multipart with one
   leaf, nested or not, is one body part;
3. on that one body part: Content-Type (1), Content-Transfer-Encoding (6), 8-bit bytes in a
   7-bit encoding (5), the Base64 or quoted-printable grammar (4), and an empty payload (2).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.policy import default as _default_policy
from typing import NoReturn

from singlewindow import replies
from singlewindow.config import Transport
from singlewindow.replies import Reply, ReplyError

#: The payload types Single Window accepts unless configured otherwise: EDIFACT
#: (RFC 1767 section 2) and XML (RFC 7303), and plain text for EDIFACT sent as text; the
#: default of ``transport.allowed_content_types``, where it is documented (config.py).
DEFAULT_ALLOWED_TYPES: frozenset[str] = frozenset(Transport().allowed_content_types)

# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets; leave room for the code,
# the enhanced code and the constant's own sentence.
_MAX_DETAIL = 380

# RFC 2045 section 6.1: the encodings a receiver must know. x-token encodings are private
# agreements, and Single Window has none.
_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})
_KNOWN_ENCODINGS = _IDENTITY_ENCODINGS | {"base64", "quoted-printable"}
# RFC 2045 2.7 and 6.2: these three promise 7-bit data on the wire.
_SEVEN_BIT_ENCODINGS = frozenset({"7bit", "base64", "quoted-printable"})

# RFC 5322 2.2 field-name (printable ASCII except ':'), with the obsolete optional
# whitespace before the colon (RFC 5322 4.5.3).
_HEADER_FIELD = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")
# RFC 2045 5.1: type "/" subtype, each a token; comments (RFC 822 3.4.3) may surround them.
_TOKEN = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
_COMMENT = r"(?:\([^()]*\)\s*)*"
_MEDIA_TYPE = re.compile(rf"^\s*{_COMMENT}({_TOKEN})\s*/\s*({_TOKEN})\s*{_COMMENT}(?:;|$)")
# RFC 2046 5.1.1: bcharsnospace and bchars; 1 to 70 characters, not ending in a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_BASE64_ALPHABET = re.compile(rb"[A-Za-z0-9+/]*")
# RFC 2045 6.7 rule (2) safe-char, and rule (3) SPACE and TAB inside a line.
_QP_LITERAL = re.compile(rb"[\x21-\x3c\x3e-\x7e \t]*")
_HEX = b"0123456789ABCDEFabcdef"
# Well-formed Base64 and quoted-printable are recognised a chunk of lines at a time with
# bytes methods (str.translate deletes the alphabet, leaving the faults); only input that
# fails is walked line by line, to name the first fault.
_CHUNK = 1 << 20
_BASE64_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n"
# RFC 2045 6.7 rules (1)-(3): printable ASCII, SPACE and TAB; and the line breaks.
_QP_BYTES = bytes(range(0x21, 0x7F)) + b" \t\r\n"
# An '=' that neither encodes a byte nor ends the line (rule (1), rule (5)).
_QP_BAD_EQUALS = re.compile(rb"=(?![0-9A-Fa-f]{2}|[ \t]*(?:\r?\n|\Z))")
# Base64 padding ends the stream: one or two '=', then at most empty lines.
_BASE64_END = re.compile(rb"={1,2}(?:\r?\n)*")
# A quoted-printable line break with the transport padding before it.
_QP_LINE_END = re.compile(rb"[ \t]*\r?\n")
# bytes.strip()'s whitespace: a payload of nothing else is empty.
_NOT_BLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")
# RFC 2045 6.7 rule (5) for quoted-printable, 6.8 for Base64.
_MAX_ENCODED_LINE = 76
_WSP = b" \t"


class ContentError(ReplyError):
    """The message fails a technical check; ``reply`` is the LMTP status to give."""


@dataclass(frozen=True, slots=True)
class BodyPart:
    """The one body part of an accepted message, decoded, for the later stages."""

    content_type: str
    """Lower-case ``type/subtype``."""
    params: dict[str, str] = field(hash=False)
    """Content-Type parameters, names in lower case (e.g. ``charset``)."""
    transfer_encoding: str
    """The Content-Transfer-Encoding it arrived in, lower case."""
    payload: bytes
    """The content with the transfer encoding undone."""

    @property
    def charset(self) -> str | None:
        return self.params.get("charset")


def check_content(raw: bytes, allowed_types: Iterable[str] = DEFAULT_ALLOWED_TYPES) -> Reply | None:
    """Run the technical checks; None when the message passes, else the reply to give."""
    try:
        body_part(raw, allowed_types)
    except ContentError as error:
        return error.reply
    return None


def body_part(raw: bytes, allowed_types: Iterable[str] = DEFAULT_ALLOWED_TYPES) -> BodyPart:
    """Check the message and return its single body part, decoded.

    Raises ContentError with the reply for the first failing check.
    """
    allowed = frozenset(t.lower() for t in allowed_types)
    text = _Text(raw)
    top = _parse_top(text)
    leaves = list(top.leaves())
    if not leaves:
        _fail(replies.NO_BODY_PART, f"{top.name} ({top.shown_type}) contains no body part")
    if len(leaves) > 1:
        listed = ", ".join(
            f"{leaf.name} ({leaf.shown_type}, line {text.number(leaf.first)})"
            for leaf in leaves[:5]
        )
        more = ", ..." if len(leaves) > 5 else ""
        _fail(replies.MULTIPLE_BODY_PARTS, f"{len(leaves)} found: {listed}{more}")
    return _check_leaf(text, leaves[0], allowed)


class _Text:
    """The raw message, read in place by byte offsets.

    A line ends with LF or CRLF (a lone CR is content). Nothing is kept per line: a line
    number is counted only when a reply names one.
    """

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.body_start = 0
        """Offset of the message body's first line, set once the header block is read."""

    def number(self, offset: int) -> int:
        """The 1-based line number, within the message body, of the line holding ``offset``."""
        return self.raw.count(b"\n", self.body_start, offset) + 1

    def column(self, offset: int) -> int:
        """The 1-based column of ``offset`` in its line."""
        return offset - self.raw.rfind(b"\n", 0, offset)

    def lines(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(start, end of content, start of the next line) of each line in [start, end)."""
        raw = self.raw
        while start < end:
            newline = raw.find(b"\n", start, end)
            if newline < 0:
                yield start, end, end
                return
            content_end = newline - 1 if newline > start and raw[newline - 1] == 13 else newline
            yield start, content_end, newline + 1
            start = newline + 1


@dataclass(slots=True)
class _Entity:
    """One MIME entity: the message itself or a body part of a multipart."""

    name: str
    headers: dict[str, list[str]]
    first: int
    """Offset of the entity's first line (its first header, or its body if it has none)."""
    body_start: int
    body_end: int
    """Byte range [body_start, body_end) of the body in the raw message."""
    default_type: str
    top: bool = False
    """The message itself (not a body part of a multipart)."""
    children: list[_Entity] = field(default_factory=list)

    def header(self, name: str) -> list[str]:
        return self.headers.get(name, [])

    @property
    def media_type(self) -> str | None:
        """Lower-case type/subtype, or None if the Content-Type is not a media type."""
        values = self.header("content-type")
        if not values:
            return self.default_type
        match = _MEDIA_TYPE.match(values[0])
        if match is None:
            return None
        return f"{match.group(1)}/{match.group(2)}".lower()

    @property
    def shown_type(self) -> str:
        values = self.header("content-type")
        if not values:
            return self.default_type
        return self.media_type or values[0].strip()

    @property
    def is_multipart(self) -> bool:
        media = self.media_type
        return media is not None and media.startswith("multipart/")

    def leaves(self) -> Iterable[_Entity]:
        if not self.is_multipart:
            yield self
        for child in self.children:
            yield from child.leaves()


def _fail(reply: Reply, detail: str) -> NoReturn:
    """Raise the reply with ``detail`` appended, safe for one SMTP reply line."""
    safe = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in detail)
    if len(safe) > _MAX_DETAIL:
        safe = safe[: _MAX_DETAIL - 3] + "..."
    raise ContentError(reply.with_text(f"{reply.text}: {safe}"))


def _parse_top(text: _Text) -> _Entity:
    end = len(text.raw)
    headers, body_start = _parse_headers(text, 0, end, strict=False, name="the message")
    text.body_start = body_start
    entity = _Entity(
        name="the message",
        headers=headers,
        first=body_start,
        body_start=body_start,
        body_end=end,
        default_type="text/plain",
        top=True,
    )
    if entity.is_multipart:
        _parse_multipart(text, entity, path="")
    else:
        entity.name = "the message body"
    return entity


def _parse_headers(
    text: _Text, first: int, last: int, *, strict: bool, name: str
) -> tuple[dict[str, list[str]], int]:
    """Parse a header block from offset ``first``; return the fields and the body's offset.

    At the top level a line that is not a header field starts the body (Postfix's cleanup
    inserts the empty line there). In a body part it is a fault: RFC 2046 5.1.1 makes the
    part headers end with an empty line, or the part have no body at all.
    """
    raw = text.raw
    fields: list[tuple[str, bytearray]] = []
    for start, content_end, following in text.lines(first, last):
        line = raw[start:content_end]
        if line == b"":
            return _decode_fields(fields), following
        if line[:1] in (b" ", b"\t") and fields:
            # RFC 5322 2.2.3: a folded header continues on lines starting with WSP.
            fields[-1][1].extend(b" " + line.strip(_WSP))
            continue
        match = _HEADER_FIELD.match(line)
        if match is None:
            if not strict:
                return _decode_fields(fields), start
            _fail(
                replies.UNPARSABLE_MULTIPART,
                f"in {name}, line {text.number(start)} is neither a header field nor "
                "the empty line that ends the part's headers",
            )
        value = bytearray(line[match.end() :].strip(_WSP))
        fields.append((match.group(1).decode("ascii").lower(), value))
    return _decode_fields(fields), last


def _decode_fields(fields: list[tuple[str, bytearray]]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in fields:
        # Header values should be ASCII (RFC 5322 2.2); latin-1 keeps any stray byte
        # visible in a reply text instead of failing here.
        headers.setdefault(name, []).append(value.decode("latin-1"))
    return headers


def _parse_multipart(text: _Text, entity: _Entity, path: str) -> None:
    """Split a multipart body into its parts (RFC 2046 5.1.1), recursively."""
    where = f"{entity.name} ({entity.media_type})"
    encoding = _transfer_encoding(entity)
    if encoding not in _IDENTITY_ENCODINGS:
        # RFC 2045 6.4: a multipart is never encoded, only its leaves are.
        _fail(
            replies.UNPARSABLE_MULTIPART,
            f"{where} declares Content-Transfer-Encoding {encoding!r}; "
            "a multipart may only be 7bit, 8bit or binary",
        )
    header = _default_policy.header_factory("content-type", entity.header("content-type")[0])
    if header.defects:
        _fail(
            replies.UNPARSABLE_MULTIPART,
            f"the Content-Type of {where} cannot be parsed ({header.defects[0]})",
        )
    boundary = header.params.get("boundary")
    if not boundary:
        _fail(replies.UNPARSABLE_MULTIPART, f"{where} has no boundary parameter")
    if not _BOUNDARY.fullmatch(boundary):
        _fail(
            replies.UNPARSABLE_MULTIPART,
            f"{where} has boundary {boundary!r}, which RFC 2046 5.1.1 does not allow",
        )
    default_type = "message/rfc822" if entity.media_type == "multipart/digest" else "text/plain"

    # A delimiter line is "--boundary" and transport padding, the close delimiter has "--"
    # before the padding; anything else after "--boundary" makes the line ordinary content
    # (RFC 2046 5.1.1). The epilogue after the close delimiter is ignored.
    delimiter = re.compile(
        rb"^--" + re.escape(boundary.encode("ascii")) + rb"(--)?[ \t]*(?:\r?\n|\Z)", re.M
    )
    raw = text.raw
    starts: list[int] = []  # offset of each delimiter line, then of the close delimiter
    after: list[int] = []  # offset of the line after each delimiter line
    closed = False
    for match in delimiter.finditer(raw, entity.body_start, entity.body_end):
        starts.append(match.start())
        if match.group(1):
            closed = True
            break
        after.append(match.end())
    if not starts:
        _fail(
            replies.UNPARSABLE_MULTIPART,
            f"{where}: boundary line '--{boundary}' not found",
        )
    if not closed:
        _fail(
            replies.UNPARSABLE_MULTIPART,
            f"{where} is not terminated: closing line '--{boundary}--' not found",
        )
    for number, (first, stop) in enumerate(zip(after, starts[1:], strict=True), 1):
        part_path = f"{path}.{number}" if path else str(number)
        name = f"body part {part_path}"
        headers, body_start = _parse_headers(text, first, stop, strict=True, name=name)
        # The line break before a delimiter belongs to the delimiter (RFC 2046 5.1.1).
        body_end = body_start
        if body_start < stop:
            body_end = stop - 2 if raw[stop - 2 : stop] == b"\r\n" else stop - 1
        child = _Entity(
            name=name,
            headers=headers,
            first=first,
            body_start=body_start,
            body_end=body_end,
            default_type=default_type,
        )
        if child.is_multipart:
            _parse_multipart(text, child, part_path)
        entity.children.append(child)


def _transfer_encoding(entity: _Entity) -> str:
    values = entity.header("content-transfer-encoding")
    if not values:
        return "7bit"  # RFC 2045 6.1: the default
    if len({v.strip().lower() for v in values}) > 1:
        _fail(
            replies.UNKNOWN_TRANSFER_ENCODING,
            f"{entity.name} has conflicting Content-Transfer-Encoding headers: "
            + ", ".join(values),
        )
    header = _default_policy.header_factory("content-transfer-encoding", values[0])
    if header.defects:
        return values[0].strip().lower()
    return str(header.cte)


def _check_leaf(text: _Text, leaf: _Entity, allowed: frozenset[str]) -> BodyPart:
    where = leaf.name if leaf.top else f"{leaf.name} (line {text.number(leaf.first)})"

    # Reason 1.
    content_types = leaf.header("content-type")
    if len(content_types) > 1:
        _fail(
            replies.UNSUPPORTED_CONTENT_TYPE,
            f"{where} has {len(content_types)} Content-Type headers",
        )
    media_type = leaf.media_type
    if media_type is None:
        _fail(
            replies.UNSUPPORTED_CONTENT_TYPE,
            f"{content_types[0].strip()!r} in {where} is not a media type",
        )
    if media_type not in allowed:
        _fail(
            replies.UNSUPPORTED_CONTENT_TYPE,
            f"{media_type} in {where}; accepted: {', '.join(sorted(allowed))}",
        )

    # Reason 6.
    encoding = _transfer_encoding(leaf)
    if encoding not in _KNOWN_ENCODINGS:
        _fail(
            replies.UNKNOWN_TRANSFER_ENCODING,
            f"{encoding!r} in {where}; known: 7bit, 8bit, binary, base64, quoted-printable",
        )

    # Reason 5: 7bit, Base64 and quoted-printable all promise octets below 128
    # (RFC 2045 2.7, 6.2).
    raw, start, end = text.raw, leaf.body_start, leaf.body_end
    if encoding in _SEVEN_BIT_ENCODINGS and not _is_ascii(raw, start, end):
        match = _EIGHT_BIT.search(raw, start, end)
        if match is not None:
            at = match.start()
            _fail(
                replies.EIGHT_BIT_IN_7BIT,
                f"byte 0x{raw[at]:02X} at line {text.number(at)}, column {text.column(at)}, "
                f"in {where}, whose Content-Transfer-Encoding {encoding} allows only 7-bit "
                "bytes",
            )

    # Reason 4, and reason 2: a part whose content is nothing but line breaks and spaces
    # carries no payload.
    if encoding == "base64":
        payload = _decode_base64(text, leaf, where)
        blank = _NOT_BLANK.search(payload) is None
    elif encoding == "quoted-printable":
        payload = _decode_quoted_printable(text, leaf, where)
        blank = _NOT_BLANK.search(payload) is None
    else:
        blank = _NOT_BLANK.search(raw, start, end) is None
        payload = b"" if blank else raw[start:end]
    if blank:
        _fail(replies.NO_BODY_PART, f"{where} is empty")

    params: dict[str, str] = {}
    if content_types:
        header = _default_policy.header_factory("content-type", content_types[0])
        params = {name.lower(): str(value) for name, value in header.params.items()}
    return BodyPart(
        content_type=media_type, params=params, transfer_encoding=encoding, payload=payload
    )


def _is_ascii(raw: bytes, start: int, end: int) -> bool:
    return all(raw[at : min(at + _CHUNK, end)].isascii() for at in range(start, end, _CHUNK))


def _decode_base64(text: _Text, leaf: _Entity, where: str) -> bytes:
    """Check Base64 (RFC 2045 6.8, RFC 4648 4) and decode it.

    The encoded stream may break lines anywhere, so a quantum may span lines; padding may
    only end the whole stream. Well-formed Base64 is recognised and decoded in a few
    passes over the bytes; anything else is walked line by line to name the first fault.
    """
    raw, start, end = text.raw, leaf.body_start, leaf.body_end
    if _well_formed(text, start, end, _BASE64_BYTES):
        pad = raw.find(b"=", start, end)
        significant = end - start - raw.count(b"\n", start, end) - raw.count(b"\r", start, end)
        if significant % 4 == 0 and (pad < 0 or _BASE64_END.fullmatch(raw, pad, end)):
            # Binascii's lenient mode skips the line breaks, which is all it lets pass here.
            return binascii.a2b_base64(memoryview(raw)[start:end])
    data = bytearray()
    padded_at: int | None = None
    here = text.number(start) - 1
    for line_start, content_end, _ in text.lines(start, end):
        line = raw[line_start:content_end]
        here += 1
        if line == b"":
            continue
        if padded_at is not None:
            _fail(
                replies.INVALID_ENCODING,
                f"Base64 continues at line {here} after the padding at line {padded_at} "
                f"in {where}",
            )
        if len(line) > _MAX_ENCODED_LINE:
            _fail(
                replies.INVALID_ENCODING,
                f"Base64 line {here} in {where} is {len(line)} characters long, "
                f"more than {_MAX_ENCODED_LINE}",
            )
        stripped = line.rstrip(b"=")
        pad_length = len(line) - len(stripped)
        bad = _BASE64_ALPHABET.match(stripped)
        assert bad is not None
        if bad.end() < len(stripped):
            char = stripped[bad.end()]
            at = f"at line {here}, column {bad.end() + 1}, in {where}"
            if char == ord("="):
                _fail(replies.INVALID_ENCODING, f"Base64 padding '=' {at} is not at the end")
            shown = repr(chr(char)) if 0x21 <= char <= 0x7E else f"0x{char:02X}"
            _fail(replies.INVALID_ENCODING, f"character {shown} {at} is not Base64")
        data.extend(stripped)
        if pad_length:
            padded_at = here
            if pad_length > 2 or (len(data) + pad_length) % 4:
                _fail(
                    replies.INVALID_ENCODING,
                    f"wrong Base64 padding at line {here} in {where}",
                )
            data.extend(b"=" * pad_length)
    if len(data) % 4:
        _fail(
            replies.INVALID_ENCODING,
            f"Base64 in {where} ends in an incomplete group of {len(data) % 4} characters",
        )
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error as error:  # pragma: no cover - the checks above are stricter
        _fail(replies.INVALID_ENCODING, f"invalid Base64 in {where}: {error}")


def _decode_quoted_printable(text: _Text, leaf: _Entity, where: str) -> bytes:
    """Check the quoted-printable grammar (RFC 2045 6.7) and decode it.

    Trailing spaces and tabs are transport padding, which receivers must accept and drop
    (RFC 2045 6.7, the ``transport-padding`` rule); lowercase hex digits are accepted as the
    robustness note of rule (1) allows. Rule (4): an encoded line break stands for CRLF; a
    body part ends before the CRLF of the next delimiter (RFC 2046 5.1.1), so its last line
    gets none. Well-formed input is decoded in a few passes over the bytes; anything else
    is walked line by line to name the first fault.
    """
    raw, start, end = text.raw, leaf.body_start, leaf.body_end
    if _well_formed(text, start, end, _QP_BYTES) and not _QP_BAD_EQUALS.search(raw, start, end):
        return _qp_decode(raw, start, end)
    number = text.number(start)
    for line_start, content_end, _ in text.lines(start, end):
        line = raw[line_start:content_end].rstrip(_WSP)
        if len(line) > _MAX_ENCODED_LINE:
            _fail(
                replies.INVALID_ENCODING,
                f"quoted-printable line {number} in {where} is {len(line)} characters long, "
                f"more than {_MAX_ENCODED_LINE}",
            )
        column = 0
        while column < len(line):
            literal = _QP_LITERAL.match(line, column)
            assert literal is not None
            column = literal.end()
            if column == len(line):
                break
            if line[column : column + 1] != b"=":
                _fail(
                    replies.INVALID_ENCODING,
                    f"byte 0x{line[column]:02X} at line {number}, column {column + 1}, in "
                    f"{where} must be written as =XX in quoted-printable",
                )
            if column + 1 == len(line):
                break
            digits = line[column + 1 : column + 3]
            if len(digits) < 2 or any(d not in _HEX for d in digits):
                _fail(
                    replies.INVALID_ENCODING,
                    f"'=' at line {number}, column {column + 1}, in {where} is followed by "
                    "neither two hex digits nor the end of the line",
                )
            column += 3
        number += 1
    return _qp_decode(raw, start, end)  # no fault after all (a long padded line)


def _qp_decode(raw: bytes, start: int, end: int) -> bytes:
    """Decode well-formed quoted-printable: binascii decodes =XX and drops soft line breaks
    ('=' before a line break or at the end) once the transport padding is gone and every
    line break is CRLF."""
    body = memoryview(raw)[start:end]
    crlf_only = raw.count(b"\n", start, end) == raw.count(b"\r\n", start, end)
    padded = any(raw.find(p, start, end) >= 0 for p in (b" \r\n", b"\t\r\n")) or (
        end > start and raw[end - 1] in _WSP)
    if crlf_only and not padded:
        return binascii.a2b_qp(body)
    return binascii.a2b_qp(_QP_LINE_END.sub(b"\r\n", body).rstrip(_WSP))


def _well_formed(text: _Text, start: int, end: int, alphabet: bytes) -> bool:
    """Whether [start, end) holds only ``alphabet``, no CR that does not end a line, and no
    line longer than rule (5) allows; a chunk of whole lines at a time."""
    raw = text.raw
    while start < end:
        stop = raw.find(b"\n", min(start + _CHUNK, end), end) + 1 or end
        chunk = raw[start:stop]
        if chunk.translate(None, alphabet) or chunk.count(b"\r") != chunk.count(b"\r\n"):
            return False
        if max(map(len, chunk.splitlines()), default=0) > _MAX_ENCODED_LINE:
            return False
        start = stop
    return True
