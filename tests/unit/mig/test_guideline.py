"""PAXLST as carriers send it under the WCO/IATA/ICAO API guidelines (PAXLST implementation
guide): D:02B and D:05B with association code IATA, functional groups, the guideline's UNA,
other separators, and each way real passenger lists differ from the strict UN directory,
with the outcome the MIG gives it.

The samples are written here from the guideline's segment layouts (invented flights and
people), back to back and also laid out as real files are (a line per segment, CRLF or
LF or CR, groups indented).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from lxml import etree

from singlewindow.mig import loader
from singlewindow.mig.errors import ErrorClass
from singlewindow.mig.loader import Registry
from singlewindow.mig.model import DataError
from singlewindow.mig.validate import Result, validate
from tests.support.factory import interchange, paxlst_message

# A passenger list for one flight, D:02B, as the guideline lays it out: its UNA (repetition
# position reserved with a space), a functional group, UNH with association IATA, no DTM
# after TDT (the flight's times are with its airports), COM numbers as further data
# elements, dates of birth and expiry YYMMDD without a format code, a released apostrophe,
# CNT+42 with the flight's total (187) though this message lists two.
D02B_PASSENGERS = (
    "UNA:+.? '"
    "UNB+UNOA:4+ZZAIRAPI:ZZ+NLBORDERAPI:ZZ+240315:0930+000000042++APIS'"
    "UNG+PAXLST+ZZAIRAPI:ZZ+NLBORDERAPI:ZZ+240315:0930+42+UN+D:02B'"
    "UNH+PAX042+PAXLST:D:02B:UN:IATA'"
    "BGM+745'"
    "NAD+MS+++ZZ AIR API DESK'"
    "COM+703-555-1212:TE+703-555-4545:FX'"
    "TDT+20+ZZ641+++ZZ'"
    "LOC+125+JFK'"
    "DTM+189:2403151830:201'"
    "LOC+87+AMS'"
    "DTM+232:2403160745:201'"
    "NAD+FL+++VAN DER BERG:ANNA:MARIA+KEIZERSGRACHT 1+AMSTERDAM++1015CJ+NLD'"
    "ATT+2++F'"
    "DTM+329:670603'"
    "LOC+178+JFK'"
    "LOC+179+AMS'"
    "NAT+2+NLD'"
    "RFF+AVF:QX7K2P'"
    "DOC+P:110:111+NX1234567'"
    "DTM+36:291231'"
    "LOC+91+NLD'"
    "NAD+FL+++O?'BRIEN:SEAN'"
    "ATT+2++M'"
    "DTM+329:800229'"  # 29 February 1980
    "NAT+2+IRL'"
    "DOC+P:110:111+PA7654321'"
    "DTM+36:270115:101'"
    "LOC+91+IRL'"
    "CNT+42:187'"
    "UNT+28+PAX042'"
    "UNE+1+42'"
    "UNZ+1+000000042'"
)

# A crew list, D:05B, syntax 4 with other separators (UNOC): component ^, element |,
# decimal ",", release ?, repetition *, terminator ~; COM with the syntax-4 repetition
# the directory defines; a date of birth CCYYMMDD with format 102; CNT+41 crew total.
D05B_CREW = (
    "UNA^|,?*~"
    "UNB|UNOC^4|ZZAIRAPI^ZZ|NLBORDERAPI^ZZ|240315^0930|000000043~"
    "UNH|CRW001|PAXLST^D^05B^UN^IATA~"
    "BGM|250~"
    "NAD|MS|||ZZ AIR CREW CONTROL~"
    "COM|703-555-1212^TE*crew?^control@zzair.example^EM~"
    "TDT|20|ZZ641|||ZZ~"
    "LOC|125|JFK~"
    "DTM|189^2403151830^201~"
    "LOC|87|AMS~"
    "DTM|232^2403160745^201~"
    "NAD|FM|||JANSEN^PIETER~"
    "ATT|2||M~"
    "DTM|329^19720430^102~"
    "LOC|174|NLD~"
    "NAT|2|NLD~"
    "DOC|P^110^111|NY7777777~"
    "DTM|36^300430^101~"
    "LOC|91|NLD~"
    "CNT|41^12~"
    "UNT|19|CRW001~"
    "UNZ|1|000000043~"
)


def errors_of(result: Result) -> list[tuple[str, str]]:
    return [(e.cls.value, e.rule) for e in result.errors]


def xml_of(result: Result) -> etree._Element:
    assert result.xml is not None, result.errors
    return etree.fromstring(result.xml)


def ns(result: Result) -> dict[str, str]:
    return {"p": str(result.namespace)}


def test_d02b_passenger_list_as_the_guideline_writes_it(reg: Registry) -> None:
    result = validate(D02B_PASSENGERS.encode("latin-1"), "application/EDIFACT", reg)
    assert result.valid, result.errors
    assert result.message_type == "PAXLST-D02B"
    assert result.interchange is not None
    assert result.interchange.messages == (("PAX042", "PAXLST:D:02B:UN"),)
    root, p = xml_of(result), ns(result)
    msg = root.find("p:G_UNG/p:M_PAXLST", p)
    assert msg is not None
    assert msg.xpath("p:S_UNH/p:C_S009/p:D_0057/text()", namespaces=p) == ["IATA"]
    # Both numbers of the guideline's COM, one C_C076 each
    assert msg.xpath("p:G_SG1/p:S_COM/p:C_C076/p:D_3155/text()", namespaces=p) == ["TE", "FX"]
    persons = msg.findall("p:G_SG4", p)
    assert [g.xpath("string(p:S_NAD/p:C_C080/p:D_3036[1])", namespaces=p)
            for g in persons] == ["VAN DER BERG", "O'BRIEN"]
    assert persons[0].xpath("p:S_DTM/p:C_C507[p:D_2005='329']/p:D_2380/text()",
                            namespaces=p) == ["670603"]
    assert msg.xpath("p:S_CNT/p:C_C270/p:D_6066/text()", namespaces=p) == ["187"]


def laid_out(sample: str, terminator: str, newline: str) -> str:
    """``sample`` with a line break after every segment and the segments inside segment
    groups indented, as carriers' systems and people editing by hand write them."""
    # A released terminator (?' in the sample's names) ends no segment.
    segments = [s + terminator for s in re.split(rf"(?<!\?){re.escape(terminator)}", sample)
                if s]
    out = []
    for segment in segments:
        tag = segment[:3]
        indent = "" if tag in ("UNA", "UNB", "UNG", "UNH", "UNT", "UNE", "UNZ", "BGM") \
            else "    " if tag in ("ATT", "DTM", "LOC", "NAT", "RFF", "DOC", "COM") else "  "
        if tag == "UNA":  # UNA is 9 characters with its own terminator position
            out.append(sample[:9] + newline)
            rest = segment[9:]
            if rest:
                out.append(rest + newline)
            continue
        out.append(indent + segment + " \t" * (tag == "BGM") + newline)
    return "".join(out)


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize(("sample", "terminator", "ctype"), [
    (D02B_PASSENGERS, "'", "application/EDIFACT"), (D05B_CREW, "~", None)])
