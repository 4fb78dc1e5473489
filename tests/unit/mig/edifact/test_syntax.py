from __future__ import annotations

from pathlib import Path

import pytest

from singlewindow.mig.edifact.syntax import (
    DEFAULT_V4,
    Delimiters,
    chunked,
    escape,
    format_segment,
    iter_segments,
    parse_segment,
)
from singlewindow.mig.errors import ErrorClass, MigError


def segs(data: bytes, size: int = 1 << 16) -> tuple[list[tuple[str, object]], list[MigError]]:
    errors: list[MigError] = []
    out = [(s.tag, s.elements) for s in iter_segments(chunked(data, size), errors)]
    return out, errors


def test_default_separators_syntax4_split_repetitions() -> None:
    out, errors = segs(b"UNB+UNOA:4+A+B+240101:1200+1'ATT+2++M*F'UNZ+0+1'")
    assert errors == []
    assert out[1] == ("ATT", [[["2"]], [[""]], [["M"], ["F"]]])


def test_syntax3_has_no_repetition_separator() -> None:
    out, _ = segs(b"UNB+UNOA:3+A+B+240101:1200+1'FTX+AAA+++A*B'UNZ+0+1'")
    assert out[1][1][3] == [["A*B"]]


def test_una_with_unusual_service_characters() -> None:
    data = b"UNA|^,!~#\r\nUNB^UNOC|4^A^B^240101|1200^1#\r\nFTX^AAA^^^X!^Y!#Z~W|V#UNZ^0^1#"
    out, errors = segs(data)
    assert errors == []
    assert out[1] == ("FTX", [[["AAA"]], [[""]], [[""]], [["X^Y#Z"], ["W", "V"]]])


def test_release_character_escapes_every_service_character() -> None:
    seg = parse_segment("NAD+VW+A?+B?:C??D?'E", DEFAULT_V4, 1)
    assert seg.elements == [[["VW"]], [["A+B:C?D'E"]]]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_chunk_boundaries_do_not_change_segments(size: int) -> None:
    data = b"UNA:+.?*'UNB+UNOA:4+A+B+240101:1200+1'FTX+AAA+++A?'B?+C*D'UNZ+0+1'"
    assert segs(data, size) == segs(data)


def test_escape_and_format_round_trip() -> None:
    value = "HILL'S ROAD+1:2?3*4"
    text = format_segment("FTX", [[["AAA"]], [[""]], [[""]], [[value]]], DEFAULT_V4)
    assert parse_segment(text[:-1], DEFAULT_V4, 1).elements[3] == [[value]]
    assert escape("A+B", DEFAULT_V4) == "A?+B"


def test_trailing_empty_positions_are_suppressed() -> None:
    assert format_segment("DTM", [[["137", "", ""]], [[""]]], DEFAULT_V4) == "DTM+137'"


@pytest.mark.parametrize(("syntax", "text", "bad"), [
    ("UNOA:4", "FTX+AAA+++lower case'", "l"),
    ("UNOB:4", "FTX+AAA+++caf\xe9'", "\xe9"),
    ("UNOC:4", "FTX+AAA+++tab\there'", "\t"),
])
def test_repertoire_is_enforced(syntax: str, text: str, bad: str) -> None:
    data = f"UNB+{syntax}+A+B+240101:1200+1'{text}UNZ+0+1'".encode("latin-1")
    _, errors = segs(data)
    assert [e.cls for e in errors] == [ErrorClass.REPERTOIRE]
    assert repr(bad) in errors[0].text and errors[0].syntax_code == 21


def test_unoc_accepts_latin1_and_unoy_accepts_utf8() -> None:
    for syntax, text in (("UNOC", "Müller"), ("UNOY", "Müller Ωμέγα 東京")):
        enc = "latin-1" if syntax == "UNOC" else "utf-8"
        data = f"UNB+{syntax}:4+A+B+240101:1200+1'FTX+AAA+++{text}'UNZ+0+1'".encode(enc)
        out, errors = segs(data, 3)
        assert errors == [] and out[1][1][3] == [[text]]


def test_unoy_rejects_bytes_that_are_not_utf8() -> None:
    _, errors = segs(b"UNB+UNOY:4+A+B+240101:1200+1'FTX+AAA+++\xff\xfe'UNZ+0+1'")
    assert [e.cls for e in errors] == [ErrorClass.REPERTOIRE]


def test_unob_without_una_uses_information_separators() -> None:
    data = b"UNB\x1dUNOB\x1f4\x1dA\x1dB\x1d240101\x1f1200\x1d1\x1cUNZ\x1d0\x1d1\x1c"
    out, errors = segs(data)
    assert errors == [] and out[0][1][0] == [["UNOB", "4"]]


@pytest.mark.parametrize(("data", "code"), [
    (b"UNB+UNOZ:4+A+B+240101:1200+1'UNZ+0+1'", 2),
    (b"UNA:+.?*:UNB+UNOA:4+A'", 22),
    (b"XYZ+1'", 33),
])
def test_bad_headers_are_syntax_errors(data: bytes, code: int) -> None:
    _, errors = segs(data)
    assert errors and errors[0].cls is ErrorClass.SYNTAX and errors[0].syntax_code == code


