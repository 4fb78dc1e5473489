"""Re-injection of copies (:mod:`singlewindow.transport.forward`), against an in-process
SMTP server standing in for Postfix's re-injection listener."""

from __future__ import annotations

import base64
import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from singlewindow.transport import translate
from singlewindow.transport.forward import InjectError, Injector, Refused, stuffed
from tests.support.local import free_port
from tests.support.sinks import Sink

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


class Recorder:
    """A scripted SMTP server standing in for Postfix's re-injection listener that records
    the byte stream as it arrives, one entry per read (a write of the client's, when the
    client waits between its writes), and the commands in order."""

    def __init__(self, *, pipelining: bool, refuse_rcpt: str | None = None,
                 refuse_data_end: str | None = None, hang_up_after: int = 0,
                 hang_up_with: bytes = b"") -> None:
        self.pipelining = pipelining
        self.refuse_rcpt = refuse_rcpt  # e.g. "550 5.1.1 no such user"
        self.refuse_data_end = refuse_data_end
        self.hang_up_after = hang_up_after  # close a session after that many messages
        self.hang_up_with = hang_up_with  # what to say first, e.g. a 421
        self.reads: list[bytes] = []
        self.commands: list[str] = []
        self.messages: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        conn.sendall(b"220 recorder ESMTP\r\n")
        buffer, in_data, taken, recipients, stored = b"", False, False, 0, 0
        while True:
            chunk = conn.recv(1 << 20)
            if not chunk:
                return
            self.reads.append(chunk)
            buffer += chunk
            replies = []
            while True:
                if in_data:
                    end = buffer.find(b"\r\n.\r\n")
                    if end < 0:
                        break
                    self.messages.append(buffer[:end + 2])
                    buffer, in_data = buffer[end + 5:], False
                    taken, recipients = False, 0
                    replies.append(self.refuse_data_end or "250 2.0.0 Ok: queued as Q1")
                    stored += 1
                    if stored == self.hang_up_after:
                        conn.sendall("".join(r + "\r\n" for r in replies).encode()
                                     + self.hang_up_with)
                        return
                    continue
                line, sep, rest = buffer.partition(b"\r\n")
                if not sep:
                    break
                buffer = rest
                verb = line.split(b" ")[0].split(b":")[0].upper().decode()
                self.commands.append(verb)
                if verb == "EHLO":
                    extensions = ["SIZE 100000000", "DSN", "8BITMIME"]
                    if self.pipelining:
                        extensions.append("PIPELINING")
                    replies.append("\r\n".join(
                        ["250-recorder", *(f"250-{e}" for e in extensions[:-1]),
                         f"250 {extensions[-1]}"]))
                elif verb == "MAIL":
                    taken = True
                    replies.append("250 2.1.0 Ok")
                elif verb == "RCPT" and not taken:
                    replies.append("503 5.5.1 Error: need MAIL command")
                elif verb == "RCPT" and self.refuse_rcpt:
                    replies.append(self.refuse_rcpt)
                elif verb == "RCPT":
                    recipients += 1
                    replies.append("250 2.1.5 Ok")
                elif verb == "DATA" and not recipients:
                    replies.append("554 5.5.1 Error: no valid recipients")
                elif verb == "DATA":
                    in_data = True
                    replies.append("354 End data with <CR><LF>.<CR><LF>")
                elif verb in ("RSET", "NOOP"):
                    taken, recipients = False, 0
                    replies.append("250 2.0.0 Ok")
                elif verb == "QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    replies.append("502 5.5.2 Error: command not recognized")
            if replies:
                conn.sendall("".join(r + "\r\n" for r in replies).encode())

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def recorders() -> Iterator[list[Recorder]]:
    made: list[Recorder] = []
    yield made
    for recorder in made:
        recorder.close()


def _recorder(made: list[Recorder], **options: Any) -> Recorder:
    recorder = Recorder(**options)
    made.append(recorder)
    return recorder


def _send(injector: Injector, rcpt: str = "d@e.f", data: bytes = b"Subject: x\r\n\r\nhi\r\n"
          ) -> str:
    return injector.send("a@b.c", rcpt, data, envid="E1", notify="SUCCESS,FAILURE",
                         orcpt="d@e.f")


def test_pipelining_sends_mail_rcpt_and_data_in_one_write(recorders: list[Recorder]
                                                         ) -> None:
    """Issue 13: MAIL (with its SIZE and DSN parameters), RCPT and DATA arrive in one read
    when PIPELINING is offered, and each later copy on the kept connection goes without a
    NOOP, an RSET or an EHLO before it."""
    recorder = _recorder(recorders, pipelining=True)
    injector = Injector("127.0.0.1", recorder.port, "test")
    assert _send(injector) == "Q1"
    assert _send(injector) == "Q1"
    [batch] = [read for read in recorder.reads if read.startswith(b"MAIL")][:1]
    assert batch == (b"MAIL FROM:<a@b.c> RET=HDRS ENVID=E1 SIZE=18\r\n"
                     b"RCPT TO:<d@e.f> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;d@e.f\r\n"
                     b"DATA\r\n")
    assert recorder.commands == ["EHLO", "MAIL", "RCPT", "DATA", "MAIL", "RCPT", "DATA"]
    assert recorder.messages == [b"Subject: x\r\n\r\nhi\r\n"] * 2
    assert recorder.connections == 1


