"""The LMTP server, driven over a real unix socket by the standard library's client."""

from __future__ import annotations

import asyncio
import gc
import shutil
import smtplib
import socket
import stat
import tempfile
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from singlewindow import replies
from singlewindow.replies import Reply
from singlewindow.transport.lmtp import Deliver, LmtpServer, Transaction, reply_line

T = TypeVar("T")

MESSAGE = (
    b"From: company@sw.test\r\nTo: agency@sw.test\r\nSubject: test\r\n\r\n"
    b"<a/>\r\n.a line that smtplib dot-stuffs\r\n"
)


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # AF_UNIX paths are limited to about 100 bytes, so not under pytest's deep tmp_path.
    directory = tempfile.mkdtemp(dir="/tmp", prefix="sw-")
    try:
        yield Path(directory) / "lmtp"
    finally:
        shutil.rmtree(directory)


def serve(path: Path, deliver: Deliver, client: Callable[[str], T], **options: Any) -> T:
    """Run the server on ``path`` and the blocking ``client`` against it in a thread."""

    async def main() -> T:
        async with LmtpServer(path, deliver, **options):
            return await asyncio.to_thread(client, str(path))

    return asyncio.run(main())


def transact(
    path: str, recipients: list[str], message: bytes = MESSAGE, sender: str = "company@sw.test"
) -> list[tuple[int, bytes]]:
    """One LMTP transaction; returns the reply for each recipient after DATA.

    smtplib's ``data()`` reads only the first reply; RFC 2033 4.2 sends one per accepted
    recipient, so the rest are read with ``getreply()``.
    """
    with smtplib.LMTP(path, timeout=10) as client:
        assert client.ehlo()[0] == 250  # smtplib.LMTP sends LHLO
        assert client.mail(sender)[0] == 250
        for rcpt in recipients:
            assert client.rcpt(rcpt)[0] == 250
        first = client.data(message)
        return [first] + [client.getreply() for _ in recipients[1:]]


class Recorder:
    """A ``deliver`` that records its calls and answers from a table."""

    def __init__(self, answers: dict[str, Reply | Exception | object]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, bytes, Transaction]] = []

    async def __call__(
        self, mail_from: str, rcpt: str, raw: bytes, transaction: Transaction
    ) -> Reply:
        self.calls.append((mail_from, rcpt, raw, transaction))
        answer = self.answers[rcpt]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]  # tests also feed non-replies on purpose


UNSUPPORTED = replies.UNSUPPORTED_CONTENT_TYPE.with_text("Unsupported Content-Type: image/png")


def test_two_recipients_get_their_own_status(socket_path: Path) -> None:
    deliver = Recorder({"a@sw.test": replies.DELIVERED, "b@sw.test": UNSUPPORTED})
    answers = serve(socket_path, deliver, lambda p: transact(p, ["a@sw.test", "b@sw.test"]))
    assert answers == [
        (250, b"2.0.0 Delivered to Single Window"),
        (554, b"5.6.1 Unsupported Content-Type: image/png"),
    ]
    assert [call[1] for call in deliver.calls] == ["a@sw.test", "b@sw.test"]
    mail_from, _, raw, transaction = deliver.calls[0]
    assert mail_from == "company@sw.test"
    assert raw == MESSAGE  # smtplib dot-stuffed the ".a" line; the server undid it
    assert transaction.raw is raw
    assert transaction.recipients == ("a@sw.test", "b@sw.test")
    # One transaction object for all recipients, so they can share its state.
    assert deliver.calls[1][3] is transaction


def test_an_exception_defers_only_that_recipient(socket_path: Path) -> None:
    deliver = Recorder({"a@sw.test": RuntimeError("database gone"), "b@sw.test": replies.DELIVERED})
    answers = serve(socket_path, deliver, lambda p: transact(p, ["a@sw.test", "b@sw.test"]))
    assert answers[0] == (451, b"4.3.0 " + replies.INTERNAL_ERROR.text.encode())
    assert answers[1][0] == 250


def test_something_that_is_not_a_reply_defers(socket_path: Path) -> None:
    bogus = Reply(999, "9.9.9", "no such code")
    deliver = Recorder({"a@sw.test": "250 OK", "b@sw.test": bogus})
    answers = serve(socket_path, deliver, lambda p: transact(p, ["a@sw.test", "b@sw.test"]))
    assert [code for code, _ in answers] == [451, 451]


def test_a_reply_text_cannot_break_the_protocol(socket_path: Path) -> None:
    sneaky = replies.UNKNOWN_ADDRESS.with_text("Unknown\r\n250 2.0.0 fake")
    deliver = Recorder({"a@sw.test": sneaky, "b@sw.test": replies.DELIVERED})
    answers = serve(socket_path, deliver, lambda p: transact(p, ["a@sw.test", "b@sw.test"]))
    assert answers[0] == (554, b"5.1.0 Unknown  250 2.0.0 fake")
    assert answers[1][0] == 250