def test_missing_final_terminator_is_reported() -> None:
    _, errors = segs(b"UNB+UNOA:4+A+B+240101:1200+1'UNZ+0+1")
    assert "not terminated" in errors[-1].text


def test_delimiters_una_text() -> None:
    assert Delimiters().una() == "UNA:+.?*'"


# --- layout between segments (issue 11) ------------------------------------------------

_BODY = ["UNB+UNOA:4+A+B+240101:1200+1'", "UNH+1+PAXLST:D:03B:UN'", "BGM+745'",
         "UNT+3+1'", "UNZ+1+1'"]


@pytest.mark.parametrize("layout", ["\n", "\r\n", "\r", " ", "\t", "\n    ", "\r\n\t\t",
                                    " \r\n ", "\n\n\n"],
                         ids=["LF", "CRLF", "CR", "space", "tab", "indented", "CRLF-tabs",
                              "spaces-around-CRLF", "blank-lines"])
@pytest.mark.parametrize("una", [True, False], ids=["UNA", "no-UNA"])
def test_layout_between_segments_is_not_data(layout: str, una: bool) -> None:
    text = ("UNA:+.?*'" + layout if una else layout) + layout.join(_BODY) + layout
    for size in (1, 5, 1 << 16):
        out, errors = segs(text.encode(), size)
        assert errors == []
        assert [tag for tag, _ in out] == ["UNB", "UNH", "BGM", "UNT", "UNZ"]
        assert out[2][1] == [[["745"]]]  # nothing of the layout in the values


def test_layout_inside_a_segment_is_data() -> None:
    # A space before the terminator belongs to the value; in UNOA a line break is no
    # character of the repertoire, and that is one finding at its segment.
    out, errors = segs(b"UNB+UNOA:4+A+B+240101:1200+1'\nFTX+AAA+++A B '\nFTX+AAA+++A\nB'"
                       b"\nUNZ+0+1'")
    assert out[1][1][3] == [["A B "]]
    assert [(e.cls, e.place.interchange_segment) for e in errors] == [
        (ErrorClass.REPERTOIRE, 3)]


def test_una_then_line_breaks_is_read_as_una() -> None:
    data = b"\xef\xbb\xbf\r\n  UNA:+.? '\r\n\r\n  UNB+UNOC:3+A+B+240101:1200+1'\r\n  UNZ+0+1'\r\n"
    out, errors = segs(data)
    assert errors == [] and [t for t, _ in out] == ["UNB", "UNZ"]


def test_what_is_not_a_segment_is_one_finding_at_its_place() -> None:
    out, errors = segs(b"UNB+UNOA:4+A+B+240101:1200+1'\nBGM+745'\n-- comment --'\nDTM+1'"
                       b"'UNZ+0+1'")
    assert [(e.place.interchange_segment, e.syntax_code) for e in errors] == [(3, 18),
                                                                             (4, 18)]
    assert "'-- comment --' after segment BGM is not a segment" in errors[0].text
    assert "empty segment" in errors[1].text and "after segment DTM" in errors[1].text
    # the junk keeps its place in the count; the empty segment is none
    assert [t for t, _ in out] == ["UNB", "BGM", "-- ", "DTM", "UNZ"]


def test_a_wrong_start_is_named_truly() -> None:
    _, errors = segs(b"UNA:+.? '\nHELLO'")
    assert len(errors) == 1
    assert errors[0].text == "the interchange must begin with UNB; what stands after UNA " \
                             "is \"HELLO'\""


def test_an_overlong_segment_is_one_finding_and_keeps_its_place() -> None:
    long_value = "?'" * 120_000  # released terminators: the segment goes on
    data = (f"UNB+UNOA:4+A+B+240101:1200+1'FTX+AAA+++{long_value}'BGM+745'UNZ+0+1'"
            ).encode()
    for size in (4096, 1 << 16):
        out, errors = segs(data, size)
        assert len(errors) == 1 and "not read" in errors[0].text, errors
        assert [t for t, _ in out] == ["UNB", "FTX", "BGM", "UNZ"]


def test_many_released_terminators_split_right() -> None:
    value = "?'" * 30_000 + "??"
    out, errors = segs(f"UNB+UNOA:4+A+B+240101:1200+1'FTX+AAA+++{value}'UNZ+0+1'".encode(),
                       1000)
    assert errors == [] and out[1][1][3] == [["'" * 30_000 + "?"]]


@pytest.mark.parametrize("name", ["aperak-d96a-pydifact-rejected.edi",
                                  "orders-d96a-pydifact-wikipedia_de.edi"])
def test_public_samples_with_line_breaks_have_no_layout_findings(public: Path,
                                                                 name: str) -> None:
    out, errors = segs((public / name).read_bytes())
    assert out[0][0] == "UNB" and out[-1][0] == "UNZ" and len(out) in (9, 11)
    # The APERAK sample is UNOA with lower-case text in FTX: a repertoire finding there and
    # nowhere else (SOURCES.md: its defect is the UNT count, which the envelope checks).
    assert all(e.cls is ErrorClass.REPERTOIRE and e.place.tag == "FTX" for e in errors)
    assert len(errors) == (1 if name.startswith("aperak") else 0)
