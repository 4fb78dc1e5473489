"""ISO 9735 syntax with no I/O: UNA, separators, release character, repetitions, repertoires.

Where it sits in the mail flow: the first step of MIG validation of an EDIFACT submission.
It turns byte chunks into :class:`Segment` objects one at a time, so a 20 MB interchange is
read with memory bounded by the largest segment, not the interchange.

Why not pydifact (0.2.3, now only in the ``bench`` extra): measured here, its
``get_messages()`` fails on any interchange with UNG/UNE functional groups; it does not
split syntax-4 repetitions (``*``); it checks no control counts and no character
repertoire; its wheel ships no directory data, so it validates nothing; and it parses
0.3-0.5 MB/s, an order of magnitude below what the transport needs. Splitting on the
service characters with ``str.split`` and repairing only the splits a release character
escaped is short, exact and fast, so this module does its own tokenising. pydifact
remains the baseline in ``bench/mig_bench.py``.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from singlewindow.mig.errors import (
    SE_INVALID_CHARACTER,
    SE_INVALID_SERVICE_CHAR,
    SE_OUTSIDE,
    SE_SYNTAX_NOT_SUPPORTED,
    SE_UNSPECIFIED,
    ErrorClass,
    MigError,
    Place,
)

#: Components of one repetition of one data element.
Repetition = list[str]
#: One data element: its repetitions (one unless the syntax-4 repetition separator is used).
Element = list[Repetition]


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The service characters (ISO 9735-1 section 5; UNA positions 1-6)."""

    component: str = ":"
    element: str = "+"
    decimal: str = "."
    release: str | None = "?"
    repetition: str | None = "*"
    terminator: str = "'"

    def service(self) -> str:
        return "".join(
            c
            for c in (self.component, self.element, self.release, self.repetition,
                      self.terminator)
            if c
        )

    def una(self) -> str:
        """The UNA service string advice for these characters."""
        return "UNA" + self.component + self.element + self.decimal + (
            self.release or " ") + (self.repetition or " ") + self.terminator


# Default separators without UNA for level A/C/Y repertoires (ISO 9735-1 5.2); syntax 3
# has no repetition separator (the UNA position is "reserved, space").
DEFAULT_V4 = Delimiters()
DEFAULT_V3 = Delimiters(repetition=None)
# Level B without UNA uses the information separators IS1-IS4 and no release character.
DEFAULT_UNOB = Delimiters(component="\x1f", element="\x1d", release=None, repetition="\x1e",
                          terminator="\x1c")

#: Repertoire (syntax identifier 0001) -> Python codec. UNOA/UNOB are 7-bit; decoding them
#: as Latin-1 never fails, so a high byte is reported by the repertoire check with its place.
CHARSETS = {"UNOA": "latin-1", "UNOB": "latin-1", "UNOC": "latin-1", "UNOY": "utf-8"}

# Level A (ISO 9735-1 Annex, UNOA): upper-case letters, digits, space and these marks.
_UNOA_CHARS = "A-Z0-9 .,\\-()/='+:?!\"%&*;<>"
_REPERTOIRE_ALLOWED = {
    "UNOA": _UNOA_CHARS,
    "UNOB": "\\x20-\\x7e",
    "UNOC": "\\x20-\\x7e\\xa0-\\xff",
    # ISO 10646 without C0/C1 controls; U+FFFD marks bytes that were not UTF-8.
    "UNOY": "\\x20-\\x7e\\xa0-\\ufffc\\ufffe-\\U0010ffff",
}

MAX_SEGMENT_CHARS = 100_000  # a longer "segment" is not read (bounded memory)
#: What may stand between a segment terminator and the next tag, and before UNA/UNB: line
#: breaks and indentation are layout, not data (ISO 9735 readers in the field skip them).
LAYOUT = " \t\r\n"
_LAYOUT_BYTES = b" \t\r\n"
#: A segment starts with its tag, three capital letters or digits (ISO 9735-1 section 9,
#: the tags of the UN directories), then a separator or its terminator.
_TAG = "[A-Z0-9]{3}"