def test_null_sender_and_message_content(socket_path: Path) -> None:
    deliver = Recorder({"a@sw.test": replies.DELIVERED})
    serve(socket_path, deliver, lambda p: transact(p, ["a@sw.test"], sender="<>"))
    mail_from, _, raw, _ = deliver.calls[0]
    assert mail_from == ""
    assert b"\r\n.a line that smtplib dot-stuffs\r\n" in raw


def test_too_big_message_still_gets_one_reply_per_recipient(socket_path: Path) -> None:
    deliver = Recorder({"a@sw.test": replies.DELIVERED, "b@sw.test": replies.DELIVERED})

    def client(path: str) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
        too_big = transact(path, ["a@sw.test", "b@sw.test"], MESSAGE + b"x" * 200 + b"\r\n")
        after = transact(path, ["a@sw.test", "b@sw.test"])
        return too_big, after

    too_big, after = serve(socket_path, deliver, client, data_size_limit=200)
    assert [code for code, _ in too_big] == [552, 552]
    assert [code for code, _ in after] == [250, 250]
    assert len(deliver.calls) == 2


def test_several_transactions_on_one_connection(socket_path: Path) -> None:
    deliver = Recorder({"a@sw.test": replies.DELIVERED, "b@sw.test": UNSUPPORTED})

    def client(path: str) -> list[int]:
        codes = []
        with smtplib.LMTP(path, timeout=10) as lmtp:
            lmtp.ehlo()
            for rcpt in ("a@sw.test", "b@sw.test"):
                lmtp.mail("company@sw.test")
                lmtp.rcpt(rcpt)
                codes.append(lmtp.data(MESSAGE)[0])
        return codes

    assert serve(socket_path, deliver, client) == [250, 554]


def test_socket_mode_and_stale_socket(socket_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(socket_path))
    stale.close()

    def client(path: str) -> int:
        return stat.S_IMODE(Path(path).stat().st_mode)

    deliver = Recorder({})
    assert serve(socket_path, deliver, client, socket_mode=0o600) == 0o600
    assert not socket_path.exists()


def test_refuses_to_replace_a_file_that_is_not_a_socket(socket_path: Path) -> None:
    socket_path.write_text("not a socket")
    with pytest.raises(FileExistsError):
        serve(socket_path, Recorder({}), lambda p: None)
    assert socket_path.read_text() == "not a socket"


def test_reply_line() -> None:
    assert reply_line(replies.DELIVERED) == "250 2.0.0 Delivered to Single Window"
    assert reply_line(Reply(554, "5.6.0", "bad\tline\n")) == "554 5.6.0 bad line"
    long = reply_line(Reply(554, "5.1.0", "The address <" + "x" * 2000 + "> is unknown"))
    assert len(long) == 510 and long.startswith("554 5.1.0 The address <xx")
    assert long.endswith("x...")


def test_a_failure_outside_deliver_defers_every_recipient(
    socket_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**_: object) -> Transaction:
        raise MemoryError("no room for the transaction")

    monkeypatch.setattr("singlewindow.transport.lmtp.Transaction", broken)
    deliver = Recorder({"a@sw.test": replies.DELIVERED, "b@sw.test": replies.DELIVERED})
    answers = serve(socket_path, deliver, lambda p: transact(p, ["a@sw.test", "b@sw.test"]))
    assert [(code, text[:5]) for code, text in answers] == [(451, b"4.3.0"), (451, b"4.3.0")]
    assert deliver.calls == []


def test_message_of_many_short_and_dotted_lines_arrives_byte_for_byte(
    socket_path: Path,
) -> None:
    body = b"".join(b".%d\r\n" % n if n % 3 == 0 else b"x%d\r\n" % n for n in range(50_000))
    message = b"Subject: many lines\r\n\r\n" + body + b"..\r\n"
    deliver = Recorder({"a@sw.test": replies.DELIVERED})
    answers = serve(socket_path, deliver, lambda p: transact(p, ["a@sw.test"], message))
    assert answers[0][0] == 250
    assert deliver.calls[0][2] == message


def test_size_limit_counts_the_message_not_the_dot_stuffing(socket_path: Path) -> None:
    message = b"Subject: dots\r\n\r\n" + b".\r\n" * 60  # 197 bytes, 257 on the wire
    deliver = Recorder({"a@sw.test": replies.DELIVERED})
    answers = serve(socket_path, deliver, lambda p: transact(p, ["a@sw.test"], message),
                    data_size_limit=len(message))
    assert answers[0][0] == 250 and deliver.calls[0][2] == message


def test_line_too_long_gets_one_reply_per_recipient_and_the_session_goes_on(
    socket_path: Path,
) -> None:
    deliver = Recorder({"a@sw.test": replies.DELIVERED, "b@sw.test": replies.DELIVERED})

    def client(path: str) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
        long_line = transact(path, ["a@sw.test", "b@sw.test"], MESSAGE + b"y" * 5000 + b"\r\n")
        after = transact(path, ["a@sw.test", "b@sw.test"])
        return long_line, after

    long_line, after = serve(socket_path, deliver, client)
    assert [code for code, _ in long_line] == [500, 500]
    assert [code for code, _ in after] == [250, 250]
    assert len(deliver.calls) == 2


