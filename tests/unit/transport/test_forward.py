"""Re-injection of copies (:mod:`singlewindow.transport.forward`), against an in-process
SMTP server standing in for Postfix's re-injection listener."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from tests.conftest import free_port
from tests.integration.sinks import Sink

from singlewindow.transport import translate
from singlewindow.transport.forward import Injector, stuffed

#: RFC 5321 4.5.2 on the whole copy at once, as the copy used to be stuffed.
_LEADING_DOT = re.compile(rb"(?m)^\.")

DOTTY = (b"Subject: dots\r\n\r\n.one\r\n..two\r\nthree.\r\n.\r\n\r\n.\r\n"
         b"x\r\n.last")


@pytest.mark.parametrize("cut", range(len(DOTTY) + 1))
def test_stuffing_in_pieces_is_stuffing_the_whole(cut: int) -> None:
    """Wherever a piece ends (before a line's dot, inside CRLF), the stuffed pieces join
    to the stuffed whole."""
    pieces = [DOTTY[:cut], DOTTY[cut:cut + 3], b"", DOTTY[cut + 3:]]
    assert b"".join(stuffed(pieces)) == _LEADING_DOT.sub(b"..", DOTTY)


@pytest.fixture
def sink() -> Iterator[Sink]:
    port = free_port()
    sink = Sink(port)
    sink.controller = Controller(sink, hostname="127.0.0.1", port=port,
                                 data_size_limit=64 << 20)
    sink.controller.start()
    yield sink
    sink.stop()


def test_a_streamed_copy_arrives_as_the_copy_built_whole(sink: Sink) -> None:
    """Issue 13: a multi-MB copy sent from its file, encoded and stuffed piece by piece,
    arrives byte for byte as the copy built whole did, with its SIZE announced."""
    payload = bytes(range(256)) * 20_000  # 5 MB: several encoding chunks
    head = b"Subject: big\r\nX-Dot: y\r\n\r\n"
    whole = head + base64.encodebytes(payload).replace(b"\n", b"\r\n")
    copy = translate.Copy(head, io.BytesIO(payload))
    injector = Injector("127.0.0.1", sink.port, "test")
    points: list[str] = []
    injector.send("a@b.c", "d@e.f", copy, envid=None, notify="NEVER", orcpt=None,
                  checkpoint=points.append)
    injector.send("a@b.c", "d@e.f", b".whole\r\n" + whole, envid=None, notify="NEVER",
                  orcpt=None)
    [streamed, built] = sink.received
    assert streamed.data == whole
    assert built.data == b".whole\r\n" + whole
    assert f"SIZE={len(whole)}" in streamed.mail_options
    assert points == ["during-data"]
