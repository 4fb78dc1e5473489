"""Benchmark (not a test): peak memory and time of the transport's MIG path on large input.

Run: ``PYTHONPATH=$PWD/src .venv/bin/python bench/mig_memory_bench.py [--only CASE ...]``
from the repository root. Per case it writes an interchange to a file under
``/tmp/sw-migmem-*`` (generated message by message, ``factory.paxlst_stream``), then runs
``mig.validate`` on it as ``submission.validated`` does, but without the copy size limit
(``limit=None``: the transport would refuse such XML as too large for a copy; this measures
the MIG path itself), in a fresh Python process, and prints that process's peak RSS
(``VmHWM`` from ``/proc/self/status``: interpreter, lxml, the input bytes, the XML to
forward and all the checking). The goal (issue 11): a valid 50 MB PAXLST interchange
validates with a peak RSS of at most 400 MiB.

Cases: ``paxlst-10MB`` and ``paxlst-50MB`` (every person different, as in a real list),
``paxlst-50MB-repeated`` (every message lists the same 200 persons), and
``paxlst-10MB-whole-rules``: the 10 MB case with the rules run on the whole document, as
before ``[rules] message_local`` (an operator folder in ``SW_MIG_PATH`` that drops the
flag), for comparison. ``--whole-50`` adds the same for 50 MB (about 3 GB and 30 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.factory import paxlst_stream  # noqa: E402

from singlewindow.mig import loader  # noqa: E402

GOAL_MIB = 400
GOAL_CASE = "paxlst-50MB"
MB = 1024 * 1024

# Runs in the fresh process: read the file, validate it, report.
CHILD = """
import sys, time
from singlewindow import mig
reg = mig.registry()
payload = open(sys.argv[1], "rb").read()
with open("/proc/self/status") as fh:
    before = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
start = time.perf_counter()
result = mig.validate(payload, "application/edifact", reg, limit=None)
took = time.perf_counter() - start
assert result.valid and result.xml is not None, [str(e) for e in result.errors[:3]]
with open("/proc/self/status") as fh:
    peak = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
print(peak // 1024, before // 1024, f"{took:.1f}", len(result.xml))
"""


def write_case(folder: Path, megabytes: float, unique: bool) -> Path:
    path = folder / f"paxlst-{megabytes:g}MB-{'unique' if unique else 'repeated'}.edi"
    if not path.exists():
        src, _ = paxlst_stream(megabytes, unique=unique)
        with path.open("wb") as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
    return path


def whole_rules_overlay(folder: Path) -> Path:
    """An operator MIG folder: PAXLST D.03B as shipped, its rules not message-local."""
    overlay = folder / "whole-rules"
    target = overlay / "types" / "paxlst-d03b"
    if not target.exists():
        shutil.copytree(loader.DATA / "types" / "paxlst-d03b", target)
        toml = target / "mig.toml"
        text = toml.read_text()
        changed = text.replace("message_local = true", "message_local = false")
        assert changed != text, "the shipped PAXLST D.03B has no message_local = true"
        toml.write_text(changed)
    return overlay


def run(case: str, path: Path, env: dict[str, str]) -> int:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        print(f"mig memory: {case} failed: {proc.stderr.strip().splitlines()[-1:]}")
        return 1 << 30
    peak, before, took, xml = proc.stdout.split()
    size = path.stat().st_size / MB
    print(f"mig memory: {case} {size:.1f} MB -> peak RSS {peak} MiB, {took} s")
    print(f"    (before validate: {before} MiB with the input read; XML to forward "
          f"{int(xml) / MB:.1f} MB)")
    return int(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", nargs="*", help="run only these cases")
    parser.add_argument("--whole-50", action="store_true",
                        help="also the 50 MB case with the rules on the whole document")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sw-migmem-"))
    try:
        base = dict(os.environ)
        base["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "src"), str(ROOT), *filter(None, [base.get("PYTHONPATH")])])
        base.pop("SW_MIG_PATH", None)
        whole = dict(base, SW_MIG_PATH=str(whole_rules_overlay(folder)))
        cases = [("paxlst-10MB", 10, True, base), ("paxlst-10MB-whole-rules", 10, True, whole),
                 (GOAL_CASE, 50, True, base), ("paxlst-50MB-repeated", 50, False, base)]
        if args.whole_50:
            cases.append(("paxlst-50MB-whole-rules", 50, True, whole))
        peaks = {}
        for case, mb, unique, env in cases:
            if args.only and case not in args.only:
                continue
            peaks[case] = run(case, write_case(folder, mb, unique), env)
        if GOAL_CASE in peaks:
            verdict = "met" if peaks[GOAL_CASE] <= GOAL_MIB else "MISSED"
            print(f"mig memory: goal {GOAL_MIB} MiB: {verdict}")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
