"""One EDIFACT message against its MIG: structure, element formats, code lists, and XML.

Where it sits in the mail flow: after the envelope walk, for each message of an EDIFACT
submission. The structure check is a push-down walk over the MIG's segment table (the
same walk a reader does with the directory's segment table: a group is entered by its
first segment, left when a segment belongs further out). Each segment it accepts is checked
element by element and written as XML in the same pass, so the message is read once.
Both the walk and the element checks have a fast path for the common, error-free case
(group tables and segment plans compiled once); at the first doubt the exact code runs,
so every error comes from one place and valid input gives the same XML either way. The
fast path exists twice: in Python (:meth:`MessageChecker._fast`, :func:`fast_xml`), one
segment at a time, and in C (``_accel.c``, compiled by :class:`Compiled`), which the
converter hands whole runs of segment texts without making a Segment object for each;
it is the same algorithm step for step, except that the C path also takes segments with
release characters and repetition separators (the Python fast path leaves those to
:meth:`SegmentWriter._write`), and ``tests/unit/mig/edifact/test_accel.py`` holds the two
to identical XML and errors.

XML names follow the UN directory (the convention of ISO/TS 20625): ``M_PAXLST`` message,
``G_SG4`` segment group, ``S_NAD`` segment, ``C_C082`` composite, ``D_3035`` data element.
Empty positions are omitted; repetitions (syntax 4) repeat the element.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from singlewindow.mig.edifact.syntax import Delimiters, Segment
from singlewindow.mig.errors import (
    SE_INVALID_CHAR_TYPE,
    SE_INVALID_VALUE,
    SE_MISSING,
    SE_NOT_SUPPORTED_HERE,
    SE_TOO_LONG,
    SE_TOO_MANY_CONSTITUENTS,
    SE_TOO_MANY_GROUP_REPETITIONS,
    SE_TOO_MANY_REPETITIONS,
    SE_TOO_SHORT,
    ErrorClass,
    MigError,
    Place,
    count,
)
from singlewindow.mig.model import ComponentDef, Fmt, GroupDef, SegmentDef, SegmentRef

try:
    from singlewindow.mig.edifact import _accel
except ImportError:  # not built: the Python fast path serves (tests require the C one)
    _accel = None  # type: ignore[assignment]

#: The tags the envelope walk owns; the compiled fast path never takes them.
SERVICE_TAGS = ("UNB", "UNG", "UNH", "UNT", "UNE", "UNZ")
CACHE_SIZE = 20_000
_NUMERIC = re.compile(r"-?\d*(?:[.,]\d*)?")
_DIGIT = re.compile(r"\d")


@dataclass(frozen=True, slots=True)
class EdifactProfile:
    """What one EDIFACT message type needs at message time, compiled by the loader."""

    name: str  # MIG type name, e.g. "PAXLST-D03B"
    message: str  # UNH 0065, e.g. "PAXLST"
    structure: GroupDef
    segments: Mapping[str, SegmentDef]
    codes: Mapping[str, frozenset[str]]
    rule_prefix: str  # rule ids of structure/format errors start with this


def xml_text(value: str) -> str:
    if "&" in value or "<" in value or ">" in value:
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value


class SegmentWriter:
    """Checks a segment's elements against its definition and writes its XML."""

    def __init__(self, segments: Mapping[str, SegmentDef], codes: Mapping[str, frozenset[str]],
                 rule_prefix: str, errors: list[MigError],
                 cache: dict[str, str] | None = None,
                 plans: dict[str, tuple[_ElementPlan, ...]] | None = None) -> None:
        # Segment text -> its XML, for segments that passed every check. Within one
        # interchange (fixed separators, one MIG type) equal text means equal result, and
        # real interchanges repeat many segments (LOC, NAT, ATT, DTM).
        self.cache: dict[str, str] = {} if cache is None else cache
        self.segments = segments
        #: compiled definitions for the fast path, per segment tag
        self.plans: dict[str, tuple[_ElementPlan, ...]] = {} if plans is None else plans
        self.codes = codes
        self.prefix = rule_prefix
        self.errors = errors
        self.message: str | None = None

    def error(self, cls: ErrorClass, seg: Segment, pos: int | None, el: int | None,
              comp: int | None, rule: str, text: str, code: int) -> None:
        place = Place(segment=pos, tag=seg.tag, element=el, component=comp,
                      message=self.message, interchange_segment=seg.index)
        self.errors.append(MigError(cls, f"{self.prefix}:{rule}", text, place, code))

    def write(self, seg: Segment, pos: int | None, out: list[str]) -> None:
        known = self.cache.get(seg.text)
        if known is not None:
            out.append(known)
            return
        tag = seg.tag
        if seg.text[3:4] in (seg.d.element, ""):
            plan = self.plans.get(tag)
            if plan is None:
                plan = self.plans[tag] = compile_plan(self.segments[tag], self.codes)
            d = seg.d
            fast = fast_xml(seg.text, tag, plan, d.element, d.component,
                            (d.release or "") + (d.repetition or ""))
            if fast is not None:
                out.append(fast)
                self._remember(seg.text, fast)
                return
        mark = count(self.errors)
        piece: list[str] = []
        self._write(seg, pos, piece)
        xml = "".join(piece)
        out.append(xml)
        if count(self.errors) == mark:
            self._remember(seg.text, xml)

    def _remember(self, text: str, xml: str) -> None:
        if len(self.cache) >= CACHE_SIZE:
            self.cache.clear()  # bounded memory beats a perfect hit rate
        self.cache[text] = xml

    def _write(self, seg: Segment, pos: int | None, out: list[str]) -> None:
        sdef = self.segments[seg.tag]
        out.append(f"<S_{seg.tag}>")
        defs = sdef.elements
        for i, element in enumerate(seg.elements[:len(defs)]):
            edef = defs[i]
            if len(element) > edef.repeat:
                self.error(ErrorClass.FORMAT, seg, pos, i + 1, None, f"{seg.tag}/{edef.id}",
                           f"{edef.id} ({edef.name}) repeated {len(element)} times, at most "
                           f"{edef.repeat} allowed", SE_TOO_MANY_REPETITIONS)
            present = False
            for rep in element:
                if edef.components:
                    present = self._composite(seg, pos, i + 1, edef.id, edef.components, rep,
                                              out) or present
                elif rep != [""]:
                    present = True
                    self._simple(seg, pos, i + 1, edef.id, edef.name, edef.fmt, rep, out)
            if edef.mandatory and not present:
                self._missing(seg, pos, i + 1, None, edef.id, edef.name)
        for i in range(len(seg.elements), len(defs)):
            if defs[i].mandatory:
                self._missing(seg, pos, i + 1, None, defs[i].id, defs[i].name)
        if len(seg.elements) > len(defs) and any(
                r != [""] for e in seg.elements[len(defs):] for r in e):
            self.error(ErrorClass.FORMAT, seg, pos, len(defs) + 1, None, f"{seg.tag}",
                       f"{seg.tag} has {len(seg.elements)} data elements, the directory "
                       f"defines {len(defs)}", SE_TOO_MANY_CONSTITUENTS)
        out.append(f"</S_{seg.tag}>")

    def _missing(self, seg: Segment, pos: int | None, el: int, comp: int | None, did: str,
                 name: str) -> None:
        self.error(ErrorClass.FORMAT, seg, pos, el, comp, f"{seg.tag}/{did}",
                   f"mandatory data element {did} ({name}) is missing", SE_MISSING)

    def _simple(self, seg: Segment, pos: int | None, el: int, did: str, name: str,
                fmt: Fmt | None, rep: list[str], out: list[str]) -> None:
        value = rep[0]
        if len(rep) > 1:
            self.error(ErrorClass.FORMAT, seg, pos, el, 2, f"{seg.tag}/{did}",
                       f"{did} ({name}) is a simple data element but has components",
                       SE_TOO_MANY_CONSTITUENTS)
        if value:
            assert fmt is not None  # the reader gives every simple element a format
            self._value(seg, pos, el, None, did, fmt, value)
            out.append(f"<D_{did}>{xml_text(value)}</D_{did}>")

    def _composite(self, seg: Segment, pos: int | None, el: int, cid: str,
                   comps: tuple[ComponentDef, ...], rep: list[str], out: list[str]) -> bool:
        if not any(rep):
            return False
        out.append(f"<C_{cid}>")
        for j, cdef in enumerate(comps):
            value = rep[j] if j < len(rep) else ""
            if value:
                self._value(seg, pos, el, j + 1, cdef.id, cdef.fmt, value)
                out.append(f"<D_{cdef.id}>{xml_text(value)}</D_{cdef.id}>")
            elif cdef.mandatory:
                self._missing(seg, pos, el, j + 1, cdef.id, cdef.name)
        out.append(f"</C_{cid}>")
        if len(rep) > len(comps) and any(rep[len(comps):]):
            self.error(ErrorClass.FORMAT, seg, pos, el, len(comps) + 1, f"{seg.tag}/{cid}",
                       f"composite {cid} has {len(rep)} components, the directory defines "
                       f"{len(comps)}", SE_TOO_MANY_CONSTITUENTS)
        return True

    def _value(self, seg: Segment, pos: int | None, el: int, comp: int | None, did: str,
               fmt: Fmt, value: str) -> None:
        problem = check_format(value, fmt)
        if problem is not None:
            text, code = problem
            self.error(ErrorClass.FORMAT, seg, pos, el, comp, f"{seg.tag}/{did}",
                       f"{did} value {value!r} {text} (format {fmt})", code)
        allowed = codes_of(self.codes, seg.tag, did)
        if allowed is not None and value not in allowed:
            self.error(ErrorClass.CODELIST, seg, pos, el, comp, f"{seg.tag}/{did}/codes",
                       f"{did} value {value!r} is not in the MIG's code list", SE_INVALID_VALUE)


