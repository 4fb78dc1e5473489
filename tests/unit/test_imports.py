"""The package's runtime needs only its runtime dependencies (issue 14): pydifact, the
benchmarks' baseline, is an extra that no module of the package imports."""

from __future__ import annotations

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