# --- DSN (RFC 3461): announced, parameters kept, the success DSN left to ``finish`` --------

def test_lhlo_announces_dsn_and_its_parameters_are_kept_per_recipient(
        socket_path: Path) -> None:
    deliver = Recorder({"a@sw.test": replies.DELIVERED, "b@sw.test": replies.DELIVERED})

    def client(path: str) -> list[tuple[int, bytes]]:
        with smtplib.LMTP(path, timeout=10) as lmtp:
            assert lmtp.ehlo()[0] == 250
            assert lmtp.has_extn("dsn")
            assert lmtp.mail("company@sw.test", ["RET=HDRS", "ENVID=Ref+2B1.x"])[0] == 250
            assert lmtp.rcpt("a@sw.test", ["NOTIFY=SUCCESS,FAILURE",
                                           "ORCPT=rfc822;A+2Bb@sw.test"])[0] == 250
            assert lmtp.rcpt("b@sw.test", ["NOTIFY=NEVER"])[0] == 250
            return [lmtp.data(MESSAGE), lmtp.getreply()]
    assert [code for code, _ in serve(socket_path, deliver, client)] == [250, 250]
    transaction = deliver.calls[0][3]
    assert (transaction.envid, transaction.ret) == ("Ref+1.x", "HDRS")  # case kept
    assert [(d.notify, d.orcpt, d.success) for d in transaction.dsn] == [
        (("SUCCESS", "FAILURE"), "rfc822;A+b@sw.test", True), (("NEVER",), None, False)]


def test_bad_dsn_parameters_are_refused(socket_path: Path) -> None:
    def client(path: str) -> list[int]:
        with smtplib.LMTP(path, timeout=10) as lmtp:
            lmtp.ehlo()
            codes = [lmtp.mail("company@sw.test", ["RET=SOME"])[0]]
            codes.append(lmtp.mail("company@sw.test", ["ENVID=a", "ENVID=b"])[0])
            # A CR LF in the ENVID would write a header line of its own into the DSN.
            codes.append(lmtp.mail("company@sw.test", ["ENVID=a+0D+0ABcc:x@y"])[0])
            codes.append(lmtp.mail("company@sw.test")[0])
            codes.append(lmtp.rcpt("a@sw.test", ["NOTIFY=NEVER,SUCCESS"])[0])
            codes.append(lmtp.rcpt("a@sw.test", ["NOTIFY=SOMETIMES"])[0])
            codes.append(lmtp.rcpt("a@sw.test", ["ORCPT=rfc822;a+0Ab@sw.test"])[0])
            return codes
    assert serve(socket_path, Recorder({}), client) == [501, 501, 501, 250, 501, 501, 501]


def test_finish_sees_every_reply_and_may_change_them(socket_path: Path) -> None:
    deliver = Recorder({"a@sw.test": replies.DELIVERED, "b@sw.test": UNSUPPORTED})
    seen: list[list[Reply]] = []

    async def finish(transaction: Transaction, decided: list[Reply]) -> list[Reply]:
        seen.append(list(decided))
        return [replies.INTERNAL_ERROR if r.code == 250 else r for r in decided]
    answers = serve(socket_path, deliver, lambda p: transact(p, ["a@sw.test", "b@sw.test"]),
                    finish=finish)
    assert seen == [[replies.DELIVERED, UNSUPPORTED]]
    assert [code for code, _ in answers] == [451, 554]


def test_a_failing_finish_defers_the_2xx_only(socket_path: Path) -> None:
    deliver = Recorder({"a@sw.test": replies.DELIVERED, "b@sw.test": UNSUPPORTED})

    async def finish(transaction: Transaction, decided: list[Reply]) -> list[Reply]:
        raise RuntimeError("the DSN could not be sent")
    answers = serve(socket_path, deliver, lambda p: transact(p, ["a@sw.test", "b@sw.test"]),
                    finish=finish)
    assert [code for code, _ in answers] == [451, 554]


def test_a_transaction_is_itself_not_its_contents() -> None:
    """Hashed and compared by identity, and weakly referenceable: a ``deliver`` keeps
    what its calls share about a transaction in a weak mapping of its own (the router's
    Progress), and two transactions with the same contents never share it."""
    first = Transaction("a@sw.test", ("b@sw.test",), (), b"same")
    second = Transaction("a@sw.test", ("b@sw.test",), (), b"same")
    shared: weakref.WeakKeyDictionary[Transaction, list[str]] = weakref.WeakKeyDictionary()
    shared[first] = ["first"]
    assert first != second and second not in shared and shared[first] == ["first"]
    del first
    gc.collect()
    assert len(shared) == 0
