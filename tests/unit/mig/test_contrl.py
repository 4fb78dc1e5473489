"""The UN/EDIFACT CONTRL message answering an interchange with syntax errors."""

from __future__ import annotations

import re

from singlewindow.mig.contrl import contrl
from singlewindow.mig.edifact.syntax import Segment, chunked, iter_segments
from singlewindow.mig.errors import ErrorClass, MigError, Place
from singlewindow.mig.loader import Registry
from singlewindow.mig.validate import Interchange, Result, validate
from tests.support.factory import (
    HEADER_V4,
    broken,
    interchange,
    paxlst,
    paxlst_message,
)


def test_contrl_for_syntax_errors(reg: Registry) -> None:
    result = validate(broken("format"), None, reg)
    text = contrl(result, now=0)
    assert text is not None
    segs = list(iter_segments(chunked(text), []))
    tags = [s.tag for s in segs]
    assert tags == ["UNB", "UNH", "UCI", "UCM", "UCS", "UCD", "UNT", "UNZ"]
    assert segs[1].value(2) == "CONTRL" and segs[1].value(2, 2) == "4"
    assert segs[2].value(1) == "REF1" and segs[2].value(4) == "4"  # interchange rejected
    assert segs[3].value(1) == "M0" and segs[3].value(3) == "4"  # message rejected
    assert segs[4].value(1) == "2"  # BGM is segment 2
    assert segs[5].value(1) == "39" and segs[5].value(2) == "2"  # too long, element 2
    assert segs[6].value(1) == str(len(segs) - 2)  # UNT counts UNH..UNT
    assert segs[0].value(3) == "SENDER"  # goes back to the submitter


def test_contrl_also_for_count_errors_and_not_for_rules(reg: Registry) -> None:
    count = contrl(validate(broken("count"), None, reg))
    # UNZ's message count (its element 1) is wrong: an interchange-level error, in UCI.
    assert count is not None and b"UCI+REF1+SENDER:ZZZ+NLSW:ZZZ+4+29+UNZ+1'" in count
    assert b"UCM" not in count  # its one message has no error of its own
    assert contrl(validate(broken("rule"), None, reg)) is None


def test_valid_paxlst_has_no_contrl(reg: Registry) -> None:
    assert contrl(validate(paxlst(1), None, reg)) is None


# --- CONTRL per ISO 9735-4 (syntax and service report message) --------------------------

# The segment table of CONTRL (ISO 9735-4): UNH, UCI, then segment group 1 (UCM, and per
# segment in error segment group 2: UCS, UCD 0-99) or segment group 3 (UCF, and below it
# segment group 4: UCM with segment group 5 as group 2), UNT; inside UNB ... UNZ.
CONTRL_TABLE = re.compile(r"UNB UNH UCI( UCM( UCS( UCD)*)*)*( UCF( UCM( UCS( UCD)*)*)*)* UNT UNZ")


def contrl_segments(payload: bytes, reg: Registry) -> list[Segment]:
    text = contrl(validate(payload, None, reg), now=0)
    assert text is not None
    segs = list(iter_segments(chunked(text), []))
    assert CONTRL_TABLE.fullmatch(" ".join(s.tag for s in segs)), [s.tag for s in segs]
    unt = segs[-2]
    assert unt.value(1) == str(len(segs) - 2)  # UNT counts UNH ... UNT
    return segs


def short(segs: list[Segment]) -> list[str]:
    """Each segment between UNH and UNT as text, separators as sent."""
    return [s.text for s in segs[2:-2]]


def three_messages() -> bytes:
    msgs = [paxlst_message(f"M{n}", 2, start=2 * n) for n in range(3)]
    # M0: two elements of BGM wrong (one UCS, two UCDs), and a segment out of place.
    msgs[0][1] = "BGM+745+" + "X" * 40 + "+99'"
    msgs[0].insert(9, "QTY+1:1'")
    msgs[0][-1] = f"UNT+{len(msgs[0])}+M0'"
    # M1 is fine; M2's trailer miscounts (its own service segment: UCM, not UCS).
    msgs[2][-1] = "UNT+99+M2'"
    return interchange(msgs)


def test_contrl_reports_each_error_at_its_level(reg: Registry) -> None:
    segs = contrl_segments(three_messages(), reg)
    assert short(segs) == [
        "UCI+REF1+SENDER:ZZZ+NLSW:ZZZ+4",  # rejected, for errors below it
        "UCM+M0+PAXLST:D:03B:UN+4",
        "UCS+2",  # BGM: one UCS for its two data elements in error
        "UCD+39+2:1",  # too long: element 2, component 1 (C106 1004)
        "UCD+12+3",  # invalid value: element 3 (1225)
        "UCS+10+15",  # QTY: the segment itself is not supported in this position
        "UCM+M2+PAXLST:D:03B:UN+4+29+UNT+1",  # control count of UNT, element 1
    ]
    assert "M1" not in " ".join(short(segs))  # no error: rejected with the interchange


