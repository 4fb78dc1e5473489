"""The MIG is data: an operator adds or replaces types without code; reload swaps it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lxml import etree

from singlewindow.mig import loader
from singlewindow.mig.model import DataError
from singlewindow.mig.validate import validate
from tests.support.factory import paxlst


def test_shipped_types() -> None:
    reg = loader.load()
    assert set(reg.types) == {"PAXLST-D02B", "PAXLST-D03B", "PAXLST-D05B", "IFTDGN-D03A",
                              "GENDEC-1", "DECLARATION-RESPONSE-1", "PROCESS-RESPONSE-1"}
    for release in ("02B", "03B", "05B"):
        assert reg.by_unh["PAXLST", "D", release, "UN"].associations == ("IATA",)
    assert ("urn:singlewindow:mig:gendec:1", "GeneralDeclaration") in reg.by_xml


def operator_copy(tmp_path: Path, name: str = "paxlst-d03b") -> Path:
    target = tmp_path / "types" / name
    shutil.copytree(loader.DATA / "types" / "paxlst-d03b", target)
    return target


def test_operator_overrides_a_shipped_type(tmp_path: Path) -> None:
    folder = operator_copy(tmp_path)
    toml = (folder / "mig.toml").read_text()
    (folder / "mig.toml").write_text(toml.replace('"1225" = [', '"1225" = ["99", '))
    reg = loader.load([loader.DATA, tmp_path])
    data = paxlst(1).replace(b"BGM+745'", b"BGM+745++99'")
    assert validate(data, None, reg).valid
    assert not validate(data, None, loader.load()).valid


def test_operator_adds_a_type_and_a_directory(tmp_path: Path) -> None:
    folder = operator_copy(tmp_path, "paxlst-d04a")
    toml = (folder / "mig.toml").read_text().replace("03B", "04A").replace("D03B", "D04A")
    (folder / "mig.toml").write_text(toml.replace('name = "PAXLST-D04A"', 'name = "PAXLST-D04A"'))
    (tmp_path / "directories" / "D04A").mkdir(parents=True)
    (tmp_path / "directories" / "D04A" / "directory.toml").write_text('based_on = "D03B"\n')
    (folder / "rules.sch").write_text((folder / "rules.sch").read_text().replace("D03B", "D04A"))
    reg = loader.load([loader.DATA, tmp_path])
    data = paxlst(1).replace(b"PAXLST:D:03B", b"PAXLST:D:04A")
    result = validate(data, None, reg)
    assert result.message_type == "PAXLST-D04A" and result.valid


def test_bad_data_is_a_clear_error_and_reload_keeps_the_old_mig(tmp_path: Path) -> None:
    folder = operator_copy(tmp_path)
    (folder / "structure.txt").write_text("UNH M 1\nXYZ M 1\nUNT M 1\n")
    with pytest.raises(DataError, match="XYZ has no definition"):
        loader.load([loader.DATA, tmp_path])
    before = loader.registry()
    with pytest.raises(DataError):
        loader.reload([loader.DATA, tmp_path])
    assert loader.registry() is before
    assert loader.reload() is loader.registry()


def test_sw_mig_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SW_MIG_PATH", str(tmp_path))
    assert loader.roots_from_env() == [loader.DATA, tmp_path]


def test_rules_message_local_is_read_from_mig_toml(tmp_path: Path) -> None:
    shipped = loader.load()
    # The shipped EDIFACT types' rules look inside one message each; XML types have none.
    assert all(shipped.types[f"PAXLST-{r}"].rules_message_local for r in ("D02B", "D03B", "D05B"))
    assert shipped.types["IFTDGN-D03A"].rules_message_local
    assert not shipped.types["GENDEC-1"].rules_message_local
    folder = operator_copy(tmp_path)
    toml = (folder / "mig.toml").read_text()
    (folder / "mig.toml").write_text(toml.replace("message_local = true", ""))
    assert not loader.load([loader.DATA, tmp_path]).types["PAXLST-D03B"].rules_message_local


@pytest.mark.parametrize(("folder", "value", "complaint"), [
    ("paxlst-d03b", '"yes"', "must be true or false"),
    ("general-declaration", "true", "is for EDIFACT types"),
])
def test_rules_message_local_refused_where_it_cannot_hold(tmp_path: Path, folder: str,
                                                          value: str, complaint: str) -> None:
    target = tmp_path / "types" / folder
    shutil.copytree(loader.DATA / "types" / folder, target)
    toml = (target / "mig.toml").read_text().replace("message_local = true\n", "")
    rules = 'schematron = "rules.sch"\n'
    (target / "mig.toml").write_text(toml.replace(rules, f"{rules}message_local = {value}\n"))
    with pytest.raises(DataError, match=complaint):
        loader.load([loader.DATA, tmp_path])


def test_compile_schema_compiles_a_types_xsd_and_names_a_broken_one(tmp_path: Path) -> None:
    shipped = loader.load().types["PAXLST-D03B"]
    schema = loader.compile_schema(shipped.schema_text, shipped.folder / "schema.xsd")
    assert schema is not shipped.schema  # a copy of its own, for another thread
    assert not schema.validate(etree.fromstring(b"<NotAPassengerList/>"))
    broken = tmp_path / "schema.xsd"
    with pytest.raises(DataError, match=str(broken)):
        loader.compile_schema(b"<xs:schema xmlns:xs='http://www.w3.org/2001/XMLSchema'>"
                              b"<xs:element/></xs:schema>", broken)
    with pytest.raises(DataError, match=str(broken)):
        loader.compile_schema(b"<not xml", broken)
