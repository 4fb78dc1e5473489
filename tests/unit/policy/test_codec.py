from __future__ import annotations

from pathlib import Path

import pytest

from singlewindow.policy import codec

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "policy"


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("name", ["mta-request.bin", "msa-request.bin"])
@pytest.mark.parametrize("size", [1, 2, 7, 64, 4096])
def test_real_postfix_request_decodes_at_any_read_size(name: str, size: int) -> None:
    raw = (GOLDEN / name).read_bytes()
    decoder = codec.Decoder()
    requests = [r for piece in chunks(raw, size) for r in decoder.feed(piece)]
    assert len(requests) == 1
    attrs = requests[0]
    assert attrs["request"] == "smtpd_access_policy"
    assert attrs["protocol_state"] == "RCPT"
    assert attrs["policy_context"] == name.split("-")[0]
    assert attrs["recipient"] == "customs@sw.test"
    assert attrs["queue_id"] == ""
    assert not decoder.pending


def test_two_requests_in_one_read() -> None:
    raw = (GOLDEN / "mta-request.bin").read_bytes()
    requests = codec.Decoder().feed(raw + raw)
    assert len(requests) == 2


def test_value_may_contain_equals_sign() -> None:
    [attrs] = codec.Decoder().feed(b"ccert_subject=CN=a=b\n\n")
    assert attrs["ccert_subject"] == "CN=a=b"


def test_line_without_equals_is_a_protocol_error() -> None:
    with pytest.raises(codec.ProtocolError):
        codec.Decoder().feed(b"garbage\n\n")


def test_endless_request_is_refused() -> None:
    decoder = codec.Decoder()
    with pytest.raises(codec.ProtocolError):
        for _ in range(codec.MAX_REQUEST_BYTES // 10 + 2):
            decoder.feed(b"x=123456789\n"[:10] + b"\n")
    with pytest.raises(codec.ProtocolError):
        codec.Decoder().feed(b"x" * (codec.MAX_REQUEST_BYTES + 1))


def test_half_request_is_pending() -> None:
    decoder = codec.Decoder()
    assert decoder.feed(b"request=smtpd_access_policy\nsender=a@b") == []
    assert decoder.pending


def test_reply_encoding() -> None:
    assert codec.encode_reply("DUNNO") == b"action=DUNNO\n\n"
    assert codec.encode_reply("554 5.7.1 no") == b"action=554 5.7.1 no\n\n"
    with pytest.raises(ValueError):
        codec.encode_reply("DUNNO\naction=OK")