def check_format(value: str, fmt: Fmt) -> tuple[str, int] | None:
    """Why ``value`` breaks ``fmt`` (text, ISO 9735 error code), or ``None``."""
    size = len(value)
    if fmt.kind == "n":
        if not _NUMERIC.fullmatch(value) or not any(c.isdigit() for c in value):
            return "is not numeric", SE_INVALID_CHAR_TYPE
        # Sign and decimal mark do not count towards a numeric element's length (9735-1 10).
        size -= value.startswith("-") + ("." in value or "," in value)
    elif fmt.kind == "a" and _DIGIT.search(value):
        return "contains digits", SE_INVALID_CHAR_TYPE
    if size > fmt.max:
        return f"is {size} characters long, at most {fmt.max} allowed", SE_TOO_LONG
    if size < fmt.min:
        return f"is {size} characters long, at least {fmt.min} required", SE_TOO_SHORT
    return None


# --- the fast path of SegmentWriter: a plain segment that passes every check -------------

#: One value position: (XML open tag, close tag, format kind, min, max, Fmt, code list).
_ValuePlan = tuple[str, str, str, int, int, Fmt, frozenset[str] | None]
#: One element position: (mandatory, composite's open/close tags or "", its components'
#: (mandatory, value plan) or the simple element's value plan).
_ElementPlan = tuple[bool, str, str, tuple[tuple[bool, _ValuePlan], ...]]