def test_line_breaks_and_indentation_are_not_data(reg: Registry, sample: str,
                                                   terminator: str, ctype: str | None,
                                                   newline: str) -> None:
    one_line = validate(sample.encode("latin-1"), ctype, reg)
    text = laid_out(sample, terminator, newline)
    assert text.count(newline) >= 20 and "\n    " in text.replace("\r", "\n")
    result = validate(text.encode("latin-1"), ctype, reg)
    assert result.valid, result.errors
    assert result.xml == one_line.xml


def test_d05b_crew_list_with_other_separators_and_repetition(reg: Registry) -> None:
    result = validate(D05B_CREW.encode("latin-1"), None, reg)
    assert result.valid, result.errors
    assert result.message_type == "PAXLST-D05B"
    root, p = xml_of(result), ns(result)
    assert root.xpath("//p:G_SG1/p:S_COM/p:C_C076/p:D_3148/text()", namespaces=p) == [
        "703-555-1212", "crew^control@zzair.example"]
    assert root.xpath("//p:G_SG4/p:S_NAD/p:D_3035/text()", namespaces=p) == ["FM"]


def com_xml(reg: Registry, com: str) -> bytes:
    msg = paxlst_message("M0", 1, "05B")
    msg[msg.index("COM+0031201234567:TE'")] = com
    result = validate(interchange([msg]), None, reg)
    assert result.valid, result.errors
    return etree.tostring(xml_of(result).find(".//{*}S_COM"))


def test_com_repeated_as_the_guideline_or_as_syntax_4_gives_the_same_xml(reg: Registry
                                                                         ) -> None:
    """The directory repeats C076 (COM+a:TE*b:FX); the guideline writes a further data
    element (COM+a:TE+b:FX). Both are accepted and converted alike."""
    guideline = com_xml(reg, "COM+703-555-1212:TE+703-555-4545:FX'")
    syntax4 = com_xml(reg, "COM+703-555-1212:TE*703-555-4545:FX'")
    assert guideline == syntax4
    assert guideline.count(b"<C_C076>") == 2


