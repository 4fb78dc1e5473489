"""Delivery reports on the copies (:mod:`singlewindow.transport.agency_report`), through
the real LMTP server and store (the ``transport`` fixture): matched only by what the hub
put on the copy and only from where a genuine one comes (issue 12)."""

from __future__ import annotations

from typing import Any

import psycopg

from singlewindow import replies
from singlewindow.config import Config
from singlewindow.store import directory
from tests.support.local import lmtp_send
from tests.support.transport import D, Transport, stamped_by, submit


def report(*, envid: str, returned: str = "<x@y>", action: str = "failed") -> str:
    return ('From: MAILER-DAEMON@mx.customs.example\r\nMIME-Version: 1.0\r\n'
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n'
            '\r\n--b\r\nContent-Type: text/plain\r\n\r\nsorry\r\n'
            '--b\r\nContent-Type: message/delivery-status\r\n\r\n'
            f'Reporting-MTA: dns; mx.customs.example\r\nOriginal-Envelope-Id: {envid}\r\n'
            f'\r\nFinal-Recipient: rfc822; in@customs.example\r\nAction: {action}\r\n'
            'Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n'
            '--b\r\nContent-Type: text/rfc822-headers\r\n\r\n'
            f'Message-ID: {returned}\r\nSubject: unit\r\n\r\n--b--\r\n')


def forwarded(config: Config, conn: psycopg.Connection[Any]) -> tuple[str, str, str]:
    """A copy to customs: (Single Window id, its ENVID, its Message-ID)."""
    assert submit(config, "From: <edi@acme.example>\r\n")[0] == 250
    row = conn.execute("SELECT message_id, envid, copy_message_id FROM forward"
                       " ORDER BY id DESC LIMIT 1").fetchone()
    assert row is not None
    return row["message_id"], row["envid"], row["copy_message_id"]


def reported(conn: psycopg.Connection[Any], swid: str) -> int:
    row = conn.execute("SELECT count(*) AS n FROM event WHERE message_id = %s"
                       " AND kind = 'agency-dsn'", (swid,)).fetchone()
    assert row is not None
    return int(row["n"])


def test_copy_envid_is_a_token_of_its_own(transport: Transport,
                                          conn: psycopg.Connection[Any]) -> None:
    config, _ = transport
    swid, envid, _ = forwarded(config, conn)
    _, other_envid, _ = forwarded(config, conn)
    assert swid not in envid and other_envid != envid and len(envid) >= 32


def test_report_from_the_copys_receiver_is_recorded(transport: Transport,
                                                    conn: psycopg.Connection[Any]) -> None:
    config, sink = transport
    swid, envid, _ = forwarded(config, conn)
    [(code, text)] = lmtp_send(config, "", [f"acme@{D}"], stamped_by("customs", report(envid=envid),
                                                             b""))
    assert code == 250 and text.endswith(f"recorded on {swid}".encode())
    assert reported(conn, swid) == 1
    # The submitter hears of the failure (its notice goes where its copies go).
    assert sink.wait_for(lambda r: b"X-SingleWindow-Notice: agency-dsn" in r.data, timeout=10)


def test_forged_reports_are_refused_and_not_recorded(transport: Transport,
                                                     conn: psycopg.Connection[Any]) -> None:
    config, _ = transport
    swid, envid, copy_id = forwarded(config, conn)
    directory.add_party(conn, "coast", "agency", ["10.9.0.2/32"], "127.0.0.1:3")
    directory.add_address(conn, f"coast@{D}", "coast", "in@coast.example", None, D)
    forged = [
        ("customs", f"acme@{D}", report(envid=swid)),  # the id the submitter reads
        ("acme", f"acme@{D}", report(envid=envid, returned=copy_id)),  # not the receiver
        ("coast", f"acme@{D}", report(envid="", returned=copy_id)),  # guessed Message-ID
        ("customs", f"customs@{D}", report(envid=envid)),  # not the copy's sender
    ]
    for party, rcpt, data in forged:
        [(code, text)] = lmtp_send(config, "", [rcpt], stamped_by(party, data, b""))
        assert (code, text[:6]) == (554, b"5.7.1 "), (party, rcpt)
        assert text.startswith(b"5.7.1 " + replies.REPORT_UNMATCHED.text.encode())
    assert reported(conn, swid) == 0
    # Each refusal is on the reporter's own message in the log.
    rows = conn.execute("SELECT r.status FROM message m JOIN message_recipient r"
                        " ON r.message_id = m.id WHERE m.envelope_from = ''").fetchall()
    assert [r["status"] for r in rows] == ["554 5.7.1"] * len(forged)


def test_postfix_dsn_of_ones_own_submission_is_not_a_report_on_another(
        transport: Transport, conn: psycopg.Connection[Any]) -> None:
    """Postfix's own DSN (unstamped, null sender) goes to the sender of what it is about;
    one sent to bright carrying acme's copy's identifiers is bright's own DSN."""
    config, sink = transport
    swid, envid, copy_id = forwarded(config, conn)
    directory.add_party(conn, "bright", "company", ["10.1.1.0/24"], "127.0.0.1:4")
    directory.add_address(conn, f"bright@{D}", "bright", "edi@bright.example", None, D)
    data = report(envid=envid, returned=copy_id).encode()
    [(code, text)] = lmtp_send(config, "", [f"bright@{D}"], data)
    assert code == 250 and text.startswith(b"2.0.0 Delivered to bright@")
    assert reported(conn, swid) == 0
    # The same DSN to the copy's own sender is Postfix's report on the outbound leg.
    [(code, text)] = lmtp_send(config, "", [f"acme@{D}"], data)
    assert code == 250 and text.endswith(f"recorded on {swid}".encode())
    assert reported(conn, swid) == 1
    assert sink.wait_for(lambda r: r.rcpt_tos == ["edi@bright.example"], timeout=10)
