"""A submission's way (:mod:`singlewindow.transport.submission`), through the real LMTP
server and store (the ``transport`` fixture): the header sender is the submitter's
(issue 12), hop counting and loops, no control message for automatic mail, routes per
release (issue 14), and what the metrics exporter reads."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from singlewindow import mig, origin
from singlewindow.config import Config
from singlewindow.store import directory, snapshot
from singlewindow.transport import submission
from tests.support import factory
from tests.support.local import lmtp_send
from tests.support.sinks import Sink
from tests.support.transport import D, Transport, stamped, submit


def test_from_of_another_party_is_refused_naming_the_header(transport: Transport) -> None:
    config, sink = transport
    code, text = submit(config, "From: <in@customs.example>\r\n")
    assert (code, text[:6]) == (554, b"5.7.1 ")
    assert b"The address <in@customs.example> in header From is not one of your " \
        b"addresses" in text
    code, text = submit(config, f"From: <edi@acme.example>\r\nSender: customs@{D}\r\n")
    assert (code, text[:6]) == (554, b"5.7.1 ") and b"in header Sender" in text
    code, text = submit(config, "From: <edi@acme.example>\r\n"
                        "Reply-To: a <edi@acme.example>, b <in@customs.example>\r\n")
    assert (code, text[:6]) == (554, b"5.7.1 ") and b"in header Reply-To" in text
    assert sink.wait_for(lambda r: True, timeout=1) == []
    # The party's own addresses, physical or logical; To and Cc may name anyone known.
    code, _ = submit(config, f"From: <edi@acme.example>\r\nReply-To: <acme@{D}>\r\n"
                     "Cc: <in@customs.example>\r\n")
    assert code == 250
    # An address Single Window does not know at all is still reason #8.
    code, text = submit(config, "From: <someone@elsewhere.example>\r\n")
    assert (code, text[:6]) == (554, b"5.1.0 ") and b"unknown to Single Window" in text


def received(n: int) -> bytes:
    return b"".join(f"Received: from r{i}.acme.example by r{i + 1}.acme.example; "
                    "Sun, 29 Nov 2026 12:00:00 +0000\r\n".encode() for i in range(n))


def test_past_the_hop_limit_the_recipient_is_refused_as_a_loop(
        transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    limit = config.transport.hop_limit
    [(code, text)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"],
                          received(limit + 1) + stamped(factory.gendec()))
    assert (code, text[:6]) == (554, b"5.4.6 ")
    assert f"Routing loop detected: the message has passed {limit + 1} hops, more than " \
           f"the {limit} Single Window allows".encode() in b" ".join(text.split())
    assert sink.received == []


def test_the_copy_carries_the_hop_count_on(transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    limit = config.transport.hop_limit
    [(code, _)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"],
                       received(limit) + stamped(factory.gendec()))
    assert code == 250
    [copy] = sink.wait_for(lambda r: True, timeout=10)
    trace = copy.message.get_all("Received")
    assert len(trace) == limit
    assert all(value.startswith("by sw.test (Single Window, hop ") for value in trace)
    assert b"acme.example" not in copy.data.split(b"\r\n\r\n", 1)[0]


def test_auto_submitted_mig_errors_get_no_control_message(
        transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    broken = factory.gendec().replace(b"<Flag>PA</Flag>", b"<Flag>Panama</Flag>")
    data = b"Auto-Submitted: auto-replied\r\n" + stamped(broken)
    [(code, text)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], data)
    assert (code, text[:6]) == (554, b"5.6.0 ")
    assert b"no control message is sent, as it is marked Auto-Submitted: auto-replied" \
        in b" ".join(text.split())
    assert sink.wait_for(lambda r: True, timeout=2) == []


def test_a_quick_answer_to_a_copy_continues_its_hop_count(
        transport: tuple[Config, Sink]) -> None:
    config, sink = transport
    limit = config.transport.hop_limit
    first = limit - 10
    [(code, _)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"],
                       received(first) + stamped(factory.gendec()))
    assert code == 250
    [copy] = sink.wait_for(lambda r: True, timeout=10)
    # A new message that answers the copy: its own 11 hops and the copy's 20 make 31.
    answer = received(11) + f"In-Reply-To: {copy.message['Message-ID']}\r\n".encode() \
        + stamped(factory.gendec())
    [(code, text)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"], answer)
    assert (code, text[:6]) == (554, b"5.4.6 ")
    assert f"passed {first + 11} hops (counting the messages it answers within " \
           f"{config.transport.reply_window:g} s)".encode() in b" ".join(text.split())
    assert len(sink.wait_for(lambda r: True, timeout=2, count=2)) == 1


def test_a_releases_own_route_wins_over_its_messages(conn: psycopg.Connection[Any]) -> None:
    """Issue 14: routes for a message name (PAXLST) serve every release the MIG
    classifies, unless that release has routes of its own."""
    directory.add_party(conn, "customs", "agency", [], None)
    directory.add_address(conn, f"customs@{D}", "customs", "in@customs.example", None, D)
    directory.add_party(conn, "coast", "agency", [], None)
    directory.add_address(conn, f"coast@{D}", "coast", "in@coast.example", None, D)
    directory.add_route(conn, f"customs@{D}", "PAXLST", [f"customs@{D}", f"coast@{D}"])
    directory.add_route(conn, f"customs@{D}", "PAXLST-D05B", [f"coast@{D}"])
    where, registry = snapshot.load(conn), mig.registry()

    def routed(message_type: str | None) -> list[str]:
        return [a.logical for a in submission.routes(where, registry, f"customs@{D}",
                                                 message_type)]
    assert routed("PAXLST-D03B") == routed("PAXLST-D02B") == [f"coast@{D}", f"customs@{D}"]
    assert routed("PAXLST-D05B") == [f"coast@{D}"]
    assert routed("IFTDGN-D03A") == routed("GENDEC-1") == routed(None) == []
    assert routed("NOT-A-TYPE") == []


# --- issue 14: what the metrics exporter reads, written with the existing bookkeeping --

def _validations(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return [r["detail"] for r in conn.execute(
        "SELECT detail FROM event WHERE kind = 'mig-validated' ORDER BY id").fetchall()]


@pytest.mark.parametrize("control", [False, True])
def test_each_validation_is_recorded_once_with_its_time_and_findings(
        transport: tuple[Config, Sink], conn: psycopg.Connection[Any], control: bool) -> None:
    config, _ = transport
    payload = factory.gendec()
    if control:  # MIG errors: the control message's claim carries the event
        payload = payload.replace(b"<Flag>PA</Flag>", b"<Flag>Panama</Flag>")
    rcpts = [f"customs@{D}", f"customs@{D}".replace("customs", "later")]
    replies_ = lmtp_send(config, f"acme@{D}", rcpts, stamped(payload))
    assert [code for code, _ in replies_] == [250, 554]
    [detail] = _validations(conn)  # once per transaction, not per recipient
    # The body part as carried (its last line ends in CRLF on the wire).
    assert len(payload) <= detail["bytes"] <= len(payload) + 2
    assert 0 < detail["seconds"] < 10
    if control:
        assert detail["findings"] and all(
            isinstance(t, str) and isinstance(rule, str) and n >= 1
            for t, rule, n in detail["findings"])
    else:
        assert "findings" not in detail
    # The refusal's keyword, for singlewindow_dsn_failures_total{reason}.
    keys = {r["logical"]: r["reason_key"] for r in conn.execute(
        "SELECT logical, reason_key FROM message_recipient")}
    assert keys == {f"customs@{D}": None, f"later@{D}": "address-not-activated"}


def test_the_submission_time_is_the_milters(transport: tuple[Config, Sink],
                                            conn: psycopg.Connection[Any]) -> None:
    config, _ = transport
    lmtp_send(config, f"acme@{D}", [f"customs@{D}"], stamped(factory.gendec()))
    row = conn.execute("SELECT id, extract(epoch FROM submitted_at)::float8 AS at"
                       " FROM message").fetchone()
    assert row is not None
    expected = origin.new_message_id(row["at"] + 0.0005)  # whole milliseconds, as floats
    assert row["id"][:19] == expected[:19]  # SW + the time to the millisecond


def test_the_subject_and_in_reply_to_are_recorded(transport: tuple[Config, Sink],
                                                  conn: psycopg.Connection[Any]) -> None:
    """Issue 18: the console lists a message by its Subject, decoded, and finds the
    responses to a copy by their In-Reply-To."""
    config, _ = transport
    head = (b"Subject: =?utf-8?q?D=C3=A9claration?= 7\r\n"
            b"In-Reply-To: <SW1.copy@sw.test> <SW0.copy@sw.test>\r\n")
    [(code, _)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"],
                            stamped(factory.gendec()).replace(b"Subject: unit\r\n", head))
    assert code == 250
    [(code, _)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"],
                            stamped(factory.gendec()).replace(b"Subject: unit\r\n", b""))
    assert code == 250
    rows = conn.execute("SELECT subject, in_reply_to FROM message ORDER BY received_at"
                        ).fetchall()
    assert rows == [{"subject": "Déclaration 7", "in_reply_to": "<SW1.copy@sw.test>"},
                    {"subject": None, "in_reply_to": None}]
