"""Benchmark (not a test): pydifact's bare parse versus this project's EDIFACT pipeline.

Run: ``.venv/bin/python bench/mig_bench.py`` from the repository root (pydifact: the
``bench`` extra, which ``scripts/install`` installs with ``test``). On the same PAXLST
D.03B interchange it times pydifact 0.2.3 parsing it (no validation: its wheel has no
directory data) and this project's parse + envelope and structure validation + element
formats and code lists + XML conversion + XSD validation of the XML, as the transport runs
it (``validate.convert_checked``: the C fast path, the XSD checked message by message in
worker threads). For comparison, in the same run: the same work in one thread (whole
document parsed and validated after the conversion), and with the Python-only converter.
Then the transport's whole path with the business rules (``mig.validate``, as
``transport/submission.py``'s ``validated`` calls it: the pipeline, and the Schematron rules
message by message in the XSD workers, compiled to the lean XSLT of ``mig/rules.py``),
timed in the same interleaved rounds: ``ratio with business rules``. The rules alone, the
lean XSLT against lxml's ISO skeleton, are timed on the whole document and message by
message. It reports MB/s, the ratios, CPU seconds per run (the machine is shared: CPU
time is steadier than wall time), and the cost at 1, 4 and 16 MB with and without the
rules to show it is linear.
"""

from __future__ import annotations

import gc
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.factory import paxlst_of_size  # noqa: E402

from singlewindow.mig import xmlcheck  # noqa: E402
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
    """What the transport does with an EDIFACT body part, short of the business rules
    (since issue 13 the messages of a type with a generated XSD are not parsed for it)."""
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


def rules(xml: bytes, reg: Registry, iso: bool = False) -> None:
    """The business rules on the whole document (parse included): the lean XSLT, or
    lxml's ISO skeleton."""
    mt = reg.types["PAXLST-D03B"]
    root = etree.fromstring(xml, etree.XMLParser(huge_tree=True))
    assert xmlcheck.rule_findings(mt, root, iso=iso) == []


def validated(data: bytes, reg: Registry) -> None:
    """The transport's call: the pipeline, and the business rules message by message."""
    assert validate(data, "application/edifact", reg).valid


def with_message_xsd(reg: Registry) -> Registry:
    """``reg`` with every type's XSD checked on each converted message too, as before
    issue 13 (a generated XSD is no longer checked on the converter's own output)."""
    types = {name: replace(mt, schema_generated=False) for name, mt in reg.types.items()}
    return Registry(types, {k: types[mt.name] for k, mt in reg.by_unh.items()},
                    {k: types[mt.name] for k, mt in reg.by_xml.items()}, reg.service)