def codes_of(codes: Mapping[str, frozenset[str]], tag: str, did: str
              ) -> frozenset[str] | None:
    """The MIG's code list of ``did`` in segment ``tag``: its own (``"BGM/1001"``), else the
    data element's (``"1001"``), else none."""
    return codes.get(f"{tag}/{did}", codes.get(did))


def _value_plan(did: str, fmt: Fmt, codes: Mapping[str, frozenset[str]], tag: str
                ) -> _ValuePlan:
    return (f"<D_{did}>", f"</D_{did}>", fmt.kind, fmt.min, fmt.max, fmt,
            codes_of(codes, tag, did))


def compile_plan(sdef: SegmentDef, codes: Mapping[str, frozenset[str]]
                 ) -> tuple[_ElementPlan, ...]:
    """What :func:`fast_xml` needs of a segment definition, worked out once."""
    plan: list[_ElementPlan] = []
    for edef in sdef.elements:
        if edef.components:
            comps = tuple((c.mandatory, _value_plan(c.id, c.fmt, codes, sdef.tag))
                          for c in edef.components)
            plan.append((edef.mandatory, f"<C_{edef.id}>", f"</C_{edef.id}>", comps))
        else:
            assert edef.fmt is not None  # the reader gives every simple element a format
            plan.append((edef.mandatory, "", "", ((True, _value_plan(edef.id, edef.fmt,
                                                                       codes, sdef.tag)),)))
    return tuple(plan)


