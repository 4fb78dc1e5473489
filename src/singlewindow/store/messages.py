"""The message log (SPEC F5): messages, per-recipient outcomes, forwarded copies, events.

Written by the transport after the queue, read by ``swctl log`` and ``swctl trace``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

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
    subject: str | None = None
    """The decoded Subject (issue 18: what the console lists)."""
    in_reply_to: str | None = None
    """The first Message-ID of In-Reply-To (issue 18: an agency's response names the
    copy it answers)."""


#: When the milter accepted the message (issue 14): the UTC time to the millisecond in
#: its Single Window id (``SW`` + ``YYYYMMDDHHMMSS`` + milliseconds, see
#: :func:`singlewindow.origin.new_message_id`), read as ISO 8601 with an explicit UTC
#: offset, so the session's time zone does not matter. NULL for any other id.
_SUBMITTED_AT = (
    "CASE WHEN %s ~ '^SW[0-9]{17}' THEN (substr(%s, 3, 8) || 'T' || substr(%s, 11, 6)"
    " || 'Z')::timestamptz + substr(%s, 17, 3)::int * interval '1 millisecond' END")


def record_message(conn: Conn, m: Received,
                   events: Sequence[tuple[str, dict[str, Any]]] = ()) -> bool:
    """Insert the message once (a retry finds it there); True if it is new. With it, in
    the same statement, its ``received`` event and ``events`` (kind, detail), only when
    the message is new."""
    kinds = ["received", *(k for k, _ in events)]
    details = [Jsonb({"listener": m.listener, "queue_id": m.queue_id,
                      "from": m.envelope_from}), *(Jsonb(d) for _, d in events)]
    row = conn.execute(
        "WITH m AS (INSERT INTO message (id, listener, party_id, sasl_login, peer_address,"
        " envelope_from, header_message_id, queue_id, payload_sha256, subject, in_reply_to,"
        " submitted_at)"
        " VALUES (%s, %s, (SELECT id FROM party WHERE name = %s), %s, %s, %s, %s, %s, %s,"
        " %s, %s,"
        + _SUBMITTED_AT + ") ON CONFLICT (id) DO NOTHING RETURNING id),"
        " e AS (INSERT INTO event (message_id, kind, detail)"
        "  SELECT m.id, k, d FROM m, unnest(%s::text[], %s::jsonb[]) WITH ORDINALITY"
        "  AS x(k, d, n) ORDER BY n)"
        " SELECT id FROM m",
        (m.id, m.listener, m.party, m.sasl_login, m.peer_address or None, m.envelope_from,
         m.header_message_id, m.queue_id, m.payload_sha256, m.subject, m.in_reply_to,
         m.id, m.id, m.id, m.id,
         kinds, details)).fetchone()
    return row is not None


def record_outcome(conn: Conn, message_id: str, recipient: str, status: str,
                   reason: str, key: str = "",
                   events: Sequence[tuple[str, dict[str, Any]]] = (),
                   message_type: str | None = None) -> None:
    """The recipient's outcome and its ``outcome`` event, in one statement; ``key`` is
    the refusal's reason keyword (:attr:`singlewindow.replies.Reply.key`), ``events``
    (kind, detail) go with it; with ``message_type``, the message's type (as the MIG
    classified it) too."""
    kinds = ["outcome", *(k for k, _ in events)]
    details = [Jsonb({"recipient": recipient, "status": status, "reason": reason}),
               *(Jsonb(d) for _, d in events)]
    conn.execute(
        ("WITH t AS (UPDATE message SET message_type = %(type)s WHERE id = %(m)s), "
         if message_type else "WITH ")
        + "r AS (INSERT INTO message_recipient (message_id, logical, status, reason,"
        " reason_key, decided_at) VALUES (%(m)s, %(r)s, %(s)s, %(t)s, %(k)s, now())"
        " ON CONFLICT (message_id, logical) DO UPDATE"
        " SET status = excluded.status, reason = excluded.reason,"
        " reason_key = excluded.reason_key, decided_at = now())"
        " INSERT INTO event (message_id, kind, detail) SELECT %(m)s, k, d"
        " FROM unnest(%(ks)s::text[], %(ds)s::jsonb[]) WITH ORDINALITY AS x(k, d, n)"
        " ORDER BY n",
        {"m": message_id, "r": recipient, "s": status, "t": reason, "k": key or None,
         "type": message_type, "ks": kinds, "ds": details})


def event(conn: Conn, message_id: str, kind: str, detail: dict[str, Any]) -> None:
    conn.execute("INSERT INTO event (message_id, kind, detail) VALUES (%s, %s, %s)",
                 (message_id, kind, Jsonb(detail)))


# --- copies sent exactly once (SPEC D4, issue 10) ---------------------------------------

@dataclass(frozen=True, slots=True)
class Forward:
    """A copy of a submission for one destination (or its control message)."""

    message_id: str
    recipient: str
    destination: str
    physical: str
    copy_message_id: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Mail Single Window generated, delivered to one party's physical address/maildrop."""

    key: str
    message_id: str | None
    recipient: str
    physical: str
    kind: str
    copy_message_id: str


