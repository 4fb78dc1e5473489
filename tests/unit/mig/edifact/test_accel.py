"""The C fast path (``_accel``) against the Python code: same XML, same errors, always.

The compiled path takes runs of plain segments and hands every doubtful one back, so for
any input the converter's output and error list must be exactly those of the Python-only
converter. Besides the samples, a seeded mutation fuzzer breaks valid interchanges in the
ways real submissions break (values too long, digits in alphabetic data, unknown codes,
missing or extra segments, release and repetition characters, foreign characters, cut or
joined segments) and compares the two on each.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from singlewindow.mig.edifact import message
from singlewindow.mig.edifact.convert import Converter
from singlewindow.mig.edifact.syntax import chunked
from singlewindow.mig.errors import Findings, MigError
from singlewindow.mig.loader import Registry
from singlewindow.mig.validate import _lookup
from tests.support.factory import iftdgn, interchange, mutate, paxlst, paxlst_message


def convert(reg: Registry, data: bytes, accelerate: bool, chunk: int = 1 << 16
            ) -> tuple[str, list[MigError]]:
    errors = Findings()
    pieces: list[str] = []
    conv = Converter(_lookup(reg), reg.service, errors, pieces.append, accelerate)
    conv.run(chunked(data, chunk))
    return "".join(pieces), errors


def same(reg: Registry, data: bytes, chunk: int = 1 << 16) -> tuple[str, list[MigError]]:
    fast = convert(reg, data, True, chunk)
    slow = convert(reg, data, False, chunk)
    assert fast[1] == slow[1], data[:400]
    assert fast[0] == slow[0], data[:400]
    return fast


def test_the_extension_is_built_and_used(reg: Registry) -> None:
    # A missing build must fail the suite, not fall back unnoticed.
    assert message._accel is not None
    profile = reg.types["PAXLST-D03B"].edifact
    assert profile is not None
    assert message.compiled(profile) is not None
    calls = 0
    real = message.MessageChecker.run

    def spy(self: message.MessageChecker, *args: object) -> tuple[int, bool]:
        nonlocal calls
        calls += 1
        return real(self, *args)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(message.MessageChecker, "run", spy)
        xml, errors = convert(reg, paxlst(5), True)
    assert calls > 0 and not errors and "<G_SG4>" in xml


@pytest.mark.parametrize("chunk", [7, 100, 1 << 16])
def test_valid_samples_give_identical_xml(reg: Registry, chunk: int) -> None:
    for data in (paxlst(3), paxlst(4, 3, "05B"), paxlst(50, 2), iftdgn()):
        xml, errors = same(reg, data, chunk)
        assert not errors and xml.startswith("<Interchange")


def test_public_samples(reg: Registry, public: Path) -> None:
    for path in sorted(public.glob("*.edi")):
        same(reg, path.read_bytes())


def test_syntax_three_and_other_separators(reg: Registry) -> None:
    msg = paxlst_message("M0", 3)
    same(reg, interchange([msg], syntax="UNOA:3", una="UNA:+.? '"))
    other = [s.replace("+", "|").replace(":", "^").replace("'", "~") for s in msg]
    data = interchange([other], una="UNA^|.?*~").replace(b"UNB+UNOA:4+SENDER:ZZZ+NLSW:ZZZ+"
                                                         b"240101:1200+REF1'",
                                                         b"UNB|UNOA^4|SENDER^ZZZ|NLSW^ZZZ|"
                                                         b"240101^1200|REF1~")
    data = data.replace(b"UNZ+1+REF1'", b"UNZ|1|REF1~")
    xml, errors = same(reg, data)
    assert "<D_3036>DOE0</D_3036>" in xml
    assert not errors, errors


@pytest.mark.parametrize("seed", range(4))
def test_mutated_interchanges_give_identical_results(reg: Registry, seed: int) -> None:
    rnd = random.Random(seed)
    bases = [paxlst_message("M0", 3), paxlst_message("M0", 2, "05B")]
    dg = iftdgn().decode("latin-1")
    body = dg[dg.index("UNH"):dg.index("UNZ")]
    bases.append([s + "'" for s in body.replace("\n", "").split("'") if s])
    found_errors = 0
    for _ in range(150):
        base = rnd.choice(bases)
        head, tail = base[:1], base[-1:]  # keep UNH and UNT: the envelope is not the point
        segs = head + mutate(rnd, base[1:-1]) + tail
        syntax = rnd.choice(["UNOA:4", "UNOC:4", "UNOA:3", "UNOY:4"])
        una = "UNA:+.? '" if syntax.endswith(":3") else "UNA:+.?*'"
        data = interchange([segs], syntax=syntax, una=una, sep=rnd.choice(["\n", "", "\r\n"]))
        if "UNOC" in syntax:
            data = data.replace(b"JOHN", "JÖHN".encode("latin-1"))
        if "UNOY" in syntax:  # UTF-8, with characters beyond Latin-1 here and there
            data = data.decode("latin-1").replace("~W~", "Ω").replace("JOHN", "JÖHN")
            data = data.encode("utf-8")
            if rnd.random() < 0.3:
                data = data.replace(b"ALBERT", "ΑΛΒΕΡΤ".encode())
        _, errors = same(reg, data, rnd.choice([13, 4096, 1 << 16]))
        found_errors += bool(errors)
    assert found_errors > 50  # the fuzzer does reach the error paths


def test_errors_after_a_long_valid_run_keep_their_place(reg: Registry) -> None:
    msg = paxlst_message("M0", 40)
    assert msg[304] == "NAT+2+NLD'"  # person 30's nationality, 305th segment of the message
    msg[304] = "NAT+2+NLDX'"
    _, errors = same(reg, interchange([msg]))
    assert [(e.place.segment, e.place.tag, e.place.interchange_segment) for e in errors] == [
        (305, "NAT", 306)]


@pytest.mark.parametrize("flashpoint", ["-020", "020", "20", "2", "-2", "1234", "-02.5", "02,",
                                        "A20", "", "-", ".5", "0000"])
@pytest.mark.parametrize("un_number", ["1090", "109", "10900", "10A0", ""])
def test_numeric_and_fixed_length_formats(reg: Registry, flashpoint: str, un_number: str
                                          ) -> None:
    # DGS C223 7106 is n3 (fixed: sign and decimal mark do not count), 7124 is n4.
    data = iftdgn().replace(b"DGS+IMD+3+1090+-020:CEL", f"DGS+IMD+3+{un_number}+{flashpoint}"
                                                        ":CEL".encode())
    _, errors = same(reg, data)
    ok_flash = flashpoint in ("-020", "020", "-02.5", "")
    assert (not errors) == (ok_flash and un_number in ("1090", "")), errors  # both conditional


_RELEASED = ["O?'BRIEN", "A?+B", "A?:B", "A??B", "??", "?*", "A?*B*C", "?'?'?'?'", "?A", "X?",
             "A?''", "A*B", "*", "**", "A:B*C:D", "?:?:?:"]


@pytest.mark.parametrize("value", _RELEASED)
def test_release_and_repetition_characters_give_identical_results(reg: Registry,
                                                                  value: str) -> None:
    msg = paxlst_message("M0", 2)
    msg[9] = msg[9].replace("DOE0", value)  # a family name (C080 3036)
    msg[10] = f"ATT+2++{value}'"  # C956 repeats up to 5 times
    msg[14] = f"RFF+AVF:{value}'"  # a simple value in a composite
    same(reg, interchange([msg]))
    same(reg, interchange([msg], sep="\r\n"), 7)


def test_valid_released_and_repeated_values_stay_on_the_c_path(reg: Registry) -> None:
    msg = paxlst_message("M0", 50)
    msg = [s.replace("DOE", "O?'D?+O?:E??") for s in msg]
    msg = [s.replace("ATT+2++M'", "ATT+2++M*F*M") + ("'" if s.startswith("ATT") else "")
           for s in msg]
    calls = 0
    real = message.SegmentWriter._write

    def spy(self: message.SegmentWriter, *args: object) -> None:
        nonlocal calls
        calls += 1
        real(self, *args)  # type: ignore[arg-type]

    data = interchange([msg])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(message.SegmentWriter, "_write", spy)
        xml, errors = convert(reg, data, True)
        assert calls == 0  # the C path wrote them all
        assert (xml, errors) == convert(reg, data, False)
        assert calls > 50  # where the Python path writes each NAD (and one ATT) exactly
    assert not errors and "<D_3036>O'D+O:E?0</D_3036>" in xml
    assert xml.count("<C_C956>") == 150
