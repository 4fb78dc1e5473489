"""The business rules' own XSLT (mig/rules.py) against lxml's ISO Schematron skeleton.

Every finding (rule id, text with its value-of parts, location, line, EDIFACT place, order)
must be what the ISO skeleton gives, on the samples, the public interchanges, seeded
mutations that trigger each shipped rule, and schemas that use the corners of Schematron
and XPath the compiler takes apart."""

from __future__ import annotations

import contextlib
import importlib
import random
from dataclasses import replace
from pathlib import Path

import pytest
from lxml import etree, isoschematron

from singlewindow.mig import rules, xmlcheck
from singlewindow.mig.loader import MessageType, Registry, compile_schema
from singlewindow.mig.validate import convert_checked, validate
from tests.support.factory import (
    declaration_response,
    gendec,
    iftdgn,
    interchange,
    paxlst,
    paxlst_message,
)

validate_module = importlib.import_module("singlewindow.mig.validate")
SCH = "http://purl.oclc.org/dsdl/schematron"


def iso_reference(mt: MessageType, root: etree._Element) -> list[object]:
    """What the control message listed before: the ISO skeleton on the whole document."""
    found = xmlcheck.rule_findings(mt, root, validate_module._locator(mt),
                                   validate_module.RULE_HITS + 1, iso=True)
    return list(validate_module._rule_list([e for _, e in found]))


def assert_same_findings(mt: MessageType, root: etree._Element) -> int:
    """The lean rules and the ISO skeleton agree on ``root``, with the default places
    (the location string and line) and the EDIFACT ones; returns the number found."""
    lean = xmlcheck.rule_findings(mt, root)
    assert lean == xmlcheck.rule_findings(mt, root, iso=True)
    if mt.edifact is not None:
        locate = validate_module._locator
        assert (xmlcheck.rule_findings(mt, root, locate(mt))
                == xmlcheck.rule_findings(mt, root, locate(mt), iso=True))
    return len(lean)


def test_every_shipped_rule_set_runs_lean(reg: Registry) -> None:
    ruled = [mt for mt in reg.types.values() if mt.rules is not None]
    assert len(ruled) == 7
    assert all(mt.rules_lean is not None for mt in ruled)


# --- the shipped PAXLST rules, each triggered -----------------------------------------------

def _swap(segs: list[str], start: str, new: str, nth: int = 0) -> list[str]:
    at = [n for n, s in enumerate(segs) if s.startswith(start)][nth]
    return [new if n == at else s for n, s in enumerate(segs)]


# One mutation per shipped PAXLST rule: (releases, rule, what it does to a message)
MUTATIONS = [
    (("02B", "03B", "05B"), "PAX-R1", lambda m, i: _swap(
        m, "NAD+FL", "NAD+FL+++ +1 MAIN STREET+AMSTERDAM++1011AB+NL'", i)),
    (("02B", "03B", "05B"), "PAX-R2", lambda m, i: _swap(m, "DTM+329", "DTM+329:6402151200:201'",
                                                        i)),
    (("02B", "03B", "05B"), "PAX-R3", lambda m, i: _swap(m, "DTM+36", "DTM+36:2030010:102'", i)),
    (("02B", "03B", "05B"), "PAX-R5", lambda m, i: _swap(m, "DTM+36", "DTM+36:20300229:102'",
                                                        i)),
    (("02B", "03B", "05B"), "PAX-R5", lambda m, i: _swap(m, "DTM+189", "DTM+189:0401012460:201'")),
    (("02B", "03B", "05B"), "PAX-R7", lambda m, i: _swap(
        m, "COM", "COM+0031201234567:TE*0031201234568:FX*A:EM+B:TE'")),
    (("02B", "05B"), "PAX-R6", lambda m, i: _swap(m, "NAD+MS", "NAD+FL+++OPERATIONS DESK'")),
    (("02B", "05B"), "PAX-R8", lambda m, i: _swap(
        m, "NAD+FL", "NAD+MS+++DOE:JOHN:ALBERT+1 MAIN STREET+AMSTERDAM++1011AB+NL'", i)),
]


def mutated(seed: int, release: str) -> bytes:
    """Messages of a few persons with the mutations applied at random persons and
    messages (a later one may undo an earlier one)."""
    rng = random.Random(seed)
    msgs = [paxlst_message(f"M{n}", rng.randint(1, 6), release, start=10 * n)
            for n in range(rng.randint(1, 4))]
    usable = [m for m in MUTATIONS if release in m[0]]
    for _ in range(rng.randint(1, 5)):
        _, _, change = rng.choice(usable)
        n = rng.randrange(len(msgs))
        persons = sum(1 for s in msgs[n] if s.startswith("NAD+FL"))
        with contextlib.suppress(IndexError):  # every person of it may be an MS already
            msgs[n] = change(msgs[n], rng.randrange(persons) if persons else 0)
    return interchange(msgs)