#: How a claim came out: ``fresh`` (this attempt created it and holds the lease),
#: ``retry`` (an earlier attempt left it pending and its lease ran out; this attempt holds
#: the lease now and must look for proof before it sends), ``busy`` (another attempt holds
#: the lease), ``done`` (sent, or refused for good, already).
Outcome = Literal["fresh", "retry", "busy", "done"]
Table = Literal["forward", "notice_delivery"]


@dataclass(frozen=True, slots=True)
class Claim:
    table: Table
    row_id: int
    copy_message_id: str
    outcome: Outcome
    state: str
    """``pending``, ``injected`` or ``refused``."""
    queue_id: str | None
    refusal: str | None
    since: float
    """When the first attempt began (Unix time): older logs cannot hold its traces."""
    attempt: int
    """The number of the attempt holding the claim (a fencing token for :func:`renew`)."""
    envid: str | None = None
    """A copy's own ENVID (RFC 3461 4.4), a random token (issue 12); None for generated
    mail."""


def _claim(conn: Conn, table: Table, created: dict[str, Any] | None, where: str,
           params: tuple[Any, ...], lease: float) -> Claim:
    if created is not None:
        return _as_claim(table, created, "fresh")
    taken = conn.execute(
        f"UPDATE {table} SET lease_until = clock_timestamp() + make_interval(secs => %s),"
        f" attempts = attempts + 1 WHERE {where} AND state = 'pending'"
        " AND (lease_until IS NULL OR lease_until < clock_timestamp()) RETURNING *",
        (lease, *params)).fetchone()
    if taken is not None:
        return _as_claim(table, taken, "retry")
    row = conn.execute(f"SELECT * FROM {table} WHERE {where}", params).fetchone()
    assert row is not None
    return _as_claim(table, row, "busy" if row["state"] == "pending" else "done")


def _as_claim(table: Table, row: dict[str, Any], outcome: Outcome) -> Claim:
    return Claim(table, row["id"], row["copy_message_id"], outcome, row["state"],
                 row["queue_id"], row["refusal"], row["created_at"].timestamp(),
                 row["attempts"], row.get("envid"))


