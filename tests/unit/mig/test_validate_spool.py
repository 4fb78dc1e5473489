"""``validate(..., spool=N)`` (issue 13): the XML to forward in a temporary file, memory
below N bytes and disk above, the same bytes as the XML validate returns in memory."""

from __future__ import annotations

import pytest

from singlewindow import mig
from tests.support import factory

PAXLST = factory.paxlst_of_size(0.3)


@pytest.mark.parametrize("spool", [1 << 30, 4096])
def test_the_spooled_xml_is_the_xml_held_in_memory(spool: int) -> None:
    held = mig.validate(PAXLST, "application/edifact")
    spooled = mig.validate(PAXLST, "application/edifact", spool=spool)
    assert held.valid and spooled.valid and held.xml
    assert spooled.xml is None and spooled.xml_file is not None
    assert spooled.xml_file.read() == held.xml
    assert spooled.xml_file._rolled == (spool < len(held.xml))
    spooled.xml_file.close()


def test_no_spooled_xml_when_the_interchange_has_errors() -> None:
    broken = PAXLST.replace(b"UNT+", b"UNT+9", 1)
    result = mig.validate(broken, "application/edifact", spool=4096)
    assert result.errors and result.xml is None and result.xml_file is None


def test_the_limit_holds_with_a_spool() -> None:
    with pytest.raises(mig.TooLarge):
        mig.validate(PAXLST, "application/edifact", limit=100_000, spool=4096)


def test_an_xml_submission_is_forwarded_from_its_payload() -> None:
    xml = mig.validate(PAXLST, "application/edifact").xml
    assert xml is not None
    result = mig.validate(xml, "application/xml", spool=4096)
    assert result.xml_file is None