def test_com_with_more_than_three_numbers_is_refused(reg: Registry) -> None:
    msg = paxlst_message("M0", 1, "05B")
    msg[msg.index("COM+0031201234567:TE'")] = "COM+1:TE*2:FX+3:TE+4:EM'"
    assert errors_of(validate(interchange([msg]), None, reg)) == [
        ("RULE", "PAXLST-D05B:PAX-R7")]


@pytest.mark.parametrize("release", ["02B", "03B", "05B"])
@pytest.mark.parametrize("s009", ["PAXLST:D:{r}:UN", "PAXLST:D:{r}:UN:IATA"])
def test_responsible_agency_un_with_or_without_association_iata(
        reg: Registry, release: str, s009: str) -> None:
    msg = paxlst_message("M0", 1, release)
    msg[0] = f"UNH+M0+{s009.format(r=release)}'"
    result = validate(interchange([msg]), None, reg)
    assert result.valid, result.errors
    assert result.message_type == f"PAXLST-D{release}"


def test_another_association_code_is_named(reg: Registry) -> None:
    msg = paxlst_message("M0", 1, "02B")
    msg[0] = "UNH+M0+PAXLST:D:02B:UN:XYZ'"
    result = validate(interchange([msg]), None, reg)
    assert errors_of(result) == [("CODELIST", "PAXLST-D02B:UNH/0057/codes")]
    place = result.errors[0].place
    assert (place.segment, place.tag, place.element, place.component) == (1, "UNH", 2, 5)


def test_unknown_release_names_the_supported_types_and_releases(reg: Registry) -> None:
    msg = paxlst_message("M0", 1, "01B")
    result = validate(interchange([msg]), None, reg)
    assert errors_of(result) == [("TYPE", "SW-MIG-TYPE")]
    assert result.errors[0].text == (
        "PAXLST:D:01B:UN is not in the Single Window MIG; supported: IFTDGN D:03A (UN); "
        "PAXLST D:02B, D:03B, D:05B (UN, association IATA)")


def with_date(release: str, segment: str, replaces: str = "DTM+329:") -> bytes:
    msg = paxlst_message("M0", 1, release)
    at = next(i for i, s in enumerate(msg) if s.startswith(replaces))
    msg[at] = segment
    return interchange([msg])


@pytest.mark.parametrize("segment", [
    "DTM+329:670603'",          # the guideline: YYMMDD, no format code
    "DTM+329:670603:101'",      # YYMMDD, said so
    "DTM+329:19670603:102'",    # CCYYMMDD with 102, still accepted
    "DTM+329:000229'",          # 29 February of a two-digit year divisible by 4
    "DTM+329:20000229:102'",    # 2000 is a leap year
])
def test_dates_of_birth_accepted(reg: Registry, segment: str) -> None:
    assert validate(with_date("02B", segment), None, reg).valid


@pytest.mark.parametrize(("segment", "rule"), [
    ("DTM+329:99999999:102'", "PAX-R5"),   # month 99 (issue 11: it passed)
    ("DTM+329:670631'", "PAX-R5"),         # 31 June
    ("DTM+329:19000229:102'", "PAX-R5"),   # 1900 is not a leap year
    ("DTM+329:970229'", "PAX-R5"),         # nor is 97
    ("DTM+329:670600'", "PAX-R5"),         # day 0
    ("DTM+329:670603:102'", "PAX-R3"),     # says CCYYMMDD, gives six digits
    ("DTM+329:19670603'", "PAX-R3"),       # eight digits without 102
    ("DTM+329:67O603'", "PAX-R3"),         # a letter O for a zero
    ("DTM+329:6706031200:201'", "PAX-R2"),  # a date of birth with a time
])
def test_dates_of_birth_refused(reg: Registry, segment: str, rule: str) -> None:
    result = validate(with_date("02B", segment), None, reg)
    assert errors_of(result) == [("RULE", f"PAXLST-D02B:{rule}")]