def claim_forward(conn: Conn, f: Forward, lease: float, *, typed: bool = False,
                  message_type: str | None = None,
                  events: Sequence[tuple[str, dict[str, Any]]] = ()) -> Claim:
    """Claim the copy for this attempt for ``lease`` seconds (see :data:`Outcome`);
    ``typed``: the message's type is set to ``message_type`` in the same statement, as
    are ``events`` (kind, detail) recorded for the message."""
    ctes = []
    if typed:
        ctes.append("t AS (UPDATE message SET message_type = %(type)s WHERE id = %(m)s)")
    if events:
        ctes.append("e AS (INSERT INTO event (message_id, kind, detail) SELECT %(m)s, k, d"
                    " FROM unnest(%(ks)s::text[], %(ds)s::jsonb[]) WITH ORDINALITY"
                    " AS x(k, d, n) ORDER BY n)")
    created = conn.execute(
        ("WITH " + ", ".join(ctes) + " " if ctes else "")
        + "INSERT INTO forward (message_id, recipient, destination, physical, copy_message_id,"
        " state, lease_until) VALUES (%(m)s, %(r)s, %(d)s, %(p)s, %(c)s, 'pending',"
        " clock_timestamp() + make_interval(secs => %(l)s))"
        " ON CONFLICT (message_id, recipient, destination) DO NOTHING RETURNING *",
        {"m": f.message_id, "r": f.recipient, "d": f.destination, "p": f.physical,
         "c": f.copy_message_id, "l": lease, "type": message_type,
         "ks": [k for k, _ in events], "ds": [Jsonb(d) for _, d in events]}).fetchone()
    return _claim(conn, "forward", created,
                  "message_id = %s AND recipient = %s AND destination = %s",
                  (f.message_id, f.recipient, f.destination), lease)


def claim_notice(conn: Conn, n: Notice, lease: float) -> Claim:
    """Claim the delivery of generated mail for this attempt (see :data:`Outcome`)."""
    created = conn.execute(
        "INSERT INTO notice_delivery (key, message_id, recipient, physical, kind,"
        " copy_message_id, state, lease_until) VALUES (%s,"
        " (SELECT id FROM message WHERE id = %s), %s, %s, %s, %s, 'pending',"
        " clock_timestamp() + make_interval(secs => %s))"
        " ON CONFLICT (key) DO NOTHING RETURNING *",
        (n.key, n.message_id, n.recipient, n.physical, n.kind, n.copy_message_id,
         lease)).fetchone()
    return _claim(conn, "notice_delivery", created, "key = %s", (n.key,), lease)


def renew(conn: Conn, claim: Claim, lease: float) -> bool:
    """Extend this attempt's lease from now; False if the claim is no longer this
    attempt's (its lease ran out and another attempt took it)."""
    row = conn.execute(
        f"UPDATE {claim.table} SET lease_until = clock_timestamp() + make_interval(secs => %s)"
        " WHERE id = %s AND attempts = %s AND state = 'pending' RETURNING id",
        (lease, claim.row_id, claim.attempt)).fetchone()
    return row is not None


def mark_injected(conn: Conn, claim: Claim, queue_id: str,
                  event: tuple[str, str, dict[str, Any]] | None = None,
                  outcome: tuple[str, str, str, str] | None = None) -> None:
    """Sent: the claim's mark and, in the same statement, ``event`` (message id, kind,
    detail) and a recipient's ``outcome`` (message id, recipient, status, reason, as
    :func:`record_outcome` records it, with its event)."""
    if event is None and outcome is None:
        conn.execute(
            f"UPDATE {claim.table} SET state = 'injected', queue_id = %s,"
            " injected_at = now(), lease_until = NULL WHERE id = %s", (queue_id, claim.row_id))
        return
    events = [event] if event is not None else []
    if outcome is not None:
        events.append((outcome[0], "outcome", {"recipient": outcome[1], "status": outcome[2],
                                               "reason": outcome[3]}))
    recorded = (
        ", r AS (INSERT INTO message_recipient (message_id, logical, status, reason,"
        " decided_at) VALUES (%s, %s, %s, %s, now()) ON CONFLICT (message_id, logical)"
        " DO UPDATE SET status = excluded.status, reason = excluded.reason,"
        " reason_key = NULL, decided_at = now())") if outcome is not None else ""
    conn.execute(
        f"WITH u AS (UPDATE {claim.table} SET state = 'injected', queue_id = %s,"
        " injected_at = now(), lease_until = NULL WHERE id = %s)" + recorded
        + " INSERT INTO event (message_id, kind, detail)"
        " SELECT m, k, d FROM unnest(%s::text[], %s::text[], %s::jsonb[])"
        " WITH ORDINALITY AS x(m, k, d, n) ORDER BY n",
        (queue_id, claim.row_id, *(outcome or ()), [e[0] for e in events],
         [e[1] for e in events], [Jsonb(e[2]) for e in events]))


