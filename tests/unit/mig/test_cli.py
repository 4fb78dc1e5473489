from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree

from singlewindow.mig.cli import convert_cmd, validate_cmd
from tests.support.factory import gendec


def test_validate_valid_public_sample(public: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate_cmd(str(public / "paxlst-d03b-smooks-message_01.edi")) == 0
    assert "valid PAXLST-D03B" in capsys.readouterr().out


def test_validate_json_lists_the_control_message_errors(
        public: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate_cmd(str(public / "aperak-d96a-pydifact-rejected.edi"), True) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is False
    assert any(e["rule"] == "ISO9735-UNT-0074" and e["code"] == "SW-COUNT"
               for e in doc["errors"])


def test_validate_text_prints_contrl(public: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate_cmd(str(public / "aperak-d96a-pydifact-rejected.edi")) == 1
    out = capsys.readouterr().out
    assert "SW-COUNT at message 1 segment 7 UNT" in out and "CONTRL: UNA" in out


def test_validate_xml_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gendec.xml"
    path.write_bytes(gendec(crew="0"))
    assert validate_cmd(str(path)) == 1
    assert "GENDEC-R4" in capsys.readouterr().out


def test_convert_public_sample(public: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    assert convert_cmd(str(public / "paxlst-d03b-smooks-message_01.edi")) == 0
    out = capfdbinary.readouterr().out
    root = etree.fromstring(out)
    assert etree.QName(root).localname == "Interchange"


def test_convert_reports_errors(public: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert convert_cmd(str(public / "aperak-d96a-pydifact-rejected.edi")) == 1
    assert "SW-COUNT" in capfd.readouterr().err
