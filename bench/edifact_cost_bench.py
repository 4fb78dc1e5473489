"""Benchmark (not a test): what 1 MB of EDIFACT costs, by kind of content (issue 11).

Run: ``.venv/bin/python bench/edifact_cost_bench.py`` from the repository root. Each case
is about 1 MB, checked as the transport checks it short of the business rules
(``validate.convert_checked``: tokenizer, envelope, structure, formats, code lists, XML, XSD),
best of 5. It prints ``edifact cost: <case> <MB/s> (<ratio>x normal)`` per case; the goal
is every ratio at most 5.

* normal: a valid PAXLST of 200-person messages (the factory's), line break after each
  segment;
* released names: the same with every family name made of released terminators
  (``O?'D?'?'...``, 17 of them in an an..35 value);
* released terminators: 1 MB of ``?'?'?'...`` inside values: FTX free text of 50,000
  released terminators per segment (a segment of 100 kB, the longest read), in a message
  where FTX has no place (the structure finding is one for the run);
* repetition separators: the same PAXLST with ``ATT+2++M*M*M*M*M`` (five repetitions);
* repetition flood: 1 MB of ``*`` inside values (``ATT+2++****...``, 50,000 per segment);
* bad byte everywhere: every name with a character outside UNOA (one finding, repeated).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.factory import interchange, paxlst_of_size  # noqa: E402

from singlewindow.mig.loader import Registry, registry  # noqa: E402
from singlewindow.mig.validate import convert_checked  # noqa: E402

MB = 1024 * 1024
GOAL = 5.0


def flood(segment: str) -> bytes:
    """About 1 MB of ``segment`` repeated inside one PAXLST message."""
    n = max(1, MB // len(segment))
    head = ["UNH+M0+PAXLST:D:03B:UN'", "BGM+745'"]
    return interchange([[*head, *[segment] * n, f"UNT+{n + 3}+M0'"]])


def cases() -> dict[str, bytes]:
    normal = paxlst_of_size(1)
    return {
        "normal": normal,
        "released names": normal.replace(b"+DOE", b"+O?'D" + b"?'" * 15),
        "released terminators": flood("FTX+AAA+++" + "?'" * 50_000 + "'"),
        "repetition separators": normal.replace(b"ATT+2++M'", b"ATT+2++M*M*M*M*M'"),
        "repetition flood": flood("ATT+2++" + "*" * 100_000 + "'"),
        "bad byte everywhere": normal.replace(b"JOHN", "JÖHN".encode("latin-1")),
    }


def best(fn: Callable[[], object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    reg: Registry = registry()
    rates: dict[str, float] = {}
    for name, data in cases().items():
        _, errors, _ = convert_checked(data, reg)  # also warms: MIG compiled, caches filled
        seconds = best(lambda data=data: convert_checked(data, reg))  # type: ignore[misc]
        rates[name] = len(data) / MB / seconds
        ratio = rates["normal"] / rates[name]
        print(f"edifact cost: {name} {rates[name]:.1f} MB/s ({ratio:.1f}x normal)"
              f"  [{len(data) / MB:.2f} MB, {seconds * 1000:.0f} ms, {len(errors)} findings]")
    worst = max(rates["normal"] / r for r in rates.values())
    print(f"worst ratio {worst:.1f}x (goal: at most {GOAL:.0f}x)")


if __name__ == "__main__":
    main()