def mark_refused(conn: Conn, claim: Claim, refusal: str) -> None:
    conn.execute(
        f"UPDATE {claim.table} SET state = 'refused', refusal = %s, lease_until = NULL"
        " WHERE id = %s", (refusal, claim.row_id))


def release(conn: Conn, claim: Claim) -> None:
    """Give the lease back: this attempt failed before anything could be committed, so
    the next one need not wait for the lease to run out."""
    conn.execute(f"UPDATE {claim.table} SET lease_until = NULL WHERE id = %s"
                 " AND state = 'pending'", (claim.row_id,))


#: Each claim table's column with the logical address its mail is for.
_ADDRESSEE = {"forward": "destination", "notice_delivery": "recipient"}


def release_locked(conn: Conn, claim: Claim, login: str, status: str) -> None:
    """:func:`release`, for a delivery deferred because a POP3 session holds ``login``'s
    maildrop (SPEC R3.2), with its ``maildrop-deferred`` event in the same statement:
    the copy's or notice's message (none for a notice about no known message), the
    logical address it is for, the login, the deferral's enhanced ``status`` and the leg
    (``copy`` of a submission, ``notice``: mail the hub generated)."""
    leg = "copy" if claim.table == "forward" else "notice"
    conn.execute(
        f"WITH r AS (UPDATE {claim.table} SET lease_until = NULL WHERE id = %(id)s"
        " AND state = 'pending')"
        " INSERT INTO event (message_id, kind, detail)"
        " SELECT message_id, 'maildrop-deferred', jsonb_build_object("
        f"  'recipient', {_ADDRESSEE[claim.table]}, 'login', %(login)s::text,"
        "  'status', %(status)s::text, 'leg', %(leg)s::text,"
        "  'copy_message_id', copy_message_id)"
        f" FROM {claim.table} WHERE id = %(id)s",
        {"id": claim.row_id, "login": login, "status": status, "leg": leg})


def first_event(conn: Conn, message_id: str, kind: str, digest: str) -> bool:
    """No ``kind`` event with this digest is recorded yet (a retry does not repeat one)."""
    row = conn.execute("SELECT 1 FROM event WHERE message_id = %s AND kind = %s"
                       " AND detail->>'digest' = %s LIMIT 1",
                       (message_id, kind, digest)).fetchone()
    return row is None


@dataclass(frozen=True, slots=True)
class Copy:
    """A forwarded copy, as a delivery report about it is checked against (issue 12)."""

    message_id: str
    """The Single Window id of the message it is a copy of."""
    destination_party: str | None
    """The party the copy went to (None if its address is gone)."""
    envelope_from: str
    """The copy's envelope sender: where every genuine report about it is sent."""


_COPY_SELECT = (
    "SELECT f.message_id, p.name AS party, m.envelope_from FROM forward f"
    " JOIN message m ON m.id = f.message_id"
    " LEFT JOIN address a ON a.logical = f.destination"
    " LEFT JOIN party p ON p.id = a.party_id"
    " WHERE f.recipient NOT LIKE '*%%' AND ")


def _copy(row: dict[str, Any] | None) -> Copy | None:
    return None if row is None else Copy(row["message_id"], row["party"],
                                         str(row["envelope_from"]))


def copy_by_envid(conn: Conn, envid: str) -> Copy | None:
    """The copy that carried this ENVID (a token only its receiver saw)."""
    if not envid:
        return None
    return _copy(conn.execute(_COPY_SELECT + "f.envid = %s", (envid,)).fetchone())