def repertoire_pattern(syntax_id: str, delims: Delimiters) -> re.Pattern[str]:
    """A pattern matching the first character outside the repertoire (service chars allowed)."""
    allowed = _REPERTOIRE_ALLOWED[syntax_id] + re.escape(delims.service())
    return re.compile(f"[^{allowed}]")


class Segment:
    """One segment: tag and data elements, values with release characters removed.

    The elements are split on first use: a segment whose XML is already known (the same
    text seen before in this interchange) is never split at all. A ``junk`` segment is text
    between terminators that is not a segment (or one too long to read): the tokenizer has
    reported it, it keeps its place in the count of segments, and no check looks into it.
    """

    __slots__ = ("_elements", "d", "index", "junk", "tag", "text")

    def __init__(self, text: str, d: Delimiters, index: int, junk: bool = False) -> None:
        self.text = text
        self.d = d
        self.index = index  # 1-based position in the interchange (UNA not counted)
        self.junk = junk
        self._elements: list[Element] | None = None
        head = text[:4]
        if junk:
            self.tag, self._elements = head[:3], []
        elif len(head) == 3 or (len(head) == 4 and head[3] == d.element):
            self.tag = head[:3]
        else:
            self.tag, self._elements = _split(text, d)

    @property
    def elements(self) -> list[Element]:
        if self._elements is None:
            self.tag, self._elements = _split(self.text, self.d)
        return self._elements

    def value(self, element: int, component: int = 1, default: str = "") -> str:
        """A component value by 1-based position, first repetition; ``default`` if absent."""
        elements = self.elements
        if element > len(elements):
            return default
        comps = elements[element - 1][0]
        return comps[component - 1] if component <= len(comps) else default


@dataclass(frozen=True, slots=True)
class Header:
    """What the first bytes say: separators, repertoire, syntax version."""

    delimiters: Delimiters
    syntax_id: str
    version: int
    skip: int  # bytes before the first segment (UNA, BOM, leading line breaks)


def _syntax_error(text: str, code: int, index: int | None = None, tag: str | None = None,
                  rule: str = "ISO9735-1") -> MigError:
    place = Place(interchange_segment=index, tag=tag)
    return MigError(ErrorClass.SYNTAX, rule, text, place, code)


def read_header(head: bytes, errors: list[MigError]) -> Header | None:
    """Parse UNA (if any) and UNB's syntax identifier from the first bytes."""
    skip = 3 if head.startswith(codecs.BOM_UTF8) else 0
    skip = _past_layout(head, skip)
    una: Delimiters | None = None
    if head[skip:skip + 3] == b"UNA":
        raw = head[skip + 3:skip + 9].decode("latin-1")
        if len(raw) < 6:
            errors.append(_syntax_error("UNA is shorter than six service characters",
                                        SE_INVALID_SERVICE_CHAR, tag="UNA", rule="ISO9735-UNA"))
            return None
        una = _una_delimiters(raw, errors)
        if una is None:
            return None
        skip = _past_layout(head, skip + 9)
    if head[skip:skip + 3] != b"UNB":
        found = head[skip:skip + 12].decode("latin-1")
        what = f"is {found!r}" if found else "is missing"
        errors.append(_syntax_error(
            f"the interchange must begin with UNB{'' if una else ' (or UNA)'}; what stands "
            f"{'after UNA' if una else 'first'} {what}", SE_OUTSIDE,
            tag=head[skip:skip + 3].decode("latin-1") or None, rule="ISO9735-UNB"))
        return None
    sep = head[skip + 3:skip + 4].decode("latin-1")
    level_b = una is None and sep == DEFAULT_UNOB.element
    base = una or (DEFAULT_UNOB if level_b else DEFAULT_V4)
    s001 = head[skip + 4:skip + 40].decode("latin-1").split(base.element, 1)[0]
    parts = s001.split(base.component)
    syntax_id = parts[0]
    version = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if syntax_id not in CHARSETS or version not in (3, 4):
        errors.append(_syntax_error(
            f"syntax identifier {syntax_id}:{version or '?'} is not supported "
            "(UNOA, UNOB, UNOC, UNOY; syntax version 3 or 4)",
            SE_SYNTAX_NOT_SUPPORTED, 1, "UNB", "ISO9735-UNB-S001"))
        return None
    return Header(_for_version(base, version, una is not None), syntax_id, version, skip)