def _value_ok(value: str, vp: _ValuePlan) -> bool:
    if vp[2] == "an":
        if not vp[3] <= len(value) <= vp[4]:
            return False
    elif check_format(value, vp[5]) is not None:
        return False
    return vp[6] is None or value in vp[6]


def fast_xml(text: str, tag: str, plan: tuple[_ElementPlan, ...], element: str,
             component: str, special: str) -> str | None:
    """The XML of a segment with no release or repetition character in it that passes every
    check; ``None`` when it does not (or may not), and the exact checks must run instead.

    It never accepts what :meth:`SegmentWriter._write` would reject: any doubt returns
    ``None``, so the errors always come from one place.
    """
    for c in special:
        if c in text:
            return None
    raw = text.split(element)
    if len(raw) - 1 > len(plan):
        return None
    out = [f"<S_{tag}>"]
    for i in range(1, len(raw)):
        mandatory, open_, close, comps = plan[i - 1]
        value = raw[i]
        if not open_:  # simple element
            if not value:
                if mandatory:
                    return None
                continue
            if component in value:
                return None
            vp = comps[0][1]
            if vp[2] == "an":
                if not vp[3] <= len(value) <= vp[4] or (vp[6] is not None
                                                        and value not in vp[6]):
                    return None
            elif not _value_ok(value, vp):
                return None
            out.append(f"{vp[0]}{xml_text(value)}{vp[1]}")
            continue
        parts = value.split(component) if value else [""]
        if len(parts) > len(comps) or not any(parts):
            if len(parts) > len(comps) or mandatory:
                return None
            continue
        out.append(open_)
        for j, (cmand, vp) in enumerate(comps):
            v = parts[j] if j < len(parts) else ""
            if v:
                if vp[2] == "an":
                    if not vp[3] <= len(v) <= vp[4] or (vp[6] is not None
                                                        and v not in vp[6]):
                        return None
                elif not _value_ok(v, vp):
                    return None
                out.append(f"{vp[0]}{xml_text(v)}{vp[1]}")
            elif cmand:
                return None
        out.append(close)
    for k in range(len(raw) - 1, len(plan)):
        if plan[k][0]:
            return None
    out.append(f"</S_{tag}>")
    return "".join(out)


class _Table:
    """A group's segment table worked out once for the structure walk's fast path."""

    __slots__ = ("group", "groups", "mandatory_before", "max", "next", "opens", "triggers")

    def __init__(self, group: GroupDef) -> None:
        self.group = group
        self.triggers = group.triggers
        self.max = tuple(c.max for c in group.children)
        self.groups = tuple(c if isinstance(c, GroupDef) else None for c in group.children)
        self.opens = tuple(f"<G_{c.name}>" if isinstance(c, GroupDef) else ""
                           for c in group.children)
        # mandatory_before[k]: how many of the first k children are mandatory, so a range
        # of children holds a mandatory one when the difference is not zero.
        counts = [0]
        for c in group.children:
            counts.append(counts[-1] + c.mandatory)
        self.mandatory_before = tuple(counts)
        #: (position, tag) -> the first child at or after position that tag starts, or -1
        self.next: dict[tuple[int, str], int] = {}

    def find(self, idx: int, tag: str) -> int:
        key = (idx, tag)
        j = self.next.get(key)
        if j is None:
            try:
                j = self.triggers.index(tag, idx)
            except ValueError:
                j = -1
            self.next[key] = j
        return j


