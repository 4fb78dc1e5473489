from __future__ import annotations

import pytest

from singlewindow import origin


def test_round_trip() -> None:
    stamp = origin.Origin(origin.new_message_id(0), "msa", "acme", "10.0.0.1", "clerk", "ABC")
    assert origin.parse(stamp.header_value()) == stamp
    assert origin.parse("id=SW1;  listener=mta;\r\n party=a; peer=1.2.3.4; login=-; queue=-") \
        == origin.Origin("SW1", "mta", "a", "1.2.3.4", "", "")


@pytest.mark.parametrize("bad", ["", "id=SW1; listener=smtp; party=a; peer=p; login=-; queue=-",
                                 "id=SW1; listener=mta", "garbage"])
def test_malformed(bad: str) -> None:
    with pytest.raises(origin.OriginError):
        origin.parse(bad)


def test_ids_sort_by_time_and_differ() -> None:
    a, b = origin.new_message_id(1_000_000_000), origin.new_message_id(1_000_000_001)
    assert a < b and a.startswith("SW2001")
    assert origin.new_message_id(5) != origin.new_message_id(5)