def _past_layout(head: bytes, skip: int) -> int:
    while head[skip:skip + 1] and head[skip] in _LAYOUT_BYTES:
        skip += 1
    return skip


def _for_version(d: Delimiters, version: int, explicit: bool) -> Delimiters:
    """Syntax 3 has no repetition separator; a space in UNA position 5 means none either."""
    if version < 4 or (explicit and d.repetition == " "):
        return Delimiters(d.component, d.element, d.decimal, d.release, None, d.terminator)
    return d


def _una_delimiters(raw: str, errors: list[MigError]) -> Delimiters | None:
    comp, elem, dec, rel, rep, term = (raw[i] for i in range(6))
    d = Delimiters(comp, elem, dec, None if rel == " " else rel, rep, term)
    chosen = [c for c in (comp, elem, d.release, rep if rep != " " else None, term) if c]
    if len(set(chosen)) != len(chosen) or any(c.isalnum() for c in chosen):
        errors.append(_syntax_error(f"UNA service characters {raw!r} are not distinct "
                                    "non-alphanumeric characters", SE_INVALID_SERVICE_CHAR,
                                    tag="UNA", rule="ISO9735-UNA"))
        return None
    return d


def split_escaped(text: str, sep: str, rel: str | None) -> list[str]:
    """Split on ``sep`` except where a release character escapes it; values stay escaped."""
    parts = text.split(sep)
    if rel is None or rel not in text:
        return parts
    out, pending = _rejoin_released(parts, sep, rel)
    if pending is not None:
        out.append(pending)
    return out


_UNESCAPE_CACHE: dict[str, re.Pattern[str]] = {}


def unescape(value: str, rel: str | None) -> str:
    if rel is None or rel not in value:
        return value
    pat = _UNESCAPE_CACHE.get(rel)
    if pat is None:
        pat = _UNESCAPE_CACHE[rel] = re.compile(re.escape(rel) + "(.)", re.S)
    return pat.sub(r"\1", value)


def _split(text: str, d: Delimiters) -> tuple[str, list[Element]]:
    """Tag and elements/repetitions/components of one segment (without its terminator)."""
    rel, comp, rep = d.release, d.component, d.repetition
    if rel is None or rel not in text:
        raw = text.split(d.element)
        elements: list[Element] = [
            [r.split(comp) for r in e.split(rep)] if rep and rep in e else [e.split(comp)]
            for e in raw[1:]
        ]
        return raw[0].split(comp, 1)[0], elements
    raw = split_escaped(text, d.element, rel)
    elements = []
    for e in raw[1:]:
        reps = split_escaped(e, rep, rel) if rep else [e]
        elements.append([[unescape(c, rel) for c in split_escaped(r, comp, rel)] for r in reps])
    return unescape(split_escaped(raw[0], comp, rel)[0], rel), elements


def parse_segment(text: str, d: Delimiters, index: int) -> Segment:
    """One segment (without its terminator), split at once."""
    seg = Segment(text, d, index)
    seg.elements  # noqa: B018  # split now, not lazily
    return seg


