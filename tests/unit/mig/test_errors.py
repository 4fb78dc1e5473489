"""The findings list: each defect once, a bounded number of them, bounded texts."""

from __future__ import annotations

from singlewindow.mig.errors import (
    MAX_FINDINGS,
    MAX_PLACE,
    MAX_TEXT,
    SHOWN_PLACES,
    ErrorClass,
    Findings,
    MigError,
    Place,
    count,
)


def bad_char(segment: int, message: str | None = "M1") -> MigError:
    return MigError(ErrorClass.REPERTOIRE, "ISO9735-UNOA", "character 'é' is not in "
                    "repertoire UNOA", Place(segment=segment, message=message), 21)


def test_a_repeated_finding_is_one_with_its_count_and_first_places() -> None:
    found = Findings(bad_char(s) for s in range(12, 12 + 3 * 500, 3))
    assert len(found) == 1 and found.appended == 500 and count(found) == 500
    only = found[0]
    assert only.place.segment == 12 and only.repeats == 499
    assert [p.segment for p in only.also] == [15, 18, 21, 24, 27][:SHOWN_PLACES]
    assert only.text == ("character 'é' is not in repertoire UNOA (and 499 more in segments "
                         "15, 18, 21, 24, 27, ...)")


def test_the_same_text_in_another_message_is_another_finding() -> None:
    found = Findings([bad_char(3, "M1"), bad_char(3, "M2"), bad_char(4, "M1")])
    assert [(e.place.message, e.repeats) for e in found] == [("M1", 1), ("M2", 0)]


def test_the_list_stops_at_the_cap_and_says_how_many_were_cut() -> None:
    found = Findings(MigError(ErrorClass.FORMAT, f"R{n}", f"value {n} is wrong")
                     for n in range(1000))
    assert len(found) == MAX_FINDINGS
    assert [e.rule for e in found[:-1]] == [f"R{n}" for n in range(MAX_FINDINGS - 1)]
    last = found[-1]
    assert last.cls is ErrorClass.LIMIT
    assert last.text.startswith(f"{1000 - MAX_FINDINGS + 1} more findings not listed")
    found.append(MigError(ErrorClass.FORMAT, "R3", "value 3 is wrong"))  # still merged
    assert found[3].repeats == 1 and len(found) == MAX_FINDINGS


def test_texts_and_places_are_bounded() -> None:
    huge = "A" * 100_000
    found = Findings([MigError(ErrorClass.XSD, "X", f"value {huge!r} is too long",
                               Place(xpath="/a" * 50_000, message=huge, tag=huge))])
    e = found[0]
    assert len(e.text) <= MAX_TEXT and e.text.endswith("is too long")
    assert max(len(str(v)) for v in (e.place.xpath, e.place.message, e.place.tag)) <= MAX_PLACE
    assert len(str(e)) < MAX_TEXT + 4 * MAX_PLACE


def test_xml_places_are_listed_by_xpath() -> None:
    found = Findings(MigError(ErrorClass.XSD, "X", "not expected",
                              Place(xpath=f"/*/*[{n}]", line=1)) for n in range(1, 4))
    assert found[0].text == "not expected (and 2 more at /*/*[2], /*/*[3])"


def test_stopping_is_said() -> None:
    found = Findings([bad_char(3)])
    found.stop("at interchange segment 9 (NAD)")
    assert found[-1].cls is ErrorClass.LIMIT and "stopped at interchange segment 9" in \
        found[-1].text