def test_contrl_with_functional_groups_answers_each_group(reg: Registry) -> None:
    groups = [[paxlst_message(f"M{n}", 1, start=n) for n in range(2)],
              [paxlst_message("M2", 1, start=5)]]
    groups[1][0][1] = "BGM+745++99'"
    segs = ["UNB+UNOA:4+SENDER:ZZZ+NLSW:ZZZ+240101:1200+REF1'"]
    for g, messages in enumerate(groups, 1):
        segs.append(f"UNG+PAXLST+APP{g}:ZZZ+AGENCY:ZZZ+240101:1200+G{g}+UN+D:03B'")
        for m in messages:
            segs += m
        segs.append(f"UNE+{len(messages) if g == 1 else 3}+G{g}'")
    segs.append("UNZ+2+REF1'")
    payload = (HEADER_V4 + "\n" + "\n".join(segs) + "\n").encode("latin-1")
    assert short(contrl_segments(payload, reg)) == [
        "UCI+REF1+SENDER:ZZZ+NLSW:ZZZ+4",
        "UCF+G2+APP2:ZZZ+AGENCY:ZZZ+4+29+UNE+1",  # the group's own trailer miscounts
        "UCM+M2+PAXLST:D:03B:UN+4",  # its message, inside the group's response
        "UCS+2",
        "UCD+12+3",
    ]


def test_contrl_in_syntax_3_for_a_syntax_3_interchange(reg: Registry) -> None:
    payload = interchange([paxlst_message("M0", 1)], syntax="UNOA:3", una="UNA:+.? '")
    segs = contrl_segments(payload.replace(b"UNZ+1+", b"UNZ+2+"), reg)
    assert segs[0].value(1, 2) == "3" and segs[0].value(4, 1) == "700101"  # YYMMDD
    assert segs[1].value(2) == "CONTRL" and segs[1].value(2, 2) == "D"
    assert short(segs) == ["UCI+REF1+SENDER:ZZZ+NLSW:ZZZ+4+29+UNZ+1"]
    four = contrl_segments(broken("count"), reg)
    assert four[0].value(4, 1) == "19700101"  # syntax 4: CCYYMMDD (ISO 9735-2 S004)
    assert four[0].value(2) == "NLSW" and four[0].value(3) == "SENDER"  # back to the sender


def test_contrl_names_an_unknown_message_type_in_its_ucm(reg: Registry) -> None:
    msg = paxlst_message("M0", 1)
    msg[0] = "UNH+M0+PAXLST:D:99Z:UN'"
    assert short(contrl_segments(interchange([msg]), reg)) == [
        "UCI+REF1+SENDER:ZZZ+NLSW:ZZZ+4", "UCM+M0+PAXLST:D:99Z:UN+4+12+UNH+2"]


def test_contrl_echoes_identifiers_cut_to_their_lengths(reg: Registry) -> None:
    long = "S" * 5000
    info = Interchange("UNOA", 4, (long, "Z" * 50), ("NLSW", "ZZZ"), "R" * 200,
                       (("M" * 300, "PAXLST:D:03B:UN"),))
    errors = (MigError(ErrorClass.FORMAT, "x", "y" * 10_000, Place(segment=2, tag="BGM",
                                                                   element=1, message="M" * 300),
                       39),)
    text = contrl(Result("PAXLST-D03B", "edifact", errors, None, info), now=0)
    assert text is not None and len(text) < 400
    segs = list(iter_segments(chunked(text), []))
    uci = next(s for s in segs if s.tag == "UCI")
    assert uci.value(1) == "R" * 14 and uci.value(2, 1) == "S" * 35 and uci.value(2, 2) == "ZZZZ"
    assert next(s for s in segs if s.tag == "UCM").value(1) == "M" * 14


def test_contrl_reports_a_repeated_finding_at_each_segment_it_names(reg: Registry) -> None:
    # The same too-long nationality for three persons: one finding with its repeats, and
    # in the CONTRL one UCS for each of the three segments in error.
    msg = [s.replace("NAT+2+NLD'", "NAT+2+NLDX'") for s in paxlst_message("M0", 3)]
    result = validate(interchange([msg]), None, reg)
    assert len(result.errors) == 1 and result.errors[0].repeats == 2
    assert short(contrl_segments(interchange([msg]), reg)) == [
        "UCI+REF1+SENDER:ZZZ+NLSW:ZZZ+4", "UCM+M0+PAXLST:D:03B:UN+4",
        "UCS+15", "UCD+39+2:1", "UCS+25", "UCD+39+2:1", "UCS+35", "UCD+39+2:1"]


def test_contrl_for_a_message_without_unt(reg: Registry) -> None:
    first, second = paxlst_message("M0", 1), paxlst_message("M1", 1, start=1)
    segs = contrl_segments(interchange([first[:-1], second]), reg)
    # Missing (13) at the message's level; it was noticed at M1's UNH, which is not in error.
    assert "UCM+M0+PAXLST:D:03B:UN+4+13" in short(segs)
    assert not any(s.startswith("UCM+M1") for s in short(segs))

