"""EDIFACT -> XML -> EDIFACT gives the same segments."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from singlewindow.mig.edifact.fromxml import to_edifact
from singlewindow.mig.edifact.syntax import chunked, iter_segments
from singlewindow.mig.loader import Registry
from singlewindow.mig.validate import validate
from tests.support.factory import iftdgn, paxlst


def segments(data: bytes) -> list[tuple[str, object]]:
    out = []
    for s in iter_segments(chunked(data), []):
        # Trailing empty positions carry no data (ISO 9735-1 section 9).
        elements = [[[c for c in r] for r in e] for e in s.elements]
        while elements and elements[-1] == [[""]]:
            elements.pop()
        out.append((s.tag, elements))
    return out


def round_trip(data: bytes, reg: Registry) -> bytes:
    result = validate(data, None, reg)
    assert result.xml is not None, result.errors
    profile = reg.types[str(result.message_type)].edifact
    assert profile is not None
    back = to_edifact(etree.fromstring(result.xml), profile.segments).encode("latin-1")
    assert validate(back, None, reg).valid
    return back


@pytest.mark.parametrize("make", [lambda: paxlst(3), lambda: paxlst(2, 2, "05B"), iftdgn])
def test_round_trip_gives_the_same_segments(reg: Registry, make: object) -> None:
    data = make()  # type: ignore[operator]
    assert segments(round_trip(data, reg)) == segments(data)


def test_round_trip_of_the_public_paxlst(public: Path, reg: Registry) -> None:
    data = (public / "paxlst-d03b-smooks-message_01.edi").read_bytes()
    back = round_trip(data, reg)
    assert segments(back) == segments(data)
    assert back.split(b"'", 1)[1] == data  # after the UNA the bytes are identical