@pytest.mark.parametrize(("segment", "valid"), [
    ("DTM+36:291231'", True),                 # expiry YYMMDD, the guideline's
    ("DTM+36:20291231:102'", True),
    ("DTM+36:291331'", False),                # month 13
    ("DTM+36:20290431:102'", False),          # 31 April
])
def test_document_expiry(reg: Registry, segment: str, valid: bool) -> None:
    result = validate(with_date("05B", segment, "DTM+36:"), None, reg)
    assert result.valid is valid, result.errors
    if not valid:
        assert errors_of(result) == [("RULE", "PAXLST-D05B:PAX-R5")]


@pytest.mark.parametrize(("segment", "valid"), [
    ("DTM+189:2401011200:201'", True),
    ("DTM+189:202401011200:203'", True),
    ("DTM+189:20240101120059:204'", True),
    ("DTM+189:2401012400:201'", False),       # hour 24
    ("DTM+189:2401011260:201'", False),       # minute 60
    ("DTM+189:20240101-20240132:718'", False),  # the period ends on 32 January
    ("DTM+189:20240101-20240131:718'", True),
])
def test_every_checked_date_is_a_calendar_date(reg: Registry, segment: str, valid: bool
                                               ) -> None:
    result = validate(with_date("03B", segment, "DTM+189:"), None, reg)
    assert result.valid is valid, result.errors


def test_cnt_41_and_42_are_flight_totals(reg: Registry) -> None:
    for cnt in ("CNT+42:187'", "CNT+41:12'"):
        msg = paxlst_message("M0", 2, "02B")
        msg[-2] = cnt
        assert validate(interchange([msg]), None, reg).valid
    msg = paxlst_message("M0", 2, "02B")
    msg[-2] = "CNT+11:2'"
    assert errors_of(validate(interchange([msg]), None, reg)) == [
        ("CODELIST", "PAXLST-D02B:CNT/6069/codes")]


@pytest.mark.parametrize(("old", "new", "rule"), [
    ("BGM+745'", "BGM+10'", "CODELIST:PAXLST-D02B:BGM/1001/codes"),
    ("DOC+P:110:111+XP0000000'", "DOC+39+XP0000000'", "CODELIST:PAXLST-D02B:DOC/1001/codes"),
    ("ATT+2++M'", "ATT+2++Z'", "CODELIST:PAXLST-D02B:ATT/9019/codes"),
    ("NAD+FL+++DOE0", "NAD+VW+++DOE0", "CODELIST:PAXLST-D02B:NAD/3035/codes"),
    ("NAD+FL+++DOE0", "NAD+MS+++DOE0", "RULE:PAXLST-D02B:PAX-R8"),
    ("NAD+MS+++OPERATIONS DESK'", "NAD+FL+++OPERATIONS DESK'", "RULE:PAXLST-D02B:PAX-R6"),
])
def test_guideline_code_lists_in_d02b(reg: Registry, old: str, new: str, rule: str) -> None:
    msg = paxlst_message("M0", 1, "02B")
    at = next(i for i, s in enumerate(msg) if s.startswith(old))
    msg[at] = msg[at].replace(old, new)
    assert [f"{c}:{r}" for c, r in errors_of(validate(interchange([msg]), None, reg))] == [rule]


@pytest.mark.parametrize(("code", "valid"), [
    ("745", True), ("250", True), ("266", True), ("336", True), ("655", True), ("10", False)])
def test_bgm_and_doc_keep_their_own_lists_of_1001(reg: Registry, code: str, valid: bool
                                                  ) -> None:
    """1001 is BGM's document name and DOC's document type: one data element, two lists."""
    data = paxlst(code)
    assert validate(data, None, reg).valid is valid
    assert not validate(data.replace(b"DOC+P:", b"DOC+745:"), None, reg).valid


def paxlst(bgm: str) -> bytes:
    msg = paxlst_message("M0", 1, "05B")
    msg[1] = f"BGM+{bgm}'"
    return interchange([msg])


def test_d03b_keeps_the_directorys_codes(reg: Registry) -> None:
    """No D.03B release of the guideline: national D.03B guides use other BGM/DOC codes."""
    msg = paxlst_message("M0", 1, "03B")
    msg[1] = "BGM+10'"
    assert validate(interchange([msg]), None, reg).valid


def test_sg2_dtm_may_be_left_out_as_the_guideline_does(reg: Registry) -> None:
    """The directory has DTM M 1 after TDT; the guideline dates the flight in group 3."""
    assert "TDT+20+ZZ641+++ZZ'LOC+125" in D02B_PASSENGERS
    msg = paxlst_message("M0", 1, "02B")
    assert validate(interchange([msg]), None, reg).valid  # TDT, then LOC+125
    msg.insert(msg.index("LOC+125+NLAMS'"), "DTM+189:0401011200:201'")
    msg[-1] = f"UNT+{len(msg)}+M0'"
    assert validate(interchange([msg]), None, reg).valid  # the directory's DTM still fits