_TABLES: dict[int, _Table] = {}


def _table(group: GroupDef) -> _Table:
    table = _TABLES.get(id(group))
    if table is None or table.group is not group:
        if len(_TABLES) > 10_000:  # MIG reloads leave old groups behind
            _TABLES.clear()
        table = _TABLES[id(group)] = _Table(group)
    return table


class _Frame:
    __slots__ = ("count", "group", "idx", "table")

    def __init__(self, group: GroupDef) -> None:
        self.group = group
        self.table = _table(group)
        self.idx = 0
        self.count = 0


class Compiled:
    """A message type compiled for the C fast path (``_accel.Program``): its groups numbered
    depth first (the message itself is 0), its segment plans, the envelope's tags."""

    __slots__ = ("groups", "ids", "profile", "program")

    def __init__(self, profile: EdifactProfile) -> None:
        assert _accel is not None
        self.profile = profile
        self.groups: list[GroupDef] = []
        self.ids: dict[int, int] = {}  # id(GroupDef) -> its number
        self._number(profile.structure)
        groups = []
        for group in self.groups:
            t = _table(group)
            groups.append((f"<G_{group.name}>", f"</G_{group.name}>", group.triggers, t.max,
                           tuple(-1 if g is None else self.ids[id(g)] for g in t.groups),
                           t.mandatory_before))
        plans = {tag: _c_plan(compile_plan(sdef, profile.codes), sdef)
                 for tag, sdef in profile.segments.items()}
        self.program = _accel.Program(groups, plans, SERVICE_TAGS)

    def _number(self, group: GroupDef) -> None:
        self.ids[id(group)] = len(self.groups)
        self.groups.append(group)
        for child in group.children:
            if isinstance(child, GroupDef):
                self._number(child)


_KINDS = {"an": 0, "a": 1, "n": 2}


def _c_plan(plan: tuple[_ElementPlan, ...], sdef: SegmentDef) -> tuple[object, ...]:
    return tuple((mandatory, open_, close,
                  tuple((cmand, vp[0], vp[1], _KINDS[vp[2]], vp[3], vp[4], vp[6])
                        for cmand, vp in comps), edef.repeat)
                 for (mandatory, open_, close, comps), edef in zip(plan, sdef.elements,
                                                                   strict=True))


_COMPILED: dict[int, tuple[EdifactProfile, Compiled | None]] = {}


def compiled(profile: EdifactProfile) -> Compiled | None:
    """The profile's C program, made once; ``None`` without the extension, or for a MIG the
    C tables cannot hold (tags outside A-Z/0-9): the Python path then does it all."""
    if _accel is None:
        return None
    found = _COMPILED.get(id(profile))
    if found is None or found[0] is not profile:
        if len(_COMPILED) > 1000:  # MIG reloads leave old profiles behind
            _COMPILED.clear()
        try:
            program: Compiled | None = Compiled(profile)
        except ValueError:
            program = None
        found = _COMPILED[id(profile)] = (profile, program)
    return found[1]


