"""Hostile XML is refused before anything is expanded, fetched or read."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from singlewindow.mig import xmlcheck
from singlewindow.mig.errors import ErrorClass
from singlewindow.mig.loader import Registry
from singlewindow.mig.validate import validate

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