def test_d02b_directory_differs_from_d03b_where_edsd_02b_does(reg: Registry) -> None:
    """6411 is an..3 in D.02B (an..8 from D.03A): CNT's unit of measure shows it."""
    for release, valid in (("02B", False), ("03B", True)):
        msg = paxlst_message("M0", 1, release)
        msg[-2] = "CNT+42:1:ABCD'"
        assert validate(interchange([msg]), None, reg).valid is valid


def test_converted_xml_validates_against_the_generated_schema(reg: Registry) -> None:
    result = validate(D02B_PASSENGERS.encode("latin-1"), None, reg)
    assert result.xml is not None
    again = validate(result.xml, "application/xml", reg)
    assert again.valid and again.message_type == "PAXLST-D02B"
    changed = re.sub(rb"<D_1001>745</D_1001>", b"<D_1001>10</D_1001>", result.xml)
    assert [e.cls for e in validate(changed, "application/xml", reg).errors] == [
        ErrorClass.XSD]


def test_segment_codes_must_name_a_segment_that_has_the_element(tmp_path: Path) -> None:
    root = tmp_path
    target = root / "types" / "paxlst-d02b"
    shutil.copytree(loader.DATA / "types" / "paxlst-d02b", target)
    toml = (target / "mig.toml").read_text()
    (target / "mig.toml").write_text(toml.replace('"BGM/1001"', '"BGM/3035"'))
    with pytest.raises(DataError, match="segment BGM has no data element 3035"):
        loader.load([loader.DATA, root])


def with_segments(release: str, after: str, segments: list[str]) -> bytes:
    """A one-person PAXLST of ``release`` with ``segments`` inserted after the first segment
    starting with ``after`` (UNT recounted)."""
    msg = paxlst_message("M0", 1, release)
    at = next(i for i, s in enumerate(msg) if s.startswith(after)) + 1
    msg[at:at] = segments
    msg[-1] = f"UNT+{len(msg)}+M0'"
    return interchange([msg])


@pytest.mark.parametrize("release", ["02B", "03B", "05B"])
def test_mea_bag_count_without_a_unit_as_the_guideline_writes_it(reg: Registry, release: str
                                                                 ) -> None:
    """Guide 4.14 (MEA - GR. 4), example 5.1: checked bags counted with purpose CT and no
    measurement unit; the directory's C174 makes 6411 mandatory, the MIG does not."""
    data = with_segments(release, "DTM+329:", ["MEA+CT++:2'", "MEA+WT++KGM:31'"])
    result = validate(data, None, reg)
    assert result.valid, result.errors
    root, p = xml_of(result), ns(result)
    assert root.xpath("//p:S_MEA/p:C_C174/p:D_6314/text()", namespaces=p) == ["2", "31"]
    assert root.xpath("//p:S_MEA/p:C_C174/p:D_6411/text()", namespaces=p) == ["KGM"]


def test_mea_unit_keeps_the_directorys_format(reg: Registry) -> None:
    """Only 6411's status changed: D.02B's an..3 still holds when a unit is given."""
    data = with_segments("02B", "DTM+329:", ["MEA+WT++KGMS:31'"])
    assert errors_of(validate(data, None, reg)) == [("FORMAT", "PAXLST-D02B:MEA/6411")]


@pytest.mark.parametrize("release", ["02B", "05B"])
@pytest.mark.parametrize(("code", "valid"), [("IP", True), ("P", True), ("PP", False)])
def test_doc_passport_card_ip(reg: Registry, release: str, code: str, valid: bool) -> None:
    """Guide DOC - GR. 5 (4.21), 1001: IP passport card, next to P, V, I, A, C, AC, F."""
    msg = paxlst_message("M0", 1, release)
    at = next(i for i, s in enumerate(msg) if s.startswith("DOC+"))
    msg[at] = f"DOC+{code}+PC1234567'"
    result = validate(interchange([msg]), None, reg)
    assert result.valid is valid, result.errors
    if not valid:
        assert errors_of(result) == [("CODELIST", f"PAXLST-D{release}:DOC/1001/codes")]