class MessageChecker:
    """Walks one message's segments through the structure and collects its XML."""

    def __init__(self, profile: EdifactProfile, writer: SegmentWriter, ref: str,
                 fast: Compiled | None = None) -> None:
        self.p = profile
        self.writer = writer
        writer.message = ref
        self.errors = writer.errors
        self.out: list[str] = [f"<M_{profile.message}>"]
        self.stack = [_Frame(profile.structure)]
        self.last_seg: Segment | None = None
        self.last_pos = 0
        #: the C fast path for runs of segments (see :meth:`run`), if built
        self.compiled = fast
        #: segments that fit nowhere since the last one the walk took: the first, its
        #: position and context, how many followed it and the position of the last
        self.lost: tuple[Segment, int, str, int, int] | None = None

    def segment(self, seg: Segment, pos: int) -> None:
        if seg.junk:  # not a segment: the tokenizer reported it; it keeps its position
            return
        self.last_seg, self.last_pos = seg, pos
        if self.lost is not None or not self._fast(seg, pos):
            self._segment(seg, pos)

    def run(self, texts: list[str], i: int, d: Delimiters) -> tuple[int, bool]:
        """Take ``texts[i:]`` through the C fast path, as :meth:`segment` would one by one,
        until a segment needs the Python code (or an envelope segment comes): returns its
        index ``j`` (``len(texts)`` if none) and whether its structure step is already taken
        (then only its XML is left: ``writer.write``). Needs :attr:`compiled`."""
        c = self.compiled
        assert c is not None
        if self.lost is not None:  # the exact walk ends the run of lost segments first
            return i, False
        ids = c.ids
        frames = [(ids[id(f.group)], f.idx, f.count) for f in self.stack]
        j, status, after = c.program.run(texts, i, frames, d.element, d.component,
                                         d.release or "", d.repetition or "", self.out)
        if after != tuple(frames):
            stack = []
            for gid, idx, count in after:
                frame = _Frame(c.groups[gid])
                frame.idx, frame.count = idx, count
                stack.append(frame)
            self.stack = stack
        return j, status == 1

    def _fast(self, seg: Segment, pos: int) -> bool:
        """The step of :meth:`_segment` when it cannot raise an error, taken with table
        look-ups; ``False`` where an error may arise, and :meth:`_segment` goes on from
        there (each change made here is one it would have made the same way)."""
        tag = seg.tag
        stack = self.stack
        level = len(stack) - 1
        while True:
            frame = stack[level]
            t = frame.table
            idx = frame.idx
            j = t.find(idx, tag)
            if j >= 0:
                break
            # Not in this group from here on: it closes, if nothing mandatory is left and
            # the tag is found further out (a segment that fits nowhere closes nothing).
            if level == 0:
                return False
            start = idx if frame.count == 0 else idx + 1
            if t.mandatory_before[-1] != t.mandatory_before[start]:
                return False
            level -= 1
        while len(stack) - 1 > level:
            closed = stack.pop()
            self.out.append(f"</G_{closed.group.name}>")
        while True:
            if j == idx:
                if frame.count >= t.max[j]:
                    return False  # pass-over, new repetition or too many: the exact walk
                frame.count += 1
            else:
                start = idx if frame.count == 0 else idx + 1
                if t.mandatory_before[j] != t.mandatory_before[start] or t.max[j] < 1:
                    return False
                frame.idx, frame.count = j, 1
            child = t.groups[j]
            if child is not None:
                self.out.append(t.opens[j])
                inner = _Frame(child)
                inner.count = 1
                stack.append(inner)
            known = self.writer.cache.get(seg.text)  # SegmentWriter.write's first step
            if known is None:
                self.writer.write(seg, pos, self.out)
            else:
                self.out.append(known)
            return True

    def _segment(self, seg: Segment, pos: int) -> None:
        """The exact structure step. A segment that fits no open group from its position on
        is reported and passed over, the walk staying where it was, so the segments after
        it are judged as if it were not there (an unknown or stray segment is one finding,
        not one for each segment after it). A run of such segments, one after the other,
        is one finding: after the first, the walk has lost its place, and where the
        others belong says nothing new."""
        stack = self.stack
        for level in range(len(stack) - 1, -1, -1):
            if _find(stack[level], seg.tag) is not None:
                break
        else:
            if self.lost is None:
                self.lost = (seg, pos, self._context(), 0, pos)
            else:
                first, at, context, more, _ = self.lost
                self.lost = (first, at, context, more + 1, pos)
            return
        self._report_lost()
        while len(stack) - 1 > level:
            self._close()
        frame = stack[-1]
        j = _find(frame, seg.tag)
        assert j is not None
        self._advance(frame, j, seg, pos)

    def _report_lost(self) -> None:
        if self.lost is None:
            return
        seg, pos, context, more, last = self.lost
        self.lost = None
        also = (f"; nor do the {more} segment{'s' if more > 1 else ''} after it, up to "
                f"segment {last}") if more else ""
        self._error(seg, pos, seg.tag, f"segment {seg.tag} is not allowed here (after "
                    f"{context}){also}", SE_NOT_SUPPORTED_HERE)

    def finish(self) -> str:
        """Close every open group (checking what they still lack) and return the XML."""
        self._report_lost()
        while len(self.stack) > 1:
            self._close()
        self._check_missing(self.stack[0], len(self.stack[0].group.children))
        self.out.append(f"</M_{self.p.message}>")
        return "".join(self.out)

    def _context(self) -> str:
        frame = self.stack[-1]
        child = frame.group.children[frame.idx]
        return f"{child.tag if isinstance(child, SegmentRef) else child.name} in {frame.group.name}"

    def _advance(self, frame: _Frame, j: int, seg: Segment, pos: int) -> None:
        if j != frame.idx:
            self._check_missing(frame, j)
            frame.idx, frame.count = j, 0
        child = frame.group.children[j]
        frame.count += 1
        if isinstance(child, GroupDef):
            if frame.count > child.max:
                self._error(seg, pos, child.name, f"segment group {child.name} occurs more than "
                            f"{child.max} times", SE_TOO_MANY_GROUP_REPETITIONS)
            self.out.append(f"<G_{child.name}>")
            inner = _Frame(child)
            inner.count = 1
            self.stack.append(inner)
        elif frame.count > child.max:
            self._error(seg, pos, seg.tag, f"segment {seg.tag} occurs more than {child.max} "
                        f"times in {frame.group.name}", SE_TOO_MANY_REPETITIONS)
        self.writer.write(seg, pos, self.out)

    def _close(self) -> None:
        frame = self.stack.pop()
        self._check_missing(frame, len(frame.group.children))
        self.out.append(f"</G_{frame.group.name}>")

    def _check_missing(self, frame: _Frame, upto: int) -> None:
        start = frame.idx if frame.count == 0 else frame.idx + 1
        for child in frame.group.children[start:upto]:
            if child.mandatory:
                what = (f"segment {child.tag}" if isinstance(child, SegmentRef)
                        else f"segment group {child.name} ({child.trigger})")
                seg, pos = self.last_seg, self.last_pos
                self._error(seg, pos, child.tag if isinstance(child, SegmentRef) else child.name,
                            f"mandatory {what} is missing in {frame.group.name}", SE_MISSING)

    def _error(self, seg: Segment | None, pos: int, rule: str, text: str, code: int) -> None:
        place = Place(segment=pos or None, tag=seg.tag if seg else None,
                      message=self.writer.message,
                      interchange_segment=seg.index if seg else None)
        self.errors.append(MigError(ErrorClass.STRUCTURE, f"{self.p.rule_prefix}:{rule}", text,
                                    place, code))


def _find(frame: _Frame, tag: str) -> int | None:
    """The child of the frame's group that ``tag`` continues, searching forward only.

    A segment already at its maximum is passed over if the tag also fits a later child (the
    same tag may stand at two positions of a group, e.g. DTM); otherwise it is taken and
    the walk reports too many repetitions, unless it is the group's first segment: that
    starts a new repetition of the group, which the enclosing frame decides.
    """
    group, idx = frame.group, frame.idx
    try:
        j = group.triggers.index(tag, idx)
    except ValueError:
        return None
    child = group.children[j]
    if j == idx and frame.count >= child.max and isinstance(child, SegmentRef):
        try:
            return group.triggers.index(tag, idx + 1)
        except ValueError:
            return None if idx == 0 else j
    return j
