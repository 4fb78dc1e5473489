"""The converter after an error: every independent defect once, knock-ons suppressed, the
list capped (issue 11). Whole interchanges through ``validate``, as the transport runs it.

What "never repeats a knock-on" means here, as the property tests assert it:

* no two findings listed have the same class, rule, syntax code, text and message (a
  repeated defect is one finding with ``repeats`` and its first places);
* a segment that fits nowhere in the segment table does not move the structure walk, so
  each break in the order of segments gives at most one "not allowed here" finding: their
  number never exceeds the number of mutations applied;
* layout (line breaks, indentation) between segments adds no finding at all;
* the list never holds more than ``MAX_FINDINGS``, a LIMIT finding only as the last, and
  the control message written from it stays under 1 MB.
"""

from __future__ import annotations

import random

import pytest

from singlewindow.mig import contrl
from singlewindow.mig.errors import (
    MAX_FINDINGS,
    MAX_TEXT,
    SE_NOT_SUPPORTED_HERE,
    ErrorClass,
    MigError,
)
from singlewindow.mig.loader import Registry
from singlewindow.mig.validate import Result, validate
from singlewindow.notices import control
from tests.support.factory import interchange, mutate, paxlst_message, with_unt

MB = 1024 * 1024


def errors_of(reg: Registry, segs: list[str], **kw: str) -> list[MigError]:
    return list(validate(interchange([segs], **kw), None, reg).errors)


def message(persons: int = 3) -> list[str]:
    return paxlst_message("M0", persons)


def test_an_unknown_segment_is_one_finding(reg: Registry) -> None:
    msg = message()
    msg.insert(12, "ZZZ+1'")  # inside the first person's group
    errors = errors_of(reg, with_unt(msg))
    assert [(e.syntax_code, e.place.segment, e.place.tag) for e in errors] == [
        (SE_NOT_SUPPORTED_HERE, 13, "ZZZ")]


def test_a_misplaced_segment_does_not_put_the_rest_out_of_place(reg: Registry) -> None:
    msg = message(5)
    msg.insert(3, "ATT+2++F'")  # a person's ATT before any person
    errors = errors_of(reg, with_unt(msg))
    assert len(errors) == 1 and errors[0].place.segment == 4 and "ATT" in errors[0].text


def test_segments_lost_after_a_premature_one_are_one_finding(reg: Registry) -> None:
    msg = message(5)
    msg.insert(9, "CNT+42:5'")  # the control total before the persons
    errors = errors_of(reg, with_unt(msg))
    lost = [e for e in errors if e.syntax_code == SE_NOT_SUPPORTED_HERE]
    assert len(lost) == 1 and lost[0].place.segment == 11
    assert "nor do the 49 segments after it" in lost[0].text


def test_a_bad_byte_in_every_person_is_one_finding(reg: Registry) -> None:
    segs = [s.replace("JOHN", "JöHN") for s in message(500)]
    result = validate(interchange([segs], syntax="UNOA:4"), None, reg)
    assert [e.cls for e in result.errors] == [ErrorClass.REPERTOIRE]
    e = result.errors[0]
    assert e.repeats == 499 and e.place.interchange_segment == 11
    assert "(and 499 more in interchange segments 21, 31, 41, 51, 61, ...)" in e.text


def test_independent_errors_are_all_reported(reg: Registry) -> None:
    msg = message(3)
    msg[1] = "BGM+745++99'"            # code list
    msg.insert(5, "QTY+1:1'")          # structure
    msg[14] = "NAT+2+NLDX'"            # format
    segs = with_unt(msg)
    segs[-1] = segs[-1].replace("M0'", "MX'")  # envelope: UNT reference
    classes = sorted(e.cls.value for e in errors_of(reg, segs))
    assert classes == ["CODELIST", "COUNT", "FORMAT", "STRUCTURE"]