def best_with_cpu(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Least wall time and least CPU time (all threads) of ``runs`` runs."""
    walls, cpus = [], []
    for _ in range(runs):
        gc.collect()
        before = cpu_seconds()
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_seconds() - before)
    return min(walls), min(cpus)


def best(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) if runs > 1 else statistics.mean(times)


def cpu_seconds() -> float:
    """CPU time of this process so far, all its threads, user and system."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


CPU: dict[int, float] = {}  # the function's index in the last interleaved(): least CPU


def interleaved(fns: list[Callable[[], object]], runs: int) -> list[float]:
    """Best time of each function over ``runs`` rounds that run each once, in turn;
    the least CPU time of each run goes to :data:`CPU`."""
    times: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, own, used in zip(fns, times, cpu, strict=True):
            gc.collect()
            before = cpu_seconds()
            start = time.perf_counter()
            fn()
            own.append(time.perf_counter() - start)
            used.append(cpu_seconds() - before)
    CPU.clear()
    CPU.update({n: min(used) for n, used in enumerate(cpu)})
    return [min(t) for t in times]


def steps(one: bytes, xml: bytes, reg: Registry) -> None:
    """Where the pipeline's time goes: each step alone, best of 3."""
    print("\nwhere the pipeline's time goes (best of 3, each step alone):")
    pieces: list[str] = []

    def convert(accelerate: bool = True) -> None:
        pieces.clear()
        errors = Findings()
        Converter(_lookup(reg), reg.service, errors, pieces.append, accelerate).run(
            chunked(one))

    mt = reg.types["PAXLST-D03B"]
    root = etree.fromstring(xml, etree.XMLParser(huge_tree=True))
    messages = [etree.fromstring(etree.tostring(m)) for m in root
                if etree.QName(m).localname.startswith("M_")]

    def each(check: Callable[[etree._Element], object]) -> Callable[[], None]:
        def run() -> None:
            for message in messages:
                check(message)
        return run
    timed: list[tuple[str, Callable[[], object]]] = [
        ("tokenize, envelope, structure, formats, codes, XML text", convert),
        ("  the same with the Python-only converter", lambda: convert(False)),
        ("join and encode the XML", lambda: "".join(pieces).encode()),
        (f"libxml2 parse of the XML ({len(xml) / MB:.1f} MB)",
         lambda: etree.fromstring(xml, etree.XMLParser(huge_tree=True))),
        ("libxml2 XSD validation of the parsed tree", lambda: mt.schema.validate(root)),
        (f"business rules, lean XSLT, {len(messages)} messages one by one",
         each(lambda m: xmlcheck.rule_findings(mt, m))),
        ("  the same with lxml's ISO skeleton (before)",
         each(lambda m: xmlcheck.rule_findings(mt, m, iso=True))),
    ]
    for label, fn in timed:
        t = best(fn, 3)
        print(f"  {label:56s} {t:6.3f} s")


def linearity(reg: Registry) -> None:
    """The pipeline, and with the business rules, at 1, 4 and 16 MB."""
    print("\nlinearity (best of 2; CPU seconds per MB, all threads): the pipeline, and with"
          " the business rules:")
    for mb in (1, 4, 16):
        for unique in (True, False):
            data = paxlst_of_size(mb, unique=unique)
            size = len(data) / MB
            t, c = best_with_cpu(lambda d=data: pipeline(d, reg), 2)  # type: ignore[misc]
            t_ruled, c_ruled = best_with_cpu(
                lambda d=data: validated(d, reg), 2)  # type: ignore[misc]
            label = "unique persons" if unique else "repeated persons"
            print(f"  {size:6.2f} MB {label:17s} {t:7.3f} s {size / t:6.2f} MB/s"
                  f" (CPU {c / size:.3f} s/MB)   with rules {t_ruled:7.3f} s"
                  f" {size / t_ruled:6.2f} MB/s (CPU {c_ruled / size:.3f} s/MB)")


def main() -> None:
    reg = registry()
    one = paxlst_of_size(1)
    size = len(one) / MB
    print(f"PAXLST D.03B interchange, {len(one):,} bytes ({size:.2f} MB), unique persons")
    pipeline(one, reg)  # warm: the XSD copies the worker threads use are compiled once
    # Interleaved, best of 5 each: noise on this shared machine hits every contender alike.
    validated(one, reg)  # and the rules' transforms
    checked = with_message_xsd(reg)
    validated(one, checked)
    t_pyd, t_own, t_validate, t_one, t_py, t_xsd, t_xsd_rules = interleaved([
        lambda: pydifact_parse(one), lambda: pipeline(one, reg), lambda: validated(one, reg),
        lambda: one_thread(one, reg), lambda: one_thread(one, reg, accelerate=False),
        lambda: pipeline(one, checked), lambda: validated(one, checked)], 5)
    cpu = dict(CPU)
    xml = pipeline(one, reg)
    assert xml == one_thread(one, reg, accelerate=False)
    t_rules = best(lambda: rules(xml, reg), 3)
    t_iso = best(lambda: rules(xml, reg, iso=True), 3)
    print(f"pydifact 0.2.3 bare parse:             {t_pyd:6.3f} s  {size / t_pyd:6.2f} MB/s"
          f"  (CPU {cpu[0]:.3f} s)")
    print(f"singlewindow full pipeline (no rules): {t_own:6.3f} s  {size / t_own:6.2f} MB/s"
          f"  (CPU {cpu[1]:.3f} s)")
    print(f"ratio (pipeline speed / pydifact):     {t_pyd / t_own:6.2f} x")
    print(f"mig.validate, rules per message:       {t_validate:6.3f} s  {size / t_validate:6.2f}"
          f" MB/s  (CPU {cpu[2]:.3f} s; pipeline + rules, as the transport runs it)")
    print(f"ratio with business rules:             {t_pyd / t_validate:6.2f} x")
    print(f"  CPU ratio with business rules:       {cpu[0] / cpu[2]:6.2f} x  (CPU seconds,"
          " all threads)")
    print(f"  as before, the XSD checked on each converted message too: pipeline {t_xsd:.3f} s"
          f" ({t_pyd / t_xsd:.2f} x, CPU {cpu[5]:.3f} s), with rules {t_xsd_rules:.3f} s"
          f" ({t_pyd / t_xsd_rules:.2f} x, CPU {cpu[6]:.3f} s)")
    print(f"  the same in one thread:              {t_one:6.3f} s  {size / t_one:6.2f} MB/s"
          f"  ({t_pyd / t_one:.2f} x)")
    print(f"  one thread, Python-only converter:   {t_py:6.3f} s  {size / t_py:6.2f} MB/s"
          f"  ({t_pyd / t_py:.2f} x)")
    print(f"Schematron rules on the XML, extra:    {t_rules:6.3f} s  (whole document, parse"
          f" included; lxml's ISO skeleton: {t_iso:.3f} s)")
    steps(one, xml, reg)
    print(f"  {'budget for 10x pydifact':56s} {t_pyd / 10:6.3f} s")
    linearity(reg)


if __name__ == "__main__":
    main()
