"""The package's imports: its runtime needs only its runtime dependencies (issue 14):
pydifact, the benchmarks' baseline, is an extra that no module of the package imports; and
no module reaches sideways (issue 17): not into another room of the mail flow, not for
another module's private names, never into the tests."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Imported only by the benchmarks (bench/), never by src/.
BENCH_ONLY = ("pydifact",)

_IMPORT_ALL = """
import importlib, pkgutil, sys
for name in {blocked!r}:
    sys.modules[name] = None  # 'import name' raises ImportError from here on
import singlewindow
done = []
for info in pkgutil.walk_packages(singlewindow.__path__, "singlewindow."):
    importlib.import_module(info.name)
    done.append(info.name)
print(len(done))
"""


def test_every_module_imports_without_the_bench_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL.format(blocked=BENCH_ONLY)],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) > 50  # the walk saw the whole package


def test_bench_packages_are_an_extra_the_test_environment_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {r.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower()
                for r in requirements}
    extras = project["optional-dependencies"]
    for package in BENCH_ONLY:
        assert package not in names(project["dependencies"])
        assert package in names(extras["bench"])
    # scripts/install installs the test extra, which brings the bench extra with it.
    assert "singlewindow[bench]" in extras["test"]
    assert '"$here[test]"' in (ROOT / "scripts" / "install").read_text()



# --- layering (issue 17): each module reaches down, never sideways -----------------------

#: (importer, imported): rooms that must not reach into each other. Policy and milter
#: share identity code through singlewindow.identity; the local stack and a deployed node
#: share their template context through singlewindow.node; what every node runs (its
#: daemons, how to tell they serve) is singlewindow.services, which health reads on any node.
SIDEWAYS = (
    ("singlewindow.milter", "singlewindow.policy"),
    ("singlewindow.policy", "singlewindow.milter"),
    ("singlewindow.identity", "singlewindow.policy"),
    ("singlewindow.identity", "singlewindow.milter"),
    ("singlewindow.deploy", "singlewindow.stack"),
    ("singlewindow.deploy", "singlewindow.supervisor"),
    ("singlewindow.node", "singlewindow.stack"),
    ("singlewindow.node", "singlewindow.deploy"),
    ("singlewindow.health", "singlewindow.stack"),
    ("singlewindow.services", "singlewindow.stack"),
    ("singlewindow.transport", "singlewindow.stack"),
    ("singlewindow.policy", "singlewindow.stack"),
    ("singlewindow.milter", "singlewindow.stack"),
    ("singlewindow.metrics", "singlewindow.stack"),
)

Import = tuple[str, str, str]  # importer, module, name taken from it ("" for none)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _imports(path: Path, root: Path) -> list[Import]:
    """Every import in ``path`` (a module under ``root``), relative ones made absolute;
    ``from a import b`` counts as importing ``a`` (taking ``b``) and ``a.b``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
        package = parts
    else:
        package = parts[:-1]
    importer = ".".join(parts)
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend((importer, alias.name, "") for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            anchor = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                found.append((importer, base, alias.name))
                found.append((importer, f"{base}.{alias.name}", ""))
    return found


def _all_imports(root: Path, folder: str) -> list[Import]:
    return [found for path in sorted((root / folder).rglob("*.py"))
            for found in _imports(path, root)]


def _sideways(imports: list[Import]) -> list[tuple[str, str]]:
    return sorted({(importer, module) for importer, module, _ in imports
                   for src, dst in SIDEWAYS if _under(importer, src) and _under(module, dst)})


def _private(imports: list[Import]) -> list[Import]:
    """Private names one module takes from another (mig/xmlcheck.py once took
    loader._compile_schema): a name shared between modules is public. A package's own
    private submodule (mig/edifact/_accel, the compiled accelerator) is its business."""
    return [(importer, module, name) for importer, module, name in imports
            if _under(module, "singlewindow") and module != importer
            and module != importer.rpartition(".")[0]
            and name.startswith("_") and not name.startswith("__")]


def _tests(imports: list[Import], allowed: str | None = None) -> list[Import]:
    return [found for found in imports if _under(found[1], "tests")
            and found[1] != "tests" and not (allowed and _under(found[1], allowed))]


def _test_module(module: str, root: Path) -> bool:
    """Whether ``module`` names a test module or a conftest (a file under ``root``)."""
    path = root.joinpath(*module.split(".")).with_suffix(".py")
    return path.is_file() and (path.name == "conftest.py" or path.name.startswith("test_"))


def _into_test_modules(imports: list[Import], root: Path) -> list[tuple[str, str]]:
    """Imports of a test module or a conftest: what tests, conftests and benches share
    lives in tests/support/ (a fixture stays in its conftest, where pytest finds it)."""
    return sorted({(importer, module) for importer, module, _ in imports
                   if module != importer and _test_module(module, root)})


def test_no_room_reaches_sideways() -> None:
    assert _sideways(_all_imports(ROOT / "src", "singlewindow")) == []


def test_no_module_takes_another_modules_private_names() -> None:
    assert _private(_all_imports(ROOT / "src", "singlewindow")) == []


def test_the_package_never_imports_the_tests() -> None:
    assert _tests(_all_imports(ROOT / "src", "singlewindow")) == []


def test_benches_take_only_the_shared_test_support() -> None:
    """Sinks and factories that tests and benches share live in tests/support/, never in
    a test module (bench/*.py once imported tests.unit.mig.factory)."""
    assert _tests(_all_imports(ROOT, "bench"), allowed="tests.support") == []


def test_no_test_module_imports_another_test_module_or_a_conftest() -> None:
    """Tests, conftests and tests/support/ never take helpers from a test module or a
    conftest (tests/integration/test_trace.py once imported test_msa's ``msa``)."""
    imports = _all_imports(ROOT, "tests") + _all_imports(ROOT, "bench")
    assert _into_test_modules(imports, ROOT) == []


def test_the_layering_checks_find_what_they_forbid(tmp_path: Path) -> None:
    """Each check fails on the imports issue 17 removed, written into a scratch tree."""
    milter = tmp_path / "singlewindow" / "milter"
    milter.mkdir(parents=True)
    (milter / "decide.py").write_text(
        "from singlewindow.policy.decide import login_of\n"
        "from ..mig.loader import _compile_schema\n"
        "from tests.unit.mig import factory\n")
    (tmp_path / "singlewindow" / "deploy.py").write_text("from singlewindow import stack\n")
    imports = _all_imports(tmp_path, "singlewindow")
    assert _sideways(imports) == [
        ("singlewindow.deploy", "singlewindow.stack"),
        ("singlewindow.milter.decide", "singlewindow.policy.decide"),
        ("singlewindow.milter.decide", "singlewindow.policy.decide.login_of")]
    assert _private(imports) == [
        ("singlewindow.milter.decide", "singlewindow.mig.loader", "_compile_schema")]
    assert _tests(imports, allowed="tests.support") == [
        ("singlewindow.milter.decide", "tests.unit.mig", "factory"),
        ("singlewindow.milter.decide", "tests.unit.mig.factory", "")]


def test_the_test_module_check_finds_what_it_forbids(tmp_path: Path) -> None:
    """The check fails on the imports issue 17 removed from the tests, written into a
    scratch tree; a helper taken from tests/support/ passes."""
    integration = tmp_path / "tests" / "integration"
    (tmp_path / "tests" / "support").mkdir(parents=True)
    integration.mkdir()
    for name in ("conftest", "test_msa", "test_pop3"):
        (integration / f"{name}.py").write_text("")
    (tmp_path / "tests" / "support" / "clients.py").write_text("")
    (integration / "test_trace.py").write_text(
        "from tests.integration.conftest import MailClient\n"
        "from tests.integration.test_msa import msa\n"
        "from . import test_pop3\n"
        "from tests.support.clients import tls_context\n")
    assert _into_test_modules(_all_imports(tmp_path, "tests"), tmp_path) == [
        ("tests.integration.test_trace", "tests.integration.conftest"),
        ("tests.integration.test_trace", "tests.integration.test_msa"),
        ("tests.integration.test_trace", "tests.integration.test_pop3")]