class Tokenizer:
    """Incremental segment splitter: feed decoded text, get whole segments back.

    Layout between segments (:data:`LAYOUT` after a terminator) is dropped without a word.
    Text between terminators that does not start with a tag is one finding and a ``junk``
    segment; so is a segment longer than :data:`MAX_SEGMENT_CHARS`, which is skipped up to
    its terminator without being held in memory.
    """

    def __init__(self, header: Header, errors: list[MigError]) -> None:
        self.d = d = header.delimiters
        self.errors = errors
        self.bad = repertoire_pattern(header.syntax_id, d)
        self.tag = re.compile(f"{_TAG}(?:[{re.escape(d.element + d.component)}]|\\Z)")
        self.layout_after = tuple(d.terminator + c for c in LAYOUT)
        self.syntax_id = header.syntax_id
        self.rest = ""
        self.count = 0
        self.skipping: str | None = None  # the start of a segment too long to read
        self.previous = ""  # the tag of the last segment, for the place of junk

    def feed(self, text: str) -> tuple[list[str], int] | list[Segment]:
        """The whole segments completed by ``text``: in the common case (nothing to report)
        their texts and the interchange index of the first, so a caller may skip making
        Segment objects; otherwise Segment objects, the problems reported."""
        d = self.d
        buf = self.rest + text if self.rest else text
        parts = buf.split(d.terminator)
        rest = parts.pop()
        if d.release is not None and d.release in buf:
            parts, carried = _rejoin_released(parts, d.terminator, d.release)
            if carried is not None:
                rest = carried + d.terminator + rest
        exact = False
        if self.skipping is not None and parts:
            # The end of a segment too long to read: it stands as one junk segment.
            exact, parts[0] = True, ""
        if len(rest) > MAX_SEGMENT_CHARS:
            rest = self._too_long(rest, not parts)
        self.rest = rest
        if exact or "" in parts:  # the exact path reports what is not a segment
            return [s for p in parts if (s := self._segment(p)) is not None]
        if buf[:1] in LAYOUT or any(t in buf for t in self.layout_after):
            texts = [p.lstrip(LAYOUT) for p in parts]
            if "" in texts:
                texts = [t for t in texts if t]
        else:
            texts = parts
        match = self.tag.match
        if (self.bad.search(d.terminator.join(texts)) is not None
                or not all(match(t) for t in texts)):
            return [s for p in parts if (s := self._segment(p)) is not None]
        # Nothing to report (the common case): the same segments, at once.
        if texts:
            self.previous = texts[-1][:3]
        start = self.count + 1
        self.count += len(texts)
        return texts, start

    def _too_long(self, rest: str, continued: bool) -> str:
        """Report a segment longer than the limit (once) and drop what was read of it,
        keeping only whether its last character escapes the next one."""
        d = self.d
        if self.skipping is None or not continued:
            start = rest.lstrip(LAYOUT)
            self.skipping = start[:3]
            self.errors.append(_syntax_error(
                f"segment {start[:3]!r} has no unreleased terminator {d.terminator!r} within "
                f"{MAX_SEGMENT_CHARS} characters: a segment that long is not read",
                SE_UNSPECIFIED, self.count + 1, start[:3]))
        rel = d.release
        if rel is not None and (len(rest) - len(rest.rstrip(rel))) % 2:
            return rel
        return ""

    def close(self) -> list[Segment]:
        """End of input: anything left is a segment without its terminator."""
        tail = self.rest.strip(LAYOUT)
        self.rest = ""
        if tail and self.skipping is None:
            self.errors.append(_syntax_error(
                f"the last segment ({tail[:20]!r}) is not terminated by "
                f"{self.d.terminator!r}", SE_UNSPECIFIED, self.count + 1, tail[:3]))
        return []

    def _segment(self, text: str) -> Segment | None:
        if self.skipping is not None and text == "":
            # The end of the segment _too_long reported: it keeps its place, unread.
            self.count += 1
            tag, self.skipping = self.skipping, None
            return Segment(tag, self.d, self.count, junk=True)
        text = text.lstrip(LAYOUT)
        if not text or not self.tag.match(text):
            return self._junk(text)
        self.count += 1
        self.previous = text[:3]
        bad = self.bad.search(text)
        if bad is not None:
            self.errors.append(MigError(
                ErrorClass.REPERTOIRE, f"ISO9735-{self.syntax_id}",
                f"character {bad.group()!r} is not in repertoire {self.syntax_id}",
                Place(interchange_segment=self.count, tag=text[:3]), SE_INVALID_CHARACTER))
        return Segment(text, self.d, self.count)

    def _junk(self, text: str) -> Segment | None:
        """Text between terminators that is not a segment: one finding. Empty text (two
        terminators in a row) is no segment at all; other text keeps a segment's place in
        the count (it may be a segment whose tag was garbled)."""
        term = self.d.terminator
        after = f" after segment {self.previous}" if self.previous else ""
        if not text:
            self.errors.append(_syntax_error(
                f"an empty segment (a terminator {term!r} with nothing before it){after}",
                SE_UNSPECIFIED, self.count or None, self.previous or None, "ISO9735-1-9"))
            return None
        self.count += 1
        self.errors.append(_syntax_error(
            f"{text[:20]!r}{after} is not a segment: a segment begins with a tag of three "
            "capital letters or digits, then a separator", SE_UNSPECIFIED, self.count,
            rule="ISO9735-1-9"))
        return Segment(text, self.d, self.count, junk=True)