def test_without_pipelining_each_command_waits_for_its_reply(recorders: list[Recorder]
                                                             ) -> None:
    """RFC 2920: a server that does not offer PIPELINING gets one command at a time."""
    recorder = _recorder(recorders, pipelining=False)
    injector = Injector("127.0.0.1", recorder.port, "test")
    assert _send(injector) == "Q1"
    starts = [read.split(b" ")[0].split(b":")[0].upper() for read in recorder.reads]
    assert starts[1:4] == [b"MAIL", b"RCPT", b"DATA\r\n"]
    assert all(read.count(b"\r\n") == 1 for read in recorder.reads[:4])
    assert recorder.messages == [b"Subject: x\r\n\r\nhi\r\n"]


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_refused_rcpt_is_refused_and_the_connection_serves_the_next_copy(
        recorders: list[Recorder], pipelining: bool) -> None:
    """A 5xx to RCPT in a pipelined batch is the same Refused as before (with Postfix's
    reply); the transaction is reset, and the next copy goes over the same connection."""
    recorder = _recorder(recorders, pipelining=pipelining,
                         refuse_rcpt="550 5.1.1 <d@e.f>: no such user")
    injector = Injector("127.0.0.1", recorder.port, "test")
    with pytest.raises(Refused) as refused:
        _send(injector)
    assert refused.value.reply == "550 5.1.1 <d@e.f>: no such user"
    assert str(refused.value).startswith("RCPT TO refused")
    recorder.refuse_rcpt = None
    assert _send(injector) == "Q1"
    assert recorder.connections == 1
    data = ["DATA"] if pipelining else []
    assert recorder.commands == ["EHLO", "MAIL", "RCPT", *data, "RSET",
                                 "MAIL", "RCPT", "DATA"]
    assert recorder.messages == [b"Subject: x\r\n\r\nhi\r\n"]


def test_a_4xx_rcpt_defers_and_the_connection_serves_the_next_copy(
        recorders: list[Recorder]) -> None:
    recorder = _recorder(recorders, pipelining=True,
                         refuse_rcpt="450 4.2.0 <d@e.f>: try later")
    injector = Injector("127.0.0.1", recorder.port, "test")
    with pytest.raises(InjectError) as deferred:
        _send(injector)
    assert "450 4.2.0" in str(deferred.value) and not deferred.value.uncertain
    recorder.refuse_rcpt = None
    assert _send(injector) == "Q1"
    assert recorder.connections == 1


def test_a_refusal_at_the_end_of_data_leaves_the_connection_usable(
        recorders: list[Recorder]) -> None:
    recorder = _recorder(recorders, pipelining=True,
                         refuse_data_end="552 5.3.4 Message size exceeds fixed limit")
    injector = Injector("127.0.0.1", recorder.port, "test")
    with pytest.raises(Refused) as refused:
        _send(injector)
    assert refused.value.reply == "552 5.3.4 Message size exceeds fixed limit"
    recorder.refuse_data_end = None
    assert _send(injector) == "Q1"
    assert recorder.connections == 1
    assert "RSET" not in recorder.commands


@pytest.mark.parametrize("farewell", [b"421 4.4.2 recorder Error: timeout exceeded\r\n",
                                      b""])
def test_a_kept_connection_the_server_closed_is_opened_anew_once(
        recorders: list[Recorder], farewell: bytes) -> None:
    """Postfix ends an idle session (with a 421, or without a word): the next copy finds
    out at its first reply, and goes over a new connection."""
    recorder = _recorder(recorders, pipelining=True, hang_up_after=1,
                         hang_up_with=farewell)
    injector = Injector("127.0.0.1", recorder.port, "test")
    assert _send(injector) == "Q1"
    time.sleep(0.2)  # the session is closed before the next copy (not a timing assert)
    assert _send(injector, data=b"Subject: y\r\n\r\nagain\r\n") == "Q1"
    assert recorder.connections == 2
    assert recorder.messages == [b"Subject: x\r\n\r\nhi\r\n",
                                 b"Subject: y\r\n\r\nagain\r\n"]


def test_a_streamed_copy_pipelined_arrives_whole(recorders: list[Recorder]) -> None:
    """The streamed Copy over a pipelining server: the copy arrives as built whole, the
    during-data checkpoint fires once, and the end of DATA comes with the last data."""
    recorder = _recorder(recorders, pipelining=True)
    payload = bytes(range(256)) * 4_000
    head = b"Subject: big\r\n\r\n"
    whole = head + base64.encodebytes(payload).replace(b"\n", b"\r\n")
    points: list[str] = []
    injector = Injector("127.0.0.1", recorder.port, "test")
    injector.send("a@b.c", "d@e.f", translate.Copy(head, io.BytesIO(payload)), envid=None,
                  notify="NEVER", orcpt=None, checkpoint=points.append)
    assert recorder.messages == [whole]
    assert points == ["during-data"]


def test_a_connection_is_renewed_after_some_refusals(recorders: list[Recorder]) -> None:
    """Postfix slows its replies once a session has made smtpd_soft_error_limit (10)
    errors, and a pipelined refusal is two or three: after three refused copies the
    connection is closed rather than reset, and the next copy opens a new one."""
    recorder = _recorder(recorders, pipelining=True,
                         refuse_rcpt="550 5.1.1 <d@e.f>: no such user")
    injector = Injector("127.0.0.1", recorder.port, "test")
    for _ in range(4):
        with pytest.raises(Refused):
            _send(injector)
    recorder.refuse_rcpt = None
    assert _send(injector) == "Q1"
    assert recorder.connections == 2
    assert recorder.commands.count("RSET") == 3  # the 1st, 2nd and 4th refusal
