from __future__ import annotations

import stat
from pathlib import Path

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


# --- the MAC (issue 12: only the milter's stamp is trusted) ----------------------------

KEY = b"a" * 64
STAMP = origin.Origin("SW20261129120000000ABCDEF01", "mta", "acme", "10.1.0.5", "",
                      "4XyZ1")


def test_signed_stamp_verifies_with_its_key() -> None:
    assert origin.verify(STAMP.signed(KEY), KEY) == STAMP
    # Folded by a later hop, it still verifies.
    assert origin.verify(STAMP.signed(KEY).replace("; mac=", ";\r\n\tmac="), KEY) == STAMP


def test_forger_without_the_key_is_caught() -> None:
    """The attacker copies the format, names customs, and signs with a key of their own."""
    forged = origin.Origin("SW20261129120000000ABCDEF01", "mta", "customs", "10.9.0.1", "",
                           "4XyZ1").signed(b"b" * 64)
    with pytest.raises(origin.OriginError, match="wrong MAC"):
        origin.verify(forged, KEY)


def test_unsigned_stamp_is_refused() -> None:
    with pytest.raises(origin.OriginError, match="no MAC"):
        origin.verify(STAMP.header_value(), KEY)


@pytest.mark.parametrize("field, value", [
    ("id", "SW20261129120000000ABCDEF02"), ("party", "customs"), ("peer", "10.1.0.6"),
    ("queue", "4XyZ2"), ("listener", "msa"), ("login", "clerk")])
def test_every_field_is_covered(field: str, value: str) -> None:
    """A genuine stamp with one field changed (a replay under another id or party)."""
    signed = STAMP.signed(KEY)
    old = {"id": STAMP.message_id, "party": "acme", "peer": "10.1.0.5", "queue": "4XyZ1",
           "listener": "mta", "login": "-"}[field]
    tampered = signed.replace(f"{field}={old};", f"{field}={value};")
    assert tampered != signed
    with pytest.raises(origin.OriginError, match="wrong MAC"):
        origin.verify(tampered, KEY)


def test_a_field_given_twice_is_malformed() -> None:
    """A second party= after the signed ones must not override what the MAC covered."""
    with pytest.raises(origin.OriginError, match="party twice"):
        origin.verify(STAMP.signed(KEY) + "; party=customs", KEY)


def test_mac_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = origin.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)
    monkeypatch.setattr(origin.hmac, "compare_digest", spy)
    origin.verify(STAMP.signed(KEY), KEY)
    assert len(calls) == 1


def test_key_file_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "stamp.key"
    assert origin.create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = origin.load_key(path)
    assert len(key) == 2 * origin.KEY_BYTES
    assert not origin.create_key(path)  # kept: stamps in the queue still verify
    assert origin.load_key(path) == key


def test_missing_or_short_key_stops_the_daemon(tmp_path: Path) -> None:
    with pytest.raises(origin.StampKeyError, match="cannot read"):
        origin.load_key(tmp_path / "none")
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(origin.StampKeyError, match="shorter"):
        origin.load_key(tmp_path / "short")