def copy_by_message_id(conn: Conn, copy_message_id: str) -> Copy | None:
    """The copy whose own Message-ID header this is."""
    if not copy_message_id:
        return None
    return _copy(conn.execute(_COPY_SELECT + "f.copy_message_id = %s",
                              (copy_message_id,)).fetchone())


def has_event(conn: Conn, message_id: str, kind: str) -> bool:
    """Is a ``kind`` event recorded for this message?"""
    row = conn.execute("SELECT 1 FROM event WHERE message_id = %s AND kind = %s LIMIT 1",
                       (message_id, kind)).fetchone()
    return row is not None


def recorded_hops(conn: Conn, message_id: str) -> int | None:
    """The hop count recorded for a submission (its ``hops`` event), if any."""
    row = conn.execute("SELECT (detail->>'hops')::int AS hops FROM event WHERE message_id = %s"
                       " AND kind = 'hops' ORDER BY id LIMIT 1", (message_id,)).fetchone()
    return None if row is None else int(row["hops"])


def answered_hops(conn: Conn, copy_message_ids: list[str], window: float) -> int:
    """The largest hop count of the submissions whose copies, sent less than ``window``
    seconds ago, have one of these Message-IDs; 0 if none."""
    if not copy_message_ids or window <= 0:
        return 0
    row = conn.execute(
        "SELECT max((e.detail->>'hops')::int) AS hops FROM forward f"
        " JOIN event e ON e.message_id = f.message_id AND e.kind = 'hops'"
        " WHERE f.copy_message_id = ANY(%s) AND f.recipient NOT LIKE '*%%'"
        "  AND f.injected_at > clock_timestamp() - make_interval(secs => %s)",
        (copy_message_ids, window)).fetchone()
    return int(row["hops"]) if row is not None and row["hops"] is not None else 0