@pytest.mark.parametrize(
    ("release", "rule", "change"),
    [(release, m[1], m[2]) for n, m in enumerate(MUTATIONS) for release in m[0]],
    ids=[f"{m[1]}-{n}-{release}" for n, m in enumerate(MUTATIONS) for release in m[0]])
def test_each_pax_rule_fires_as_with_the_iso_skeleton(
        reg: Registry, release: str, rule: str, change: object) -> None:
    msgs = [paxlst_message("M0", 3, release), paxlst_message("M1", 4, release, start=3)]
    msgs[1] = change(msgs[1], 2)  # type: ignore[operator]
    payload = interchange(msgs)
    result = validate(payload, "application/edifact", reg)
    assert f"PAXLST-D{release}:{rule}" in {e.rule for e in result.errors}
    _, errors, xml = convert_checked(payload, reg)
    assert not errors and xml is not None
    mt = reg.types[f"PAXLST-D{release}"]
    root = etree.fromstring(xml)
    # the transport's path (per message, lean) lists what the ISO skeleton lists
    assert list(result.errors) == iso_reference(mt, root)
    assert assert_same_findings(mt, root) >= 1


@pytest.mark.parametrize("release", ["02B", "03B", "05B"])
def test_seeded_mutations_find_what_the_iso_skeleton_finds(reg: Registry, release: str) -> None:
    fired: set[str] = set()
    for seed in range(16):
        payload = mutated(seed, release)
        result = validate(payload, "application/edifact", reg)
        _, errors, xml = convert_checked(payload, reg)
        assert not errors and xml is not None
        mt = reg.types[f"PAXLST-D{release}"]
        root = etree.fromstring(xml)
        assert list(result.errors) == iso_reference(mt, root)
        assert_same_findings(mt, root)
        for message in root.iter(f"{{{mt.namespace}}}M_PAXLST"):
            # and on each message alone, as the transport's worker threads run them
            assert_same_findings(mt, etree.fromstring(etree.tostring(message)))
        found = {e.rule.split(":")[1] for e in result.errors}
        assert found
        fired |= found
    assert fired == {m[1] for m in MUTATIONS if release in m[0]}


# --- samples and the public interchanges ----------------------------------------------------

SAMPLES = {
    "PAXLST D.03B": paxlst(5, 3),
    "PAXLST D.02B": paxlst(5, 2, "02B"),
    "PAXLST D.05B": paxlst(5, 2, "05B"),
    "IFTDGN": iftdgn(),
    "IFTDGN without UN number": iftdgn().replace(b"DGS+IMD+3+1090+", b"DGS+IMD+3++"),
    "IFTDGN without means of transport": iftdgn().replace(b"+++9074729:146:11:MSC ANNA:PA", b""),
}
XML_SAMPLES = {
    "GENDEC": gendec(),
    "GENDEC, wrong IMO check digit": gendec(imo="9074728"),
    "GENDEC, gross tonnage": gendec(gross="1000"),
    "GENDEC, no crew": gendec(crew="0"),
    "declaration response": declaration_response(),
    "declaration response, rejected": declaration_response(status="Rejected"),
}


@pytest.mark.parametrize("payload", list(SAMPLES.values()), ids=list(SAMPLES))
def test_edifact_samples_alike(reg: Registry, payload: bytes) -> None:
    summary, errors, xml = convert_checked(payload, reg)
    assert not errors and xml is not None and summary.profile is not None
    mt = reg.types[summary.profile.name]
    root = etree.fromstring(xml)
    assert list(validate(payload, None, reg).errors) == iso_reference(mt, root)
    assert_same_findings(mt, root)


@pytest.mark.parametrize("payload", list(XML_SAMPLES.values()), ids=list(XML_SAMPLES))
def test_xml_samples_alike(reg: Registry, payload: bytes) -> None:
    root, errors = xmlcheck.parse(payload)
    assert root is not None and not errors
    mt = reg.by_xml[xmlcheck.root_key(root)]
    count = assert_same_findings(mt, root)
    assert (count > 0) == (payload not in (gendec(), declaration_response()))