def _rejoin_released(parts: list[str], term: str, rel: str) -> tuple[list[str], str | None]:
    """Undo splits at released terminators; return the whole parts and an unfinished tail.

    Linear in the text: the pieces of a part that released terminators split are joined
    once, however many there are (``?'?'?'...`` in a value)."""
    out: list[str] = []
    pending: list[str] = []
    for part in parts:
        # An odd run of release characters before the separator means it was released.
        if (len(part) - len(part.rstrip(rel))) % 2:
            pending.append(part)
        elif pending:
            pending.append(part)
            out.append(term.join(pending))
            pending = []
        else:
            out.append(part)
    return out, term.join(pending) if pending else None


CHUNK = 1 << 16


def iter_segments(chunks: Iterable[bytes], errors: list[MigError]) -> Iterator[Segment]:
    """Segments of an interchange given as byte chunks; problems go to ``errors``.

    The first segment yielded is UNB; UNA, if present, is consumed as the header.
    """
    for d, batch in iter_batches(chunks, errors):
        if isinstance(batch, list):
            yield from batch
        else:
            texts, start = batch
            yield from (Segment(t, d, i) for i, t in enumerate(texts, start))


def iter_batches(chunks: Iterable[bytes], errors: list[MigError]
                 ) -> Iterator[tuple[Delimiters, tuple[list[str], int] | list[Segment]]]:
    """What :func:`iter_segments` yields, a chunk at a time and with the delimiters: either
    the segment texts and the index of the first (nothing to report in them), or Segment
    objects (the exact path, which has reported what it found)."""
    it = iter(chunks)
    head = b""
    for chunk in it:
        head += chunk
        if len(head.lstrip(codecs.BOM_UTF8 + _LAYOUT_BYTES)) >= 128:
            break
    header = read_header(head, errors)
    if header is None:
        return
    for batch in _batches(header, head[header.skip:], it, errors):
        yield header.delimiters, batch


def _batches(header: Header, first: bytes, rest: Iterator[bytes], errors: list[MigError]
             ) -> Iterator[tuple[list[str], int] | list[Segment]]:
    tok = Tokenizer(header, errors)
    decoder = codecs.getincrementaldecoder(CHARSETS[header.syntax_id])(errors="replace")
    yield tok.feed(decoder.decode(first))
    for chunk in rest:
        yield tok.feed(decoder.decode(chunk))
    yield tok.feed(decoder.decode(b"", final=True))
    tok.close()


def chunked(data: bytes, size: int = CHUNK) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


# --- writing --------------------------------------------------------------------------


def escape(value: str, d: Delimiters) -> str:
    """Insert the release character before every service character in ``value``."""
    rel = d.release
    if rel is None:
        return value
    if not any(c in value for c in d.service()):
        return value
    return "".join(rel + c if c in d.service() else c for c in value)


def format_segment(tag: str, elements: list[Element], d: Delimiters) -> str:
    """One segment as text with its terminator; trailing empty positions are suppressed
    (ISO 9735-1 section 9: they are omitted, not sent empty)."""
    out: list[str] = []
    for element in elements:
        reps = [_strip_join([escape(c, d) for c in r], d.component) for r in element]
        out.append((d.repetition or "").join(reps) if len(reps) > 1 else reps[0] if reps else "")
    while out and out[-1] == "":
        out.pop()
    return d.element.join([tag, *out]) + d.terminator


def _strip_join(values: list[str], sep: str) -> str:
    while values and values[-1] == "":
        values.pop()
    return sep.join(values)
