"""Hostile XML is refused before anything is expanded, fetched or read."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from singlewindow.mig import loader, xmlcheck
from singlewindow.mig.errors import ErrorClass, MigError
from singlewindow.mig.loader import MessageType, Registry
from singlewindow.mig.validate import validate
from tests.support.factory import gendec

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<GeneralDeclaration xmlns="urn:singlewindow:mig:gendec:1">&lol4;</GeneralDeclaration>"""


@pytest.fixture()
def listener() -> object:
    """A TCP listener on 127.0.0.1 that records whether anyone connected."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.3)
    hits: list[int] = []

    def accept() -> None:
        try:
            conn, _ = srv.accept()
            hits.append(1)
            conn.close()
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    yield srv.getsockname()[1], hits
    t.join()
    srv.close()


def test_external_entity_refused_without_reading_the_file(tmp_path: Path, reg: Registry) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    doc = (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>'
           '<DeclarationResponse xmlns="urn:singlewindow:mig:declaration-response:1">&x;'
           "</DeclarationResponse>").encode()
    result = validate(doc, "application/xml", reg)
    assert [e.cls for e in result.errors] == [ErrorClass.UNSAFE]
    assert "TOP-SECRET" not in repr(result)


def test_external_dtd_refused_without_network(listener: tuple[int, list[int]],
                                              reg: Registry) -> None:
    port, hits = listener
    doc = (f'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:{port}/x.dtd">'
           '<r xmlns="urn:x"/>').encode()
    result = validate(doc, "application/xml", reg)
    assert [e.cls for e in result.errors] == [ErrorClass.UNSAFE]
    assert hits == []


def test_billion_laughs_refused(reg: Registry) -> None:
    result = validate(BILLION_LAUGHS, "text/xml", reg)
    assert [e.rule for e in result.errors] == ["SW-XML-NO-DTD"]


def test_doctype_hidden_in_utf16_is_refused(reg: Registry) -> None:
    result = validate(BILLION_LAUGHS.replace(b'"1.0"', b'"1.0" encoding="UTF-16"')
                      .decode().encode("utf-16"), "application/xml", reg)
    assert [e.cls for e in result.errors] == [ErrorClass.UNSAFE]


def test_the_parser_itself_never_expands_entities(listener: tuple[int, list[int]]) -> None:
    # Defence in depth: even with the DOCTYPE pre-check bypassed, nothing is resolved.
    port, hits = listener
    from lxml import etree
    doc = (f'<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/e">'
           '<!ENTITY y "expanded">]><r>&x;&y;</r>').encode()
    root = etree.fromstring(doc, xmlcheck._parser())
    assert "expanded" not in (root.text or "") and hits == []


def test_size_limit() -> None:
    root, errors = xmlcheck.parse(b"<r/>" + b" " * 100, limit=50)
    assert root is None and errors[0].rule == "SW-XML-SIZE"


def test_not_well_formed_names_the_line(reg: Registry) -> None:
    result = validate(b"<a>\n<b>\n</a>", "application/xml", reg)
    assert result.errors[0].cls is ErrorClass.XML and result.errors[0].place.line == 3


@pytest.mark.parametrize(("check", "broken"), [
    (xmlcheck.check_schema, (b"<Flag>PA</Flag>", b"<Flag>Panama</Flag>")),
    (xmlcheck.check_rules, (b"9074729", b"9074728")),  # the IMO number's check digit
])
def test_checks_are_safe_from_several_threads(
        reg: Registry, check: Callable[[MessageType, etree._Element], list[MigError]],
        broken: tuple[bytes, bytes]) -> None:
    # lxml's XMLSchema and Schematron keep their last error log or report on themselves:
    # two threads checking with the type's own object read each other's findings. The
    # checks give each thread its own copy.
    checker = check
    mt = reg.types["GENDEC-1"]
    good = xmlcheck.parse(gendec())[0]
    bad = xmlcheck.parse(gendec().replace(*broken))[0]
    assert good is not None and bad is not None
    expected = checker(mt, bad)
    assert len(expected) == 1 and checker(mt, good) == []
    wrong: list[object] = []
    start = threading.Barrier(4)

    def run(root: etree._Element, want: list[MigError]) -> None:
        start.wait()
        for _ in range(300):
            if (got := checker(mt, root)) != want:
                wrong.append(got)

    threads = [threading.Thread(target=run, args=(root, want))
               for root, want in ((good, []), (bad, expected)) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_schemas_with_document_wide_constraints_are_recognised(reg: Registry) -> None:
    assert not any(xmlcheck.document_wide(mt) for mt in reg.types.values())
    xs = 'xmlns:xs="http://www.w3.org/2001/XMLSchema"'
    for body, wide in (
            ('<xs:element name="a"><xs:unique name="u"><xs:selector xpath="b"/>'
             '<xs:field xpath="c"/></xs:unique></xs:element>', True),
            ('<xs:element name="a" type="xs:ID"/>', True),
            ('<xs:attribute name="a" type="q:IDREFS" xmlns:q="http://www.w3.org/2001/XMLSchema"'
             '/>', True),
            ('<xs:include schemaLocation="other.xsd"/>', True),
            ('<xs:element name="a" type="ID"/>', False),  # a type of its own named ID
            ('<xs:element name="a" type="xs:string"/>', False)):
        assert xmlcheck._spans_document(f"<xs:schema {xs}>{body}</xs:schema>".encode()) is wide


def test_schematron_reports_are_findings_too(tmp_path: Path) -> None:
    # lxml's Schematron counts a fired <report> as invalid; the control message must then
    # name it (before, such a message had no error listed and went through).
    folder = tmp_path / "types" / "general-declaration"
    shutil.copytree(loader.DATA / "types" / "general-declaration", folder)
    rules = (folder / "rules.sch").read_text()
    rules = rules.replace('  <pattern id="ship">', '''  <pattern id="flag">
    <rule context="g:Ship/g:Flag">
      <report id="GENDEC-TEST" test=". = 'PA'">Flag PA is reported.</report>
    </rule>
  </pattern>
  <pattern id="ship">''', 1)
    (folder / "rules.sch").write_text(rules)
    mt = loader.load([loader.DATA, tmp_path]).types["GENDEC-1"]
    root = xmlcheck.parse(gendec())[0]
    assert root is not None
    found = xmlcheck.check_rules(mt, root)
    assert [(e.cls, e.rule, e.text) for e in found] == [
        (ErrorClass.RULE, "GENDEC-1:GENDEC-TEST", "Flag PA is reported.")]
    assert found[0].place.xpath and "Flag" in found[0].place.xpath


def test_locations_are_walked_to_the_element_xpath_names(reg: Registry) -> None:
    # Findings in several messages and groups of persons: the step-by-step walk of each
    # SVRL location reaches the element that evaluating it as XPath gives.
    from singlewindow.mig.validate import convert_checked
    from tests.support.factory import interchange, paxlst_message
    msgs = [[("DTM+329:649915'" if s.startswith("DTM+329:") else s)
             for s in paxlst_message(f"M{n}", 3)] for n in range(3)]
    _, _, xml = convert_checked(interchange(msgs), reg)
    assert xml is not None
    tree = etree.fromstring(xml).getroottree()
    mt = reg.types["PAXLST-D03B"]
    with xmlcheck._rules_copy(mt) as transform:
        report = transform(tree.getroot())
    locations = [n.get("location") for n in report.getroot()
                 if n.tag == "{http://purl.oclc.org/dsdl/svrl}failed-assert"]
    assert len(locations) == 9
    for location in locations:
        walked = xmlcheck._walk(tree, location)
        assert walked is not None and walked is tree.xpath(location)[0]
    assert xmlcheck._walk(tree, "/*/*[2]") is None  # not the skeleton's notation: XPath
