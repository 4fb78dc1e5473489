"""The message log (SPEC F5): messages, per-recipient outcomes, forwarded copies, events.

Written by the transport after the queue, read by ``swctl log`` and ``swctl trace``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Received:
    """What the transport knows of a submitted message when it first sees it."""

    id: str
    listener: str
    party: str | None
    sasl_login: str | None
    peer_address: str | None
    envelope_from: str
    header_message_id: str | None
    queue_id: str | None
    payload_sha256: str


def record_message(conn: Conn, m: Received) -> bool:
    """Insert the message once (a retry finds it there); True if it is new."""
    row = conn.execute(
        "INSERT INTO message (id, listener, party_id, sasl_login, peer_address, envelope_from,"
        " header_message_id, queue_id, payload_sha256)"
        " VALUES (%s, %s, (SELECT id FROM party WHERE name = %s), %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING RETURNING id",
        (m.id, m.listener, m.party, m.sasl_login, m.peer_address or None, m.envelope_from,
         m.header_message_id, m.queue_id, m.payload_sha256)).fetchone()
    if row is not None:
        event(conn, m.id, "received", {"listener": m.listener, "queue_id": m.queue_id,
                                       "from": m.envelope_from})
    return row is not None


def set_message_type(conn: Conn, message_id: str, message_type: str | None) -> None:
    conn.execute("UPDATE message SET message_type = %s WHERE id = %s",
                 (message_type, message_id))


def record_outcome(conn: Conn, message_id: str, recipient: str, status: str,
                   reason: str) -> None:
    conn.execute(
        "INSERT INTO message_recipient (message_id, logical, status, reason, decided_at)"
        " VALUES (%s, %s, %s, %s, now()) ON CONFLICT (message_id, logical) DO UPDATE"
        " SET status = excluded.status, reason = excluded.reason, decided_at = now()",
        (message_id, recipient, status, reason))
    event(conn, message_id, "outcome", {"recipient": recipient, "status": status,
                                        "reason": reason})


def event(conn: Conn, message_id: str, kind: str, detail: dict[str, Any]) -> None:
    conn.execute("INSERT INTO event (message_id, kind, detail) VALUES (%s, %s, %s)",
                 (message_id, kind, Jsonb(detail)))


# --- forwarded copies (exactly-once, SPEC D4) -------------------------------------------

@dataclass(frozen=True, slots=True)
class Forward:
    message_id: str
    recipient: str
    destination: str
    physical: str
    copy_message_id: str
    state: str
    queue_id: str | None


def claim_forward(conn: Conn, f: Forward) -> tuple[Forward, bool]:
    """The copy's row, and whether this call created it (False: an earlier attempt did,
    so a ``pending`` state means that attempt may have crashed mid-way)."""
    created = conn.execute(
        "INSERT INTO forward (message_id, recipient, destination, physical, copy_message_id,"
        " state) VALUES (%s, %s, %s, %s, %s, 'pending')"
        " ON CONFLICT (message_id, recipient, destination) DO NOTHING RETURNING id",
        (f.message_id, f.recipient, f.destination, f.physical, f.copy_message_id)).fetchone()
    if created is not None:
        return f, True
    row = conn.execute(
        "SELECT * FROM forward WHERE message_id = %s AND recipient = %s AND destination = %s",
        (f.message_id, f.recipient, f.destination)).fetchone()
    assert row is not None
    return Forward(row["message_id"], row["recipient"], row["destination"], row["physical"],
                   row["copy_message_id"], row["state"], row["queue_id"]), False


def mark_injected(conn: Conn, f: Forward, queue_id: str) -> None:
    conn.execute(
        "UPDATE forward SET state = 'injected', queue_id = %s, injected_at = now()"
        " WHERE message_id = %s AND recipient = %s AND destination = %s",
        (queue_id, f.message_id, f.recipient, f.destination))
    event(conn, f.message_id, "forwarded", {"recipient": f.recipient,
                                            "destination": f.destination,
                                            "queue_id": queue_id,
                                            "copy_message_id": f.copy_message_id})


def has_forwards(conn: Conn, message_id: str) -> bool:
    """Is ``message_id`` a Single Window message with forwarded copies?"""
    if not message_id:
        return False
    row = conn.execute("SELECT 1 FROM forward WHERE message_id = %s AND recipient <> "
                       "'*control*' LIMIT 1", (message_id,)).fetchone()
    return row is not None


def by_copy_message_id(conn: Conn, copy_message_id: str) -> tuple[str, str | None] | None:
    """(Single Window id, the submitter's own Message-ID) of a forwarded copy."""
    row = conn.execute(
        "SELECT m.id, m.header_message_id FROM forward f JOIN message m ON m.id = f.message_id"
        " WHERE f.copy_message_id = %s", (copy_message_id,)).fetchone()
    return None if row is None else (row["id"], row["header_message_id"])


def forwards_of(conn: Conn, message_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = conn.execute(
        "SELECT recipient, destination, physical, copy_message_id, state, queue_id"
        " FROM forward WHERE message_id = %s AND recipient <> '*control*'",
        (message_id,)).fetchall()
    return rows


def envelope_from(conn: Conn, message_id: str) -> str | None:
    row = conn.execute("SELECT envelope_from FROM message WHERE id = %s",
                       (message_id,)).fetchone()
    return None if row is None else str(row["envelope_from"])


# --- reading ----------------------------------------------------------------------------

def recent(conn: Conn, limit: int = 50) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT m.id, m.received_at, m.listener, p.name AS party, m.envelope_from,"
        " m.queue_id, m.message_type,"
        " coalesce(json_agg(json_build_object('recipient', r.logical, 'status', r.status,"
        "   'reason', r.reason) ORDER BY r.logical) FILTER (WHERE r.id IS NOT NULL), '[]')"
        "   AS recipients"
        " FROM message m LEFT JOIN party p ON p.id = m.party_id"
        " LEFT JOIN message_recipient r ON r.message_id = m.id"
        " GROUP BY m.id, p.name ORDER BY m.received_at DESC LIMIT %s", (limit,)).fetchall()


def trace(conn: Conn, ident: str) -> dict[str, Any] | None:
    """One message by Single Window id, either leg's queue id, or either Message-ID."""
    row = conn.execute(
        "SELECT m.*, p.name AS party FROM message m LEFT JOIN party p ON p.id = m.party_id"
        " WHERE m.id = %(i)s OR m.queue_id = %(i)s OR m.header_message_id = %(i)s"
        "  OR m.id IN (SELECT message_id FROM forward WHERE queue_id = %(i)s"
        "              OR copy_message_id = %(i)s)"
        " ORDER BY m.received_at DESC LIMIT 1", {"i": ident}).fetchone()
    if row is None:
        return None
    mid = row["id"]
    row["recipients"] = conn.execute(
        "SELECT logical AS recipient, status, reason, decided_at FROM message_recipient"
        " WHERE message_id = %s ORDER BY logical", (mid,)).fetchall()
    row["forwards"] = conn.execute(
        "SELECT recipient, destination, physical, copy_message_id, state, queue_id,"
        " injected_at FROM forward WHERE message_id = %s ORDER BY destination", (mid,)).fetchall()
    row["events"] = conn.execute(
        "SELECT at, kind, detail FROM event WHERE message_id = %s ORDER BY at, id",
        (mid,)).fetchall()
    result: dict[str, Any] = row
    return result