def test_more_findings_than_the_cap(reg: Registry) -> None:
    msgs = [[s.replace("M0", f"M{n}") for s in with_unt(paxlst_message("M0", 1))]
            for n in range(MAX_FINDINGS + 50)]
    for n, m in enumerate(msgs):
        m[5] = f"LOC+125+{'Y' * 36}{n}'"  # too long, a different value each: not merged
    result = validate(interchange(msgs), None, reg)
    assert len(result.errors) == MAX_FINDINGS
    assert result.errors[-1].cls is ErrorClass.LIMIT
    assert "51 more findings not listed" in result.errors[-1].text
    assert_small_control_message(result)


def assert_small_control_message(result: Result) -> None:
    text = control.control_text(result, "<x@example>")
    frm = control.frm_xml(result, "<x@example>")
    edifact = contrl.contrl(result) or b""
    assert len(text.encode()) + len(frm) + len(edifact) < MB


def test_hostile_input_keeps_the_control_message_small(reg: Registry) -> None:
    # 1 MB of distinct long bad values, each quoted in its finding.
    msgs = []
    for n in range(300):
        m = with_unt(paxlst_message("M0", 1))
        m = [s.replace("M0", f"M{n}") for s in m]
        m[3] = f"COM+{n}{'9' * 3000}:TE'"
        msgs.append(m)
    result = validate(interchange(msgs), None, reg)
    assert len(result.errors) == MAX_FINDINGS
    assert all(len(e.text) <= MAX_TEXT for e in result.errors)
    assert_small_control_message(result)


def _key(e: MigError) -> tuple[object, ...]:
    return (e.cls, e.rule, e.syntax_code, e.text.split(" (and ")[0], e.place.message)


def _check_properties(errors: tuple[MigError, ...], ops: int) -> None:
    assert len(errors) <= MAX_FINDINGS
    assert all(e.cls is not ErrorClass.LIMIT for e in errors[:-1])
    keys = [_key(e) for e in errors]
    assert len(keys) == len(set(keys)), errors
    lost = [e for e in errors if e.cls is ErrorClass.STRUCTURE
            and e.syntax_code == SE_NOT_SUPPORTED_HERE]
    assert len(lost) <= ops, lost
    assert all(len(e.text) <= MAX_TEXT for e in errors)


@pytest.mark.parametrize("seed", range(6))
def test_mutated_interchanges_never_repeat_a_knock_on(reg: Registry, seed: int) -> None:
    rnd = random.Random(1000 + seed)
    bases = [paxlst_message("M0", 4), paxlst_message("M0", 3, "05B")]
    broken = 0
    for _ in range(60):
        base = rnd.choice(bases)
        ops = 0
        segs = base[1:-1]
        for _ in range(rnd.randint(1, 3)):
            segs = mutate(rnd, segs)
            ops += 3  # mutate applies at most three changes
        segs = [base[0], *segs, base[-1]]
        if rnd.random() < 0.3:  # the same bad byte in every name: one finding
            segs = [s.replace("DOE", "DÖE") for s in segs]
        data = interchange([segs], syntax="UNOA:4", sep=rnd.choice(["", "\n", "\r\n"]))
        result = validate(data, None, reg)
        _check_properties(result.errors, ops)
        laid_out = interchange([segs], syntax="UNOA:4", sep=rnd.choice([" ", "\r\n  ", "\t"]))
        assert validate(laid_out, None, reg).errors == result.errors
        broken += bool(result.errors)
    assert broken > 40  # the mutations do reach the error paths


@pytest.mark.parametrize("seed", range(3))
def test_heavily_mutated_interchanges_stay_within_the_cap(reg: Registry, seed: int) -> None:
    rnd = random.Random(2000 + seed)
    msgs = []
    for n in range(40):
        segs = paxlst_message(f"M{n}", 20)
        segs = [segs[0], *mutate(rnd, mutate(rnd, mutate(rnd, segs[1:-1]))), segs[-1]]
        msgs.append(segs)
    result = validate(interchange(msgs), None, reg)
    _check_properties(result.errors, 40 * 9)
    assert_small_control_message(result)