def test_public_interchanges_alike(reg: Registry, public: Path) -> None:
    converted = 0
    for file in sorted(public.glob("*.edi")):
        payload = file.read_bytes()
        for variant in (payload, payload.replace(b"DTM+329:19350919:102'",
                                                 b"DTM+329:19350931:102'")):
            summary, errors, xml = convert_checked(variant, reg)
            if errors or xml is None or summary.profile is None:
                continue  # a message type this MIG does not carry
            converted += 1
            mt = reg.types[summary.profile.name]
            root = etree.fromstring(xml)
            assert list(validate(variant, None, reg).errors) == iso_reference(mt, root)
            assert_same_findings(mt, root)
    assert converted == 2  # the PAXLST, as it is and with a 31 September


# --- the corners of Schematron and XPath the compiler handles -------------------------------

CORNERS = """<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt">
  <ns prefix="g" uri="urn:singlewindow:mig:general-declaration:1"/>
  <ns prefix="q" uri="urn:test:other"/>
  <let name="limit" value="3"/>
  <pattern id="first-rule-wins">
    <rule context="g:Ship/g:Flag | g:Master">
      <assert id="C-FIRST" test="string-length(.) &lt; $limit">first: <value-of
        select="."/> (<name/>, <name path=".."/>)</assert>
    </rule>
    <rule context="g:Flag">
      <report id="C-NEVER" test="true()">the first rule took it</report>
    </rule>
    <rule context="child::g:Ship">
      <report test="g:Flag = 'PA' or g:Flag = 'or'">no id: <value-of select="g:Flag"/></report>
    </rule>
  </pattern>
  <pattern id="walked">
    <rule context="*">
      <report id="C-ANY" test="self::q:item and @n &gt; 1">item <value-of select="@n"/></report>
    </rule>
    <rule context="/">
      <report id="C-ROOT" test="true()">the root</report>
    </rule>
  </pattern>
  <pattern id="attributes">
    <rule context="@n">
      <report id="C-ATTR" test=". = 3">an attribute, as a "@" in a context has the skeleton
        visit them: <value-of select="name()"/></report>
    </rule>
  </pattern>
  <pattern id="empty"/>
  <pattern id="lets">
    <rule context="q:item[2] | item">
      <let name="a" value="string(@n)"/>
      <let name="b" value="number($a) * 2"/>
      <let name="c" value="concat($a, ' or ', $b)"/>
      <let name="d" value="count(../*[@n = $a])"/>
      <let name="e" value="string(@n)"/>
      <let name="g" value="number(@n) + 1"/>
      <assert id="C-LETS" test="not($b &gt; 2 and ($c = '2 or 4' or not(contains($c, 'and'))))"
        >lets: <value-of select="$c"/></assert>
      <assert id="C-AFTER" test="$d = 1 and (($a) or $b div 2 = 1)">after: <value-of
        select="$d"/></assert>
      <assert id="C-PRED" test="count(../*[string(@n) = $e]) = 1">once, in a predicate: not
        written into it (the context differs there)</assert>
      <report id="C-ONCE" test="$g = 4">once: <value-of select="@n"/></report>
      <report id="C-AND" test="$a = 'and' or (@n and $a mod 2 = 1)">odd <value-of
        select="$a"/></report>
    </rule>
  </pattern>
</schema>"""

DOCUMENT = b"""<GeneralDeclaration xmlns="urn:singlewindow:mig:general-declaration:1"
    xmlns:q="urn:test:other"><!-- a comment --><?pi here?>
  <Ship><Flag>PAN</Flag><Name>X</Name></Ship>
  <Ship><Flag>or</Flag></Ship>
  <Master>K. PAPADOPOULOS</Master>
  <q:item n="1"/><q:item n="2"/><q:item n="3"/>
  <list xmlns=""><item n="1"/><item n="3"/><item n="3"/><item n="and"/></list>
</GeneralDeclaration>"""


def _type_with(reg: Registry, schematron: str) -> MessageType:
    """GENDEC-1 with these rules (and its own compiled XSD object, so that the checks'
    per-type copies are not the shipped type's)."""
    base = reg.types["GENDEC-1"]
    doc = etree.fromstring(schematron.encode()).getroottree()
    return replace(base, schema=compile_schema(base.schema_text, base.folder / "schema.xsd"),
                   rules=isoschematron.Schematron(doc, store_xslt=True),
                   rules_lean=rules.compile_lean(doc))


