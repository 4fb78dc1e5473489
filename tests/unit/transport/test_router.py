"""The router's dispatch, through the real LMTP server and store (the ``transport``
fixture, :mod:`tests.support.transport`): one reply per recipient; unstamped mail with a
sender deferred as a misconfiguration; the message read once per transaction."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from singlewindow.config import Config
from singlewindow.transport import parsed
from tests.support import factory
from tests.support.local import lmtp_send
from tests.support.sinks import Sink
from tests.support.transport import D, Transport, stamped


def test_one_reply_per_recipient(transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    replies = lmtp_send(config, f"acme@{D}", [f"customs@{D}", f"later@{D}"],
                   stamped(factory.gendec()))
    assert replies[0][0] == 250 and replies[0][1].startswith(b"2.0.0 Delivered")
    assert replies[1][0] == 554 and replies[1][1].startswith(b"5.2.1 ")
    [copy] = sink.wait_for(lambda r: True, timeout=10)
    assert copy.mail_from == f"acme@{D}" and copy.rcpt_tos == ["in@customs.example"]
    assert copy.message["From"].addresses[0].addr_spec == f"acme@{D}"


def test_unstamped_submission_is_deferred(transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    data = b"From: <edi@acme.example>\r\nSubject: x\r\n\r\n<a/>\r\n"
    [(code, text)] = lmtp_send(config, "edi@acme.example", [f"customs@{D}"], data)
    assert (code, text[:6]) == (451, b"4.3.5 ")
    assert sink.received == []


def test_unstamped_mail_from_the_old_system_sender_is_not_taken_as_the_hubs(
        transport: tuple[Config, Sink]) -> None:
    # The hub's own mail has the null sender now; a sender does not make mail the hub's.
    config, sink = transport
    data = b"From: <single-window@sw.test>\r\nSubject: x\r\n\r\nbody\r\n"
    [(code, text)] = lmtp_send(config, config.hub.system_sender, [f"acme@{D}"], data)
    assert (code, text[:6]) == (451, b"4.3.5 ")
    assert sink.received == []


def test_the_message_is_read_once_per_transaction(
        transport: Transport, monkeypatch: pytest.MonkeyPatch) -> None:
    """STYLE 9: every recipient of a transaction shares one Prepared (and one Progress);
    the next transaction reads its own message."""
    config, _ = transport
    read: list[bytes] = []

    def prepare(raw: bytes, *args: Any) -> parsed.Prepared:
        read.append(raw)
        return real(raw, *args)
    real = parsed.prepare
    monkeypatch.setattr(parsed, "prepare", prepare)
    data = stamped(factory.gendec())
    codes = [c for c, _ in lmtp_send(config, f"acme@{D}", [f"customs@{D}", f"later@{D}",
                                                           f"nobody@{D}"], data)]
    assert codes == [250, 554, 554]
    stamp = data.split(b"\r\n", 1)[0]
    assert [r.split(b"\r\n", 1)[0] for r in read] == [stamp]
    again = stamped(factory.gendec())
    assert lmtp_send(config, f"acme@{D}", [f"customs@{D}"], again)[0][0] == 250
    assert [r.split(b"\r\n", 1)[0] for r in read] == [stamp, again.split(b"\r\n", 1)[0]]


def test_a_refused_stamp_is_logged_with_its_subject_and_in_reply_to(
        transport: Transport, conn: psycopg.Connection[Any]) -> None:
    """Issue 12's refused forgery is a message of its own in the log; issue 18: the
    console lists it by its Subject like any other."""
    config, sink = transport
    forged = stamped(factory.gendec()).replace(b"Subject: unit\r\n",
                                               b"Subject: forged\r\nIn-Reply-To: <c@x>\r\n")
    forged = re.sub(rb"(X-SingleWindow-Origin: [^\r]*?)[A-Za-z0-9_-]{4}\r\n",
                    rb"\1AAAA\r\n", forged, count=1)
    [(code, _)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], forged)
    assert code == 554
    assert conn.execute("SELECT listener, subject, in_reply_to FROM message").fetchall() \
        == [{"listener": "refused", "subject": "forged", "in_reply_to": "<c@x>"}]
    assert sink.received == []