def forwards_of(conn: Conn, message_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = conn.execute(
        "SELECT recipient, destination, physical, copy_message_id, state, queue_id"
         " FROM forward WHERE message_id = %s AND recipient NOT LIKE '*%%'",
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
    """One message by Single Window id, either leg's queue id, or either Message-ID; a
    refused forgery also by the id or queue id its stamp claimed. A message's own id wins
    over a forgery that claimed it (which is listed with the message instead).

    Mail Single Window generated about no known message (``notice_delivery`` without a
    message) is found by its queue id or Message-ID too: ``{"id": None, "notice": ...}``.
    """
    row = conn.execute(
        "SELECT m.*, p.name AS party FROM message m LEFT JOIN party p ON p.id = m.party_id"
        " WHERE m.id = %(i)s OR m.queue_id = %(i)s OR m.header_message_id = %(i)s"
        "  OR m.id IN (SELECT message_id FROM forward WHERE queue_id = %(i)s"
        "              OR copy_message_id = %(i)s)"
        "  OR m.id IN (SELECT message_id FROM notice_delivery WHERE queue_id = %(i)s"
        "              OR copy_message_id = %(i)s)"
        "  OR m.id IN (SELECT message_id FROM event WHERE kind = 'stamp-refused'"
        "              AND (detail->>'claimed_id' = %(i)s OR detail->>'claimed_queue' = %(i)s))"
        " ORDER BY m.id = %(i)s DESC, m.received_at DESC LIMIT 1", {"i": ident}).fetchone()
    if row is None:
        notice = conn.execute(
            "SELECT kind, recipient, copy_message_id, state, queue_id, refusal, attempts,"
            " injected_at, created_at FROM notice_delivery WHERE message_id IS NULL"
            " AND (queue_id = %(i)s OR copy_message_id = %(i)s) LIMIT 1",
            {"i": ident}).fetchone()
        if notice is None:
            return None
        # Its own events (maildrop deferrals) have no message either (migration 0010).
        notice["events"] = conn.execute(
            "SELECT at, kind, detail FROM event WHERE message_id IS NULL"
            " AND detail->>'copy_message_id' = %s ORDER BY at, id",
            (notice["copy_message_id"],)).fetchall()
        return {"id": None, "notice": notice}
    mid = row["id"]
    row["stamp_refusals"] = conn.execute(
        "SELECT message_id, at, detail FROM event WHERE kind = 'stamp-refused'"
        " AND detail->>'claimed_id' = %s AND message_id <> %s ORDER BY at, id",
        (mid, mid)).fetchall()
    row["recipients"] = conn.execute(
        "SELECT logical AS recipient, status, reason, decided_at FROM message_recipient"
        " WHERE message_id = %s ORDER BY logical", (mid,)).fetchall()
    row["forwards"] = conn.execute(
        "SELECT recipient, destination, physical, copy_message_id, state, queue_id,"
        " refusal, attempts, injected_at FROM forward WHERE message_id = %s"
        " ORDER BY destination", (mid,)).fetchall()
    row["notices"] = conn.execute(
        "SELECT kind, recipient, copy_message_id, state, queue_id, refusal, attempts,"
        " injected_at FROM notice_delivery WHERE message_id = %s ORDER BY created_at, id",
        (mid,)).fetchall()
    row["events"] = conn.execute(
        "SELECT at, kind, detail FROM event WHERE message_id = %s ORDER BY at, id",
        (mid,)).fetchall()
    result: dict[str, Any] = row
    return result


# --- message ids as each side sees them (issue 12) ---------------------------------------

def copy_origin(conn: Conn, copy_message_id: str) -> tuple[int | None, str | None] | None:
    """(submitting party id, its own Message-ID) of the message a copy was made of."""
    row = conn.execute(
        "SELECT m.party_id, m.header_message_id FROM forward f"
        " JOIN message m ON m.id = f.message_id WHERE f.copy_message_id = %s",
        (copy_message_id,)).fetchone()
    return None if row is None else (row["party_id"], row["header_message_id"])


def copy_for(conn: Conn, party_id: int, header_message_id: str,
             reader_party_id: int) -> str | None:
    """The Message-ID of the copy ``reader_party_id`` got of the message ``party_id``
    submitted with Message-ID ``header_message_id`` (the newest, if it sent it twice)."""
    row = conn.execute(
        "SELECT f.copy_message_id FROM message m JOIN forward f ON f.message_id = m.id"
        " JOIN address a ON a.logical = f.destination"
        " WHERE m.header_message_id = %s AND m.party_id = %s AND a.party_id = %s"
        " AND f.recipient NOT LIKE '*%%' AND f.state = 'injected'"
        " ORDER BY f.created_at DESC LIMIT 1",
        (header_message_id, party_id, reader_party_id)).fetchone()
    return None if row is None else str(row["copy_message_id"])


def alias_for(conn: Conn, party_id: int, original: str, new_alias: str) -> str:
    """The alias of ``party_id``'s message id ``original``: the one given before, else
    ``new_alias`` (stored, so a reply naming it maps back)."""
    conn.execute(
        "INSERT INTO message_id_alias (alias, party_id, original) VALUES (%s, %s, %s)"
        " ON CONFLICT (party_id, original) DO NOTHING", (new_alias, party_id, original))
    row = conn.execute(
        "SELECT alias FROM message_id_alias WHERE party_id = %s AND original = %s",
        (party_id, original)).fetchone()
    assert row is not None
    return str(row["alias"])


def alias_origin(conn: Conn, alias: str) -> tuple[int, str] | None:
    """(party id, original id) an alias stands for."""
    row = conn.execute("SELECT party_id, original FROM message_id_alias WHERE alias = %s",
                       (alias,)).fetchone()
    return None if row is None else (row["party_id"], row["original"])


def party_of(conn: Conn, message_id: str) -> int | None:
    """The submitting party of a Single Window message."""
    row = conn.execute("SELECT party_id FROM message WHERE id = %s", (message_id,)).fetchone()
    return None if row is None else row["party_id"]
