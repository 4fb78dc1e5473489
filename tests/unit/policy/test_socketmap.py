"""The socketmap behind Postfix's generated tables: codec and answers, no socket."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from tests.unit.parties import D, seed

from singlewindow.policy import socketmap
from singlewindow.store import snapshot

LMTP = "lmtp:unix:/run/sw/lmtp.sock"


@pytest.mark.parametrize("size", [1, 3, 4096])
def test_netstrings_at_any_read_size(size: int) -> None:
    stream = b"22:relay_recipients a@b.c,13:transport x@y,0:,"
    decoder = socketmap.Decoder()
    found: list[bytes] = []
    for start in range(0, len(stream), size):
        found += decoder.feed(stream[start:start + size])
    assert found == [b"relay_recipients a@b.c", b"transport x@y", b""]
    assert socketmap.encode("OK smtp:[h]:25") == b"14:OK smtp:[h]:25,"


@pytest.mark.parametrize("bad", [b"x:abc,", b"3:abcd", b"99999999999:", b"200000:"])
def test_not_a_netstring(bad: bytes) -> None:
    with pytest.raises(socketmap.NetstringError):
        socketmap.Decoder().feed(bad)


def test_answers_from_the_directory(conn: psycopg.Connection[Any]) -> None:
    where = snapshot.load(seed(conn))

    def ask(text: str) -> str:
        return socketmap.answer(text.encode(), where, D, LMTP)
    assert ask(f"relay_recipients ACME@{D}") == "OK OK"
    assert ask(f"relay_recipients ghost@{D}") == "NOTFOUND "
    assert ask(f"relay_recipients @{D}") == "NOTFOUND "
    assert ask(f"relay_recipients {D}") == "NOTFOUND "
    assert ask("relay_recipients edi@acme.example") == "NOTFOUND "  # not a logical one
    assert ask("transport edi@acme.example") == "OK smtp:[127.0.0.1]:2601"
    assert ask("transport clerk@bright.example") == "NOTFOUND "  # no relay: default
    assert ask(f"transport customs@{D}") == f"OK {LMTP}"
    assert ask(f"transport ghost@{D}") == "NOTFOUND "
    assert ask("transport x@y.example") == "NOTFOUND "
    assert ask("aliases x@y.example").startswith("PERM ")