# A progressive flight written from the guide's segment layouts and worked examples 5.1-5.3
# (invented carrier, people and numbers): header RFF+TN with a revision number (4.5), three
# contact numbers as separate COM data elements (4.7), two legs with LOC+92 (4.9), bags
# (MEA 4.14, GEI 4.15, FTX+BAG 4.16), several references per person (RFF 4.20), a crew
# member's function (EMP), CNT+42 with the flight's total (4.24).
GUIDE_PROGRESSIVE = [
    "UNH+M0+PAXLST:D:{r}:UN:IATA'",
    "BGM+745'",
    "RFF+TN:ZZ0000042:::1'",
    "NAD+MS+++ZZ PAX SYSTEMS'",
    "COM+555 0100:TE+555 0101:FX+APIDESK.AT.ZZAIR.EXAMPLE:EM'",
    "TDT+20+ZZ877+++ZZ'",
    "LOC+92+BCN'", "DTM+189:2407081100:201'", "LOC+92+IAD'", "DTM+232:2407081700:201'",
    "TDT+20+ZZ877+++ZZ'",
    "LOC+92+IAD'", "DTM+189:2407081930:201'", "LOC+92+SFO'", "DTM+232:2407082330:201'",
    "NAD+FL+++GARCIA:LUCIA'", "ATT+2++F'", "DTM+329:880412'",
    "MEA+CT++:1'", "MEA+WT++KGM:18'", "GEI+4+173'", "FTX+BAG+++ZZ123456'",
    "LOC+22+IAD'", "LOC+178+BCN'", "LOC+179+SFO'", "LOC+174+ESP'", "NAT+2+ESP'",
    "RFF+AVF:QW12ER'", "RFF+ABO:ZZ877001'", "RFF+SEA:14C'",
    "DOC+P+XD1234567'", "DTM+36:300412'", "LOC+91+ESP'",
    "NAD+FM+++SMIT:JAN'", "ATT+2++M'", "DTM+329:750101'", "LOC+174+NLD'",
    "EMP+1+CR1:110:111'", "NAT+2+NLD'",
    "DOC+P+NW7654321'", "DTM+36:290101'", "LOC+91+NLD'",
    "CNT+42:212'",
]


@pytest.mark.parametrize("release", ["02B", "05B"])
def test_progressive_flight_from_the_guides_layouts(reg: Registry, release: str) -> None:
    msg = [s.format(r=release) for s in GUIDE_PROGRESSIVE]
    msg.append(f"UNT+{len(msg) + 1}+M0'")
    result = validate(interchange([msg]), None, reg)
    assert result.valid, result.errors
    root, p = xml_of(result), ns(result)
    person = root.xpath("//p:G_SG4", namespaces=p)[0]
    assert person.xpath("p:S_RFF/p:C_C506/p:D_1153/text()", namespaces=p) == [
        "AVF", "ABO", "SEA"]
    assert root.xpath("//p:G_SG1/p:S_COM/p:C_C076/p:D_3155/text()", namespaces=p) == [
        "TE", "FX", "EM"]


@pytest.mark.parametrize(("old", "new", "rule"), [
    ("RFF+SEA:14C'", "RFF+SEA:14C'RFF+AEA:X1'RFF+CR:X2'RFF+CR:X3'RFF+CR:X4'RFF+CR:X5'"
     "RFF+CR:X6'RFF+CR:X7'", "STRUCTURE"),      # ten references: over the MIG's 9
    ("LOC+92+BCN'", "LOC+93+BCN'", "CODELIST"),  # not a place qualifier of the guide
])
def test_progressive_flight_refused_where_it_leaves_the_guide(reg: Registry, old: str,
                                                              new: str, rule: str) -> None:
    text = "".join(s.format(r="05B") for s in GUIDE_PROGRESSIVE).replace(old, new, 1)
    msg = [s + "'" for s in text.split("'") if s]
    msg.append(f"UNT+{len(msg) + 1}+M0'")
    assert [c for c, _ in errors_of(validate(interchange([msg]), None, reg))][:1] == [rule]


def test_the_guides_crew_example_order_nat_before_loc_is_refused(reg: Registry) -> None:
    """A known slip in the guide's crew example (5.2): NAT before the person's LOCs, against
    the segment table (LOC, COM, EMP, NAT, RFF). The MIG keeps the segment table's order."""
    msg = paxlst_message("M0", 1, "05B")
    at = msg.index("NAT+2+NLD'")
    msg.insert(msg.index("LOC+178+NLAMS'"), msg.pop(at))
    assert [c for c, _ in errors_of(validate(interchange([msg]), None, reg))] == ["STRUCTURE"]
