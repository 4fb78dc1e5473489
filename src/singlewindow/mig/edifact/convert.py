"""An EDIFACT interchange to XML, checking as it goes.

Where it sits in the mail flow: the driver of EDIFACT validation. It runs the tokenizer and
the envelope walk, looks up each message's MIG type from UNH (S009), hands the message to
its :class:`~singlewindow.mig.edifact.message.MessageChecker`, and passes the XML on to a
sink one message at a time. The transport's ``validate`` collects the pieces; the streaming
converter writes them out, which is what keeps a 20 MB interchange at flat memory.

After an error it reads on, so one result names every independent defect: the findings
go to a :class:`~singlewindow.mig.errors.Findings` list, which keeps each once, and the
reading stops only when that list is full (:data:`~singlewindow.mig.errors.MAX_APPENDS`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from singlewindow.mig.edifact.envelope import HANDLERS, Event, Kind, Walk
from singlewindow.mig.edifact.message import (
    EdifactProfile,
    MessageChecker,
    SegmentWriter,
    compiled,
)
from singlewindow.mig.edifact.syntax import Header, Segment, iter_batches
from singlewindow.mig.errors import SE_INVALID_VALUE, ErrorClass, Findings, MigError, Place
from singlewindow.mig.model import SegmentDef

MessageKey = tuple[str, str, str, str]  # UNH S009: 0065 type, 0052 version, 0054 release, 0051


@dataclass(slots=True)
class Summary:
    """What the interchange said about itself, for the CONTRL message and the log."""

    header: Header | None = None
    unb: Segment | None = None
    profile: EdifactProfile | None = None
    namespace: str | None = None
    messages: list[tuple[str, str]] = field(default_factory=list)  # (0062 ref, "TYPE:D:03B:UN")
    groups: list[str] = field(default_factory=list)
    #: per functional group: its UNG, and the interchange position of its UNE (if any)
    group_headers: list[Segment] = field(default_factory=list)
    group_ends: list[int | None] = field(default_factory=list)
    #: per message: the index in ``groups`` of its functional group (None: outside any)
    message_groups: list[int | None] = field(default_factory=list)


class Converter:
    """Drives one interchange; XML text goes to ``sink`` (envelope pieces and messages)."""

    def __init__(self, lookup: Callable[[MessageKey], tuple[EdifactProfile, str] | None],
                 service: Mapping[str, SegmentDef], errors: Findings,
                 sink: Callable[[str], None], accelerate: bool = True, *,
                 supported: str = "") -> None:
        self.lookup = lookup
        #: the message types and releases the MIG has, named when one is refused
        #: (:attr:`singlewindow.mig.loader.Registry.supported`)
        self.supported = supported
        #: use the C fast path where it is built (``False``: Python only, for comparisons)
        self.accelerate = accelerate
        self.errors = errors
        self.sink = sink
        self.service = SegmentWriter(service, {}, "ISO9735", errors)
        self.summary = Summary()
        self.pending: list[str] = []  # envelope XML written before the namespace is known
        self.checker: MessageChecker | None = None
        self.writer: SegmentWriter | None = None
        self.caches: dict[str, dict[str, str]] = {}
        self.group: int | None = None  # the functional group open now, by index

    def run(self, chunks: Iterable[bytes]) -> Summary:
        errors = self.errors
        state = Walk(errors)
        for d, batch in iter_batches(chunks, errors):
            if isinstance(batch, list):  # the tokenizer's exact path: Segment objects
                for seg in batch:
                    if self.step(state, seg):
                        return self.summary
                continue
            texts, start = batch
            i, n = 0, len(texts)
            while i < n:
                checker = self.checker
                if (checker is not None and checker.compiled is not None
                        and checker.lost is None and state.unh is not None
                        and not state.closed):
                    # Runs of plain segments inside a message: the C fast path.
                    j, stepped = checker.run(texts, i, d)
                    if j > i:
                        state.position += j - i
                        checker.last_seg = Segment(texts[j - 1], d, start + j - 1)
                        checker.last_pos = state.position
                    i = j
                    if stepped:  # structure step taken; the segment's checks are left
                        state.position += 1
                        seg = Segment(texts[i], d, start + i)
                        checker.last_seg, checker.last_pos = seg, state.position
                        checker.writer.write(seg, state.position, checker.out)
                        if errors.full:
                            return self.stop(seg)
                        i += 1
                        continue
                    if i == n:
                        break
                if self.step(state, Segment(texts[i], d, start + i)):
                    return self.summary
                i += 1
        for event in state.end():
            self.on_event(event)
            if errors.full:
                break
        return self.summary

    def stop(self, seg: Segment) -> Summary:
        """Too many findings to read on: the list says where the check stopped."""
        self.errors.stop(f"at interchange segment {seg.index} ({seg.tag})")
        return self.summary

    def step(self, state: Walk, seg: Segment) -> bool:
        """One segment the Python way; ``True`` when there are too many errors to go on."""
        checker = self.checker
        if seg.junk:
            # Not a segment (the tokenizer said so): inside a message it keeps its place
            # in the count UNT checks, and nothing else looks at it.
            if state.unh is not None and not state.closed:
                state.position += 1
            return False
        if (checker is not None and state.unh is not None and not state.closed
                and seg.tag not in HANDLERS):
            # The common case, a segment inside a message, straight to its checker.
            state.position += 1
            checker.segment(seg, state.position)
        else:
            for event in state.feed(seg):
                self.on_event(event)
                if self.errors.full:
                    break
        if self.errors.full:
            self.stop(seg)
            return True
        return False

    def on_event(self, ev: Event) -> None:
        seg = ev.segment
        if ev.kind is Kind.SEGMENT:
            if self.checker is not None and seg is not None:
                self.checker.segment(seg, ev.position)
        elif ev.kind is Kind.MESSAGE and seg is not None:
            self.begin_message(seg)
        elif ev.kind is Kind.END_MESSAGE:
            self.end_message(seg, ev.position)
        else:
            self.envelope(ev.kind, seg)

    def envelope(self, kind: Kind, seg: Segment | None) -> None:
        out: list[str] = []
        if kind is Kind.INTERCHANGE and seg is not None:
            self.summary.unb = seg
        if kind is Kind.GROUP and seg is not None:
            self.group = len(self.summary.groups)
            self.summary.groups.append(seg.value(5))
            self.summary.group_headers.append(seg)
            self.summary.group_ends.append(None)
            out.append("<G_UNG>")
        if kind is Kind.END_GROUP:
            if seg is not None and self.group is not None:
                self.summary.group_ends[self.group] = seg.index
            self.group = None
        if seg is not None:
            self.service.message = None
            self.service.write(seg, None, out)
        if kind is Kind.END_GROUP:
            out.append("</G_UNG>")
        if kind is Kind.END_INTERCHANGE:
            out.append("</Interchange>")
        self.emit("".join(out))

    def emit(self, text: str) -> None:
        if self.summary.namespace is None:
            self.pending.append(text)
        else:
            self.sink(text)

    def begin_message(self, unh: Segment) -> None:
        ref = unh.value(1)
        key = (unh.value(2, 1), unh.value(2, 2), unh.value(2, 3), unh.value(2, 4))
        self.summary.messages.append((ref, ":".join(key)))
        self.summary.message_groups.append(self.group)
        found = self.lookup(key)
        if found is None:
            self.unknown(unh, ref, key)
            return
        profile, namespace = found
        if self.summary.profile is None:
            self.start_document(profile, namespace)
        elif self.summary.profile is not profile:
            self.errors.append(MigError(
                ErrorClass.TYPE, "SW-ONE-TYPE", f"message {ref} is {':'.join(key)}; an "
                f"interchange carries one message type ({self.summary.profile.name})",
                Place(segment=1, tag="UNH", message=ref, interchange_segment=unh.index),
                SE_INVALID_VALUE))
            return
        self.writer = SegmentWriter(profile.segments, profile.codes, profile.rule_prefix,
                                    self.errors, self.caches.setdefault(profile.name, {}))
        self.checker = MessageChecker(profile, self.writer, ref,
                                      compiled(profile) if self.accelerate else None)
        self.checker.segment(unh, 1)

    def unknown(self, unh: Segment, ref: str, key: MessageKey) -> None:
        # 0057 (association assigned code) is not part of the key: a type accepts the
        # codes its MIG lists there (the UNH check names any other).
        also = f"; supported: {self.supported}" if self.supported else ""
        self.errors.append(MigError(
            ErrorClass.TYPE, "SW-MIG-TYPE", f"{':'.join(key)} is not in the Single Window "
            f"MIG{also}", Place(segment=1, tag="UNH", element=2, message=ref,
                               interchange_segment=unh.index), SE_INVALID_VALUE))
        self.checker = None

    def start_document(self, profile: EdifactProfile, namespace: str) -> None:
        self.summary.profile = profile
        self.summary.namespace = namespace
        self.sink(f'<Interchange xmlns="{namespace}">')
        for text in self.pending:
            self.sink(text)
        self.pending.clear()

    def end_message(self, unt: Segment | None, position: int) -> None:
        checker, self.checker = self.checker, None
        if checker is None:
            return
        if unt is not None:
            checker.segment(unt, position)
        self.sink(checker.finish())
