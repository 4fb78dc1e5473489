"""Benchmark (not a test): pydifact's bare parse versus this project's EDIFACT pipeline.

Run: ``.venv/bin/python bench/mig_bench.py`` from the repository root. On the same PAXLST
D.03B interchange it times pydifact 0.2.3 parsing it (no validation: its wheel has no
directory data) and this project's parse + envelope and structure validation + element
formats and code lists + XML conversion + XSD validation of the XML, as the transport runs
it (``validate.convert_checked``: the C fast path, the XSD checked message by message in
worker threads). For comparison, in the same run: the same work in one thread (whole
document parsed and validated after the conversion), and with the Python-only converter.
Business rules (Schematron) are timed separately, as they are not part of the comparison:
on the whole document, and within ``mig.validate`` (rules message by message, in the
XSD workers).
It reports MB/s, the ratio, and the cost at 1, 4 and 16 MB to show it is linear.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.unit.mig.factory import paxlst_of_size  # noqa: E402

from singlewindow.mig.edifact.convert import Converter  # noqa: E402
from singlewindow.mig.edifact.syntax import chunked  # noqa: E402
from singlewindow.mig.errors import Findings  # noqa: E402
from singlewindow.mig.loader import Registry, registry  # noqa: E402
from singlewindow.mig.validate import _lookup, convert_checked, validate  # noqa: E402

MB = 1024 * 1024


def pydifact_parse(data: bytes) -> int:
    from pydifact.segmentcollection import Interchange
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "segments.xml not found": it has no directory
        return sum(1 for _ in Interchange.from_str(data.decode("latin-1")).segments)


def pipeline(data: bytes, reg: Registry) -> bytes:
    """What the transport does with an EDIFACT body part, short of the business rules."""
    _, errors, xml = convert_checked(data, reg)
    assert not errors and xml is not None, errors[:3]
    return xml


def one_thread(data: bytes, reg: Registry, accelerate: bool = True) -> bytes:
    """The same checks in one thread: convert, then parse and validate the whole XML."""
    errors = Findings()
    pieces: list[str] = []
    summary = Converter(_lookup(reg), reg.service, errors, pieces.append, accelerate).run(
        chunked(data))
    assert not errors and summary.profile is not None, errors[:3]
    xml = "".join(pieces).encode()
    root = etree.fromstring(xml, etree.XMLParser(huge_tree=True))
    assert reg.types[summary.profile.name].schema.validate(root)
    return xml


def rules(xml: bytes, reg: Registry) -> None:
    mt = reg.types["PAXLST-D03B"]
    assert mt.rules is not None
    assert mt.rules.validate(etree.fromstring(xml, etree.XMLParser(huge_tree=True)))


def validated(data: bytes, reg: Registry) -> None:
    """The transport's call: the pipeline, and the business rules message by message."""
    assert validate(data, "application/edifact", reg).valid


def best(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) if runs > 1 else statistics.mean(times)


def interleaved(fns: list[Callable[[], object]], runs: int) -> list[float]:
    """Best time of each function over ``runs`` rounds that run each once, in turn."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, own in zip(fns, times, strict=True):
            gc.collect()
            start = time.perf_counter()
            fn()
            own.append(time.perf_counter() - start)
    return [min(t) for t in times]


def main() -> None:
    reg = registry()
    one = paxlst_of_size(1)
    size = len(one) / MB
    print(f"PAXLST D.03B interchange, {len(one):,} bytes ({size:.2f} MB), unique persons")
    pipeline(one, reg)  # warm: the XSD copies the worker threads use are compiled once
    # Interleaved, best of 5 each: noise on this shared machine hits every contender alike.
    t_pyd, t_own, t_one, t_py = interleaved([
        lambda: pydifact_parse(one), lambda: pipeline(one, reg), lambda: one_thread(one, reg),
        lambda: one_thread(one, reg, accelerate=False)], 5)
    xml = pipeline(one, reg)
    assert xml == one_thread(one, reg, accelerate=False)
    t_rules = best(lambda: rules(xml, reg), 3)
    t_validate = best(lambda: validated(one, reg), 3)
    print(f"pydifact 0.2.3 bare parse:             {t_pyd:6.3f} s  {size / t_pyd:6.2f} MB/s")
    print(f"singlewindow full pipeline (no rules): {t_own:6.3f} s  {size / t_own:6.2f} MB/s")
    print(f"ratio (pipeline speed / pydifact):     {t_pyd / t_own:6.2f} x")
    print(f"  the same in one thread:              {t_one:6.3f} s  {size / t_one:6.2f} MB/s"
          f"  ({t_pyd / t_one:.2f} x)")
    print(f"  one thread, Python-only converter:   {t_py:6.3f} s  {size / t_py:6.2f} MB/s"
          f"  ({t_pyd / t_py:.2f} x)")
    print(f"Schematron rules on the XML, extra:    {t_rules:6.3f} s  (whole document)")
    print(f"mig.validate, rules per message:       {t_validate:6.3f} s  {size / t_validate:6.2f}"
          " MB/s  (pipeline + rules, as the transport runs it)")
    print("\nwhere the pipeline's time goes (best of 3, each step alone):")
    pieces: list[str] = []

    def convert(accelerate: bool = True) -> None:
        pieces.clear()
        errors = Findings()
        Converter(_lookup(reg), reg.service, errors, pieces.append, accelerate).run(
            chunked(one))

    mt = reg.types["PAXLST-D03B"]
    root = etree.fromstring(xml, etree.XMLParser(huge_tree=True))
    steps: list[tuple[str, Callable[[], object]]] = [
        ("tokenize, envelope, structure, formats, codes, XML text", convert),
        ("  the same with the Python-only converter", lambda: convert(False)),
        ("join and encode the XML", lambda: "".join(pieces).encode()),
        (f"libxml2 parse of the XML ({len(xml) / MB:.1f} MB)",
         lambda: etree.fromstring(xml, etree.XMLParser(huge_tree=True))),
        ("libxml2 XSD validation of the parsed tree", lambda: mt.schema.validate(root)),
    ]
    for label, fn in steps:
        t = best(fn, 3)
        print(f"  {label:56s} {t:6.3f} s")
    print(f"  {'budget for 10x pydifact':56s} {t_pyd / 10:6.3f} s")
    print("\nlinearity of the pipeline (best of 2):")
    for mb in (1, 4, 16):
        for unique in (True, False):
            data = paxlst_of_size(mb, unique=unique)
            t = best(lambda d=data: pipeline(d, reg), 2)  # type: ignore[misc]
            label = "unique persons" if unique else "repeated persons"
            print(f"  {len(data) / MB:6.2f} MB {label:17s} {t:7.3f} s  "
                  f"{len(data) / MB / t:6.2f} MB/s")


if __name__ == "__main__":
    main()