def test_the_corners_give_the_iso_findings(reg: Registry) -> None:
    mt = _type_with(reg, CORNERS)
    assert mt.rules_lean is not None
    root = etree.fromstring(DOCUMENT)
    found = xmlcheck.rule_findings(mt, root)
    assert found == xmlcheck.rule_findings(mt, root, iso=True)
    ids = [e.rule.split(":", 1)[1] for _, e in found]
    assert {"C-FIRST", "C-ANY", "C-ROOT", "C-LETS", "C-AFTER", "C-AND", "C-PRED",
            "C-ONCE"} <= set(ids)
    assert "C-NEVER" not in ids and ids.count("C-ATTR") == 3
    assert any(i.startswith("g:Flag = ") for i in ids)  # no id: the test names it
    # the skeleton's full-path notation, [n] only among same-named siblings
    assert any("*[local-name()='Ship' and namespace-uri()='urn:singlewindow:mig:general-"
               "declaration:1'][2]" in str(e.place.xpath) for _, e in found)
    assert any(str(e.place.xpath).endswith("/list/item[3]") for _, e in found)
    # the patterns in turn, each in document order
    assert [p for p, _ in found] == sorted(p for p, _ in found)


def test_lets_no_part_of_a_test_needs_are_not_computed(reg: Registry) -> None:
    # $c is needed only once $b > 2 has held: it is bound inside that branch, not at the
    # top of the rule's template, where the skeleton binds every let.
    lean = rules.compile_lean(etree.fromstring(CORNERS.encode()))
    assert lean is not None
    template = next(t for t in lean.getroot() if "q:item[2]" in str(t.get("match")))
    top = [v.get("name") for v in template if v.tag == f"{{{rules.XSL}}}variable"]
    assert top == ["a", "b", "d", "e"]  # c only where $b > 2 has held
    # g, used once, is written into the one expression that uses it; e, used once inside
    # a predicate, is not
    text = etree.tostring(template).decode()
    assert "(number(@n) + 1)" in text and "[string(@n) = $e]" in text


@pytest.mark.parametrize(("after", "extra"), [
    ('<let name="limit" value="3"/>', '<phase id="x"><active pattern="empty"/></phase>'),
    ('<pattern id="empty"/>', '<pattern><rule context="g:Ship"><assert test="1 = 2" '
     'diagnostics="d">a</assert></rule></pattern>'),
    ('<pattern id="empty"/>', '<pattern><rule context="g:Ship"><assert test="1 = 2">a <emph>b'
     '</emph></assert></rule></pattern>'),
    ('<pattern id="empty"/>', '<pattern><let name="x" value="1"/><rule context="g:Ship">'
     '<assert test="$x = 2">x</assert></rule></pattern>'),
])
def test_what_it_does_not_cover_runs_the_iso_skeleton(reg: Registry, after: str,
                                                      extra: str) -> None:
    text = CORNERS.replace(after, f"{after}{extra}")
    if "diagnostics" in extra:
        text = text.replace("</schema>", '<diagnostics><diagnostic id="d">why</diagnostic>'
                            "</diagnostics></schema>")
    assert rules.compile_lean(etree.fromstring(text.encode())) is None
    mt = _type_with(reg, text)
    root = etree.fromstring(DOCUMENT)
    assert mt.rules_lean is None
    assert xmlcheck.rule_findings(mt, root) == xmlcheck.rule_findings(mt, root, iso=True)


@pytest.mark.parametrize(("context", "names"), [
    ("p:G_SG4", {"p:G_SG4"}),
    ("p:S_DTM/p:C_C507[p:D_2005 = '329' or p:D_2005 = '36']", {"p:C_C507"}),
    ("a | /b/c[d/e] | child::x", {"a", "c", "x"}),
    ("a[b | c]//d[@e='f/g|h']", {"d"}),
    ("*", None), ("p:*", None), ("/", None), ("@a", None), ("a/text()", None),
    ("a | node()", None), ("descendant::a", None), ("key('k', 'v')", None),
])
def test_candidate_elements_of_a_rule_context(context: str, names: set[str] | None) -> None:
    assert rules._element_ends(context) == names


@pytest.mark.parametrize(("expr", "ors", "ands"), [
    ("a or b", ["a", "b"], ["a or b"]),
    ("$x = 'a or b' or p:order", ["$x = 'a or b'", "p:order"], ["$x = 'a or b' or p:order"]),
    ("(a or b) and c", ["(a or b) and c"], ["(a or b)", "c"]),
    ("x[a or b] and or", ["x[a or b] and or"], ["x[a or b]", "or"]),
    ("and and and", ["and and and"], ["and", "and"]),
    ("$a div 2 = 1 or mod", ["$a div 2 = 1", "mod"], ["$a div 2 = 1 or mod"]),
    ("* and a", ["* and a"], ["*", "a"]),
])
def test_tests_are_taken_apart_at_their_operators_only(expr: str, ors: list[str],
                                                       ands: list[str]) -> None:
    tokens = rules._tokens(expr)
    assert tokens is not None
    assert rules._operands(expr, tokens, "or") == ors
    assert rules._operands(expr, tokens, "and") == ands
