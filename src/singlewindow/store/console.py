"""What the web console (issue 18) reads and keeps: who may log in, sessions, failed
logins, the message search, a message's responses, the parties' pages, the audit log of
what each login looked at.

Sits beside :mod:`.messages` and :mod:`.directory`, under :mod:`singlewindow.console`,
which connects as ``sw_console`` (:data:`singlewindow.config.CONSOLE_ROLE`): it reads the
message log and the directory and writes only its sessions and failed logins (migration
0013), the password hashes of the one logged in (0016) and, append-only, its audit
log (0015). ``swctl operator`` adds, changes and removes operators through this module as
``sw_admin``, ``swctl audit`` reads the audit log.
Every value reaches PostgreSQL as a parameter; the search composes its statement from
fixed fragments, one per criterion given.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors

from singlewindow.store import StoreError

Conn = psycopg.Connection[Any]

#: A login of the console: an operator's name or an account's login (migration 0001's
#: and 0013's CHECK, said again so a bad name is refused with a sentence).
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


# --- who may log in ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Credential:
    """Who may log in with a name: an operator of the hub, or a company's account."""

    kind: str
    """``operator`` or ``company``."""
    login: str
    password_hash: str
    """The strong hash (``{SHA512-CRYPT}...``) :func:`singlewindow.passwords.verify_strong`
    checks."""
    party_id: int | None
    """A company's party; None for an operator."""
    party: str | None
    """A company's party's name; None for an operator."""


def credential(conn: Conn, login: str) -> Credential | None:
    """Who logs in with ``login``: an operator first, else an account (a name is never
    both: :func:`add_operator` and ``swctl account add`` refuse it)."""
    row = conn.execute(
        "SELECT 'operator' AS kind, name AS login, password_hash, NULL::bigint AS party_id,"
        " NULL::text AS party FROM operator WHERE name = %(l)s"
        " UNION ALL"
        " SELECT 'company', a.login, a.password_hash, a.party_id, p.name FROM account a"
        " JOIN party p ON p.id = a.party_id WHERE a.login = %(l)s"
        " ORDER BY kind DESC LIMIT 1", {"l": login}).fetchone()
    if row is None:
        return None
    return Credential(row["kind"], row["login"], row["password_hash"], row["party_id"],
                      row["party"])


def add_operator(conn: Conn, name: str, password_hash: str) -> None:
    """A new operator; StoreError when the name is not allowed, is taken by an operator,
    or is an account's login (one name, one kind of login)."""
    if not NAME.match(name):
        raise StoreError(f"invalid operator name {name!r}: lower-case letters, digits, "
                         "'.', '_' and '-', up to 64, starting with a letter or digit")
    with conn.transaction():
        if conn.execute("SELECT 1 FROM account WHERE login = %s", (name,)).fetchone():
            raise StoreError(f"operator {name!r}: {name!r} is an account's login; "
                             "choose another name")
        try:
            conn.execute("INSERT INTO operator (name, password_hash) VALUES (%s, %s)",
                         (name, password_hash))
        except errors.UniqueViolation:
            raise StoreError(f"operator {name!r}: already exists") from None


def remove_operator(conn: Conn, name: str) -> None:
    """Remove an operator and end its console sessions; StoreError if there is none."""
    with conn.transaction():
        row = conn.execute("DELETE FROM operator WHERE name = %s RETURNING name",
                           (name,)).fetchone()
        if row is None:
            raise StoreError(f"unknown operator {name!r}")
        conn.execute("DELETE FROM console_session WHERE kind = 'operator' AND login = %s",
                     (name,))


def set_operator_password(conn: Conn, name: str, password_hash: str) -> None:
    """An operator's new strong hash; every console session of that operator ends.
    StoreError if there is no such operator."""
    with conn.transaction():
        row = conn.execute("UPDATE operator SET password_hash = %s WHERE name = %s"
                           " RETURNING name", (password_hash, name)).fetchone()
        if row is None:
            raise StoreError(f"unknown operator {name!r}")
        end_sessions(conn, "operator", name)


def is_operator(conn: Conn, name: str) -> bool:
    """Is ``name`` an operator's? (``swctl account add`` refuses it as a login.)"""
    return conn.execute("SELECT 1 FROM operator WHERE name = %s", (name,)).fetchone() is not None


def list_operators(conn: Conn) -> list[str]:
    return [r["name"] for r in conn.execute("SELECT name FROM operator ORDER BY name")]


# --- sessions ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in browser or script (the cookie's token, only its SHA-256 stored)."""

    kind: str
    login: str
    party_id: int | None
    party: str | None
    csrf: str
    """What every form and API write must send back."""
    created_at: datetime
    last_seen_at: datetime


def open_session(conn: Conn, token_sha256: str, who: Credential, csrf: str) -> None:
    conn.execute(
        "INSERT INTO console_session (token_sha256, kind, login, party_id, csrf)"
        " VALUES (%s, %s, %s, %s, %s)",
        (token_sha256, who.kind, who.login, who.party_id, csrf))


def session(conn: Conn, token_sha256: str, idle_seconds: int, max_seconds: int
            ) -> Session | None:
    """The session with this token, its ``last_seen_at`` now; None when there is none or
    it expired: idle longer than ``idle_seconds`` or older than ``max_seconds``, by the
    database's clock (every console process agrees). Expired sessions are deleted, this
    one and any other."""
    with conn.transaction():
        conn.execute(
            "DELETE FROM console_session WHERE last_seen_at"
            " <= clock_timestamp() - make_interval(secs => %s)"
            " OR created_at <= clock_timestamp() - make_interval(secs => %s)",
            (idle_seconds, max_seconds))
        row = conn.execute(
            "UPDATE console_session s SET last_seen_at = clock_timestamp()"
            " WHERE token_sha256 = %s"
            " RETURNING kind, login, party_id,"
            " (SELECT name FROM party WHERE id = s.party_id) AS party, csrf, created_at,"
            " last_seen_at", (token_sha256,)).fetchone()
    if row is None:
        return None
    return Session(row["kind"], row["login"], row["party_id"], row["party"], row["csrf"],
                   row["created_at"], row["last_seen_at"])


def close_session(conn: Conn, token_sha256: str) -> None:
    conn.execute("DELETE FROM console_session WHERE token_sha256 = %s", (token_sha256,))


def end_sessions(conn: Conn, kind: str, login: str) -> int:
    """End every console session of one login (``kind``: ``operator`` or ``company``);
    how many there were."""
    return conn.execute("DELETE FROM console_session WHERE kind = %s AND login = %s",
                        (kind, login)).rowcount


# --- failed logins -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Failures:
    """Failed logins within the window: by the name tried, by the client's address."""

    by_login: int
    by_source: int
    retry_after: float
    """Seconds until the oldest one counted leaves the window (0 if none counted)."""


#: Where a client has no IP address (a unix socket, a test client): all such clients
#: share one count, the strictest reading of "from one client address".
UNKNOWN_SOURCE = "0.0.0.0"


#: A failed login is kept by at most this much of the name tried: a name is at most 64
#: characters (:data:`NAME`), and a megabyte typed into the form is not stored whole.
LOGIN_KEPT = 256


def _source(source: str) -> str:
    try:
        return str(ipaddress.ip_address(source))
    except ValueError:
        return UNKNOWN_SOURCE


def failures(conn: Conn, login: str, source: str, window_seconds: int) -> Failures:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE login = %(l)s) AS by_login,"
        " count(*) FILTER (WHERE source = %(s)s::inet) AS by_source,"
        " greatest(0, extract(epoch FROM min(at) + make_interval(secs => %(w)s)"
        "  - clock_timestamp())) AS retry_after"
        " FROM console_login_failure WHERE (login = %(l)s OR source = %(s)s::inet)"
        " AND at > clock_timestamp() - make_interval(secs => %(w)s)",
        {"l": login[:LOGIN_KEPT], "s": _source(source), "w": window_seconds}).fetchone()
    assert row is not None
    return Failures(row["by_login"], row["by_source"], float(row["retry_after"] or 0))


#: Failed logins older than this are deleted when the next one is recorded: far beyond
#: any sane window, so the table stays the size of the last day's attempts.
KEEP_FAILURES_SECONDS = 86400


def record_failure(conn: Conn, login: str, source: str) -> None:
    conn.execute(
        "WITH old AS (DELETE FROM console_login_failure"
        " WHERE at < clock_timestamp() - make_interval(secs => %s))"
        " INSERT INTO console_login_failure (login, source) VALUES (%s, %s)",
        (KEEP_FAILURES_SECONDS, login[:LOGIN_KEPT], _source(source)))


def clear_failures(conn: Conn, login: str) -> None:
    """After a good login: that login's failures go (its client address's stay)."""
    conn.execute("DELETE FROM console_login_failure WHERE login = %s",
                 (login[:LOGIN_KEPT],))


# --- the message search ------------------------------------------------------------------

OUTCOMES = ("forwarded", "not-forwarded", "refused", "partial", "pending")

#: A message's outcome (:data:`OUTCOMES`) from its recipients' statuses ("250 2.0.0"),
#: the one place it is computed: ``forwarded`` every recipient 2xx and no control
#: message (the MIG found no error), ``not-forwarded`` 2xx but the MIG's errors went back
#: in a control message (SPEC R6.1), ``refused`` every recipient 5xx, ``partial`` some
#: 2xx some 5xx, ``pending`` none decided yet or one deferred (4xx). Over the rows of
#: ``message_recipient r`` of message ``m``.
OUTCOME_SQL = (
    "CASE WHEN count(r.id) = 0 OR bool_or(r.status IS NULL OR r.status NOT SIMILAR TO '[25]%%')"
    "  THEN 'pending'"
    " WHEN bool_and(r.status LIKE '2%%') THEN CASE WHEN EXISTS (SELECT 1 FROM forward c"
    "  WHERE c.message_id = m.id AND c.recipient = '*control*')"
    "  THEN 'not-forwarded' ELSE 'forwarded' END"
    " WHEN bool_and(r.status LIKE '5%%') THEN 'refused'"
    " ELSE 'partial' END")

#: Per message ``m``: its outcome and recipients (``o.outcome``, ``o.recipients``).
_OUTCOME_LATERAL = (
    " CROSS JOIN LATERAL (SELECT " + OUTCOME_SQL + " AS outcome,"
    " coalesce(json_agg(json_build_object('recipient', r.logical, 'status', r.status,"
    "  'reason', r.reason) ORDER BY r.logical) FILTER (WHERE r.id IS NOT NULL), '[]')"
    "  AS recipients FROM message_recipient r WHERE r.message_id = m.id) o")


def when(text: str | None, name: str) -> datetime | None:
    """A time a person gives a search (the console's ``since``/``until``, ``swctl audit
    --since``): ISO 8601, UTC when it has no offset (the search form's datetime-local
    field, labelled UTC); None for none given; ValueError naming ``name`` otherwise."""
    if text is None or not text.strip():
        return None
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name}: not a date and time: {text!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Query:
    """What the console searches by; every criterion given must hold."""

    text: str | None = None
    """Exactly: the Single Window id, either leg's queue id or Message-ID (``<>``
    optional)."""
    party: str | None = None
    """The submitting party, or the party of a recipient's logical address."""
    message_type: str | None = None
    """A message's name matches each of its releases (``PAXLST``: ``PAXLST-D03B``, ...);
    a release only itself."""
    outcome: str | None = None
    """One of :data:`OUTCOMES`."""
    since: datetime | None = None
    """From this time on (``received_at``; give it a time zone)."""
    until: datetime | None = None
    """Before this time."""
    party_id: int | None = None
    """A company's scope: only its own submissions."""
    limit: int = 100
    before: str | None = None
    """The id of the previous page's last message: only the messages strictly older in
    (``received_at``, ``id``) order. An id that is no message, or (for a company) not
    one of its own, gives no messages at all: never told apart."""


def _ids(text: str) -> list[str]:
    """A Message-ID as written, with and without its angle brackets."""
    bare = text.strip().removeprefix("<").removesuffix(">")
    return [text.strip(), bare, f"<{bare}>"]


#: One fragment per criterion; the value goes in as a parameter of that name. Measured
#: over 300,000 messages (EXPLAIN ANALYZE): ``text`` is a union of index look-ups
#: (migrations 0013, 0014), ~1 ms; the others filter the newest messages first
#: (message_received, message_party_received) and stop at the page's last row, a
#: recipient's party through one hashed set of that party's messages built from
#: message_recipient_logical (0014): ~5-70 ms, a party with almost no messages ~60 ms;
#: an outcome is computed per message until the page is full: ~100-250 ms for an
#: outcome one message in a hundred has.
#: A delivery into a maildrop has the queue id ``maildrop``, which names no message.
_CRITERIA = {
    "text": "m.id IN (SELECT id FROM message WHERE id = %(text)s OR queue_id = %(text)s"
            " UNION SELECT id FROM message WHERE header_message_id = ANY(%(ids)s)"
            " UNION SELECT message_id FROM forward"
            "  WHERE queue_id = %(text)s AND queue_id <> 'maildrop'"
            " UNION SELECT message_id FROM forward WHERE copy_message_id = ANY(%(ids)s)"
            " UNION SELECT message_id FROM notice_delivery"
            "  WHERE queue_id = %(text)s AND queue_id <> 'maildrop'"
            " UNION SELECT message_id FROM notice_delivery"
            "  WHERE copy_message_id = ANY(%(ids)s))",
    "party": "(m.party_id = (SELECT id FROM party WHERE name = %(party)s)"
             " OR EXISTS (SELECT 1 FROM message_recipient x"
             " JOIN address a ON a.logical = x.logical JOIN party y ON y.id = a.party_id"
             " WHERE x.message_id = m.id AND y.name = %(party)s))",
    # A release (PAXLST-D03B, GENDEC-1) is also found by its message's name: the type
    # without its last "-" part (mig.loader.MessageType.message).
    "message_type": "(m.message_type = %(message_type)s"
                    " OR regexp_replace(m.message_type, '-[^-]*$', '') = %(message_type)s)",
    "outcome": "o.outcome = %(outcome)s",
    "since": "m.received_at >= %(since)s",
    "until": "m.received_at < %(until)s",
    "party_id": "m.party_id = %(party_id)s",
    # The next page: older than the previous page's last row in the page's own order.
    # One InitPlan looks the cursor up, within the caller's scope (``scope``); none found
    # is a NULL, and a comparison with NULL holds for no row. A row comparison with
    # values known before the scan: its first column bounds message_received or
    # message_party_received (an index condition ``received_at <= ...``), the whole
    # comparison filters the few rows at that instant.
    "before": "(m.received_at, m.id) < ((SELECT b.received_at FROM message b"
              " WHERE b.id = %(before)s"
              " AND (%(scope)s::bigint IS NULL OR b.party_id = %(scope)s::bigint)),"
              " %(before)s)",
}

_COLUMNS = (
    "SELECT m.id, m.received_at, m.listener, p.name AS party, m.envelope_from, m.subject,"
    " m.message_type, m.queue_id, m.header_message_id, o.outcome, o.recipients")
_NEWEST = " ORDER BY m.received_at DESC, m.id DESC LIMIT %(limit)s"


def search(conn: Conn, q: Query) -> list[dict[str, Any]]:
    """The messages matching ``q``, newest first, at most ``q.limit``: each with its
    outcome and recipients (``recipient``, ``status``, ``reason``). One statement."""
    if q.outcome is not None and q.outcome not in OUTCOMES:
        raise StoreError(f"unknown outcome {q.outcome!r}: one of {', '.join(OUTCOMES)}")
    params: dict[str, Any] = {
        name: getattr(q, name) for name in _CRITERIA if getattr(q, name) is not None}
    if q.text is not None:
        params["text"] = q.text.strip()
        params["ids"] = _ids(q.text)
    params["limit"] = max(0, q.limit)
    if q.before is not None:
        params["scope"] = q.party_id
    rows_of = "message m"
    where = [_CRITERIA[name] for name in _CRITERIA if name in params and name != "outcome"]
    if q.outcome is None:
        # The page first, then the outcomes of its rows only.
        rows_of = ("(SELECT m.* FROM message m" + _where(where) + _NEWEST + ") m")
        where = []
    else:
        where.append(_CRITERIA["outcome"])
    rows: list[dict[str, Any]] = conn.execute(
        _COLUMNS + " FROM " + rows_of + " LEFT JOIN party p ON p.id = m.party_id"
        + _OUTCOME_LATERAL + _where(where) + _NEWEST, params).fetchall()
    return rows


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a search: its rows, and the ``before`` of the next page (None: this
    is the last)."""

    rows: list[dict[str, Any]]
    next_before: str | None


def search_page(conn: Conn, q: Query) -> Page:
    """:func:`search`'s page of ``q``, and whether there is another: one statement, one
    row more than the page asked for."""
    limit = max(0, q.limit)
    rows = search(conn, replace(q, limit=limit + 1))
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    return Page(rows, str(rows[-1]["id"]) if rows else None)


def _where(conditions: list[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def outcome(conn: Conn, message_id: str) -> str | None:
    """One message's outcome (:data:`OUTCOME_SQL`), None for no such message."""
    row = conn.execute("SELECT o.outcome FROM message m" + _OUTCOME_LATERAL
                       + " WHERE m.id = %s", (message_id,)).fetchone()
    return None if row is None else str(row["outcome"])


def owned(conn: Conn, message_id: str, party_id: int) -> bool:
    """Did that party submit this message? (A company sees only these.)"""
    row = conn.execute("SELECT 1 FROM message WHERE id = %s AND party_id = %s",
                       (message_id, party_id)).fetchone()
    return row is not None


def responses(conn: Conn, message_id: str) -> list[dict[str, Any]]:
    """The messages that answer a copy of this one (their In-Reply-To is a copy's
    Message-ID, ``forward.copy_message_id``): an agency's responses, oldest first."""
    rows: list[dict[str, Any]] = conn.execute(
        "SELECT m.id, m.received_at, p.name AS party, m.envelope_from, m.subject,"
        " m.message_type, o.outcome, o.recipients"
        " FROM message m LEFT JOIN party p ON p.id = m.party_id" + _OUTCOME_LATERAL
        + " WHERE m.in_reply_to IN (SELECT copy_message_id FROM forward"
        "  WHERE message_id = %s AND recipient NOT LIKE '*%%')"
        " ORDER BY m.received_at, m.id", (message_id,)).fetchall()
    return rows


# --- the directory, read-only ------------------------------------------------------------

_PARTIES = (
    "SELECT p.id, p.name, p.kind::text AS kind,"
    " CASE WHEN p.relay_host IS NOT NULL THEN p.relay_host || ':' || p.relay_port END"
    "  AS relay,"
    " ARRAY(SELECT network::text FROM peer_network WHERE party_id = p.id ORDER BY network)"
    "  AS peers,"
    " ARRAY(SELECT logical FROM address WHERE party_id = p.id ORDER BY logical)"
    "  AS addresses,"
    " ARRAY(SELECT login FROM account WHERE party_id = p.id ORDER BY login) AS accounts"
    " FROM party p")


def parties(conn: Conn) -> list[dict[str, Any]]:
    """Every party: name, kind, peers, relay (``HOST:PORT`` or None), its logical
    addresses and account logins, by name."""
    rows = conn.execute(_PARTIES + " ORDER BY p.name").fetchall()
    for row in rows:
        del row["id"]
    return rows


def party(conn: Conn, name: str) -> dict[str, Any] | None:
    """One party as :func:`parties` has it, with its addresses in full (``logical``,
    ``physical``, ``maildrop_login``, ``active``), the links that name it or its kind
    (``sender``, ``recipient``: a party's name or a kind; ``allowed``) and the routes
    from its addresses (``logical``, ``message_type``, ``destinations``)."""
    row = conn.execute(_PARTIES + " WHERE p.name = %s", (name,)).fetchone()
    if row is None:
        return None
    pid = row.pop("id")
    row["addresses"] = conn.execute(
        "SELECT logical, physical, maildrop_login, active FROM address WHERE party_id = %s"
        " ORDER BY logical", (pid,)).fetchall()
    row["links"] = conn.execute(
        "SELECT coalesce(s.name, l.sender_kind::text) AS sender,"
        " coalesce(r.name, l.recipient_kind::text) AS recipient, l.allowed FROM link l"
        " LEFT JOIN party s ON s.id = l.sender_party_id"
        " LEFT JOIN party r ON r.id = l.recipient_party_id"
        " WHERE %(id)s IN (l.sender_party_id, l.recipient_party_id)"
        " OR %(kind)s::party_kind IN (l.sender_kind, l.recipient_kind)"
        " ORDER BY l.sender_party_id IS NULL, l.recipient_party_id IS NULL, 1, 2",
        {"id": pid, "kind": row["kind"]}).fetchall()
    row["routes"] = conn.execute(
        "SELECT s.logical, r.message_type, array_agg(d.logical ORDER BY d.logical)"
        " AS destinations FROM route r JOIN address s ON s.id = r.address_id"
        " JOIN address d ON d.id = r.destination_id WHERE s.party_id = %s"
        " GROUP BY s.logical, r.message_type ORDER BY 1, 2", (pid,)).fetchall()
    result: dict[str, Any] = row
    return result


# --- the audit log: what each login looked at (migration 0015) ---------------------------

#: What the console records a view of: one message, a search (a list of messages), the
#: parties' list, one party, the Postfix queue (migration 0015's CHECK, said again).
ACTIONS = ("message", "search", "parties", "party", "queue")

#: A view's ``detail`` (a search's criteria, a party's name, an id as typed) is kept by at
#: most this much: a criterion is at most 998 characters, and a log row needs no more.
DETAIL_KEPT = 1000


def record_view(conn: Conn, kind: str, login: str, source: str, action: str,
                message_id: str | None = None, detail: str | None = None) -> None:
    """Record that ``login`` (an ``operator`` or a ``company``) from ``source`` looked at
    ``action``: a message (``message_id``), a search (its criteria in ``detail``), ... A
    client without an IP address is :data:`UNKNOWN_SOURCE`; long texts are cut."""
    if kind not in ("operator", "company"):
        raise StoreError(f"unknown kind of login {kind!r}")
    if action not in ACTIONS:
        raise StoreError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    conn.execute(
        "INSERT INTO console_view (kind, login, source, action, message_id, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (kind, login[:LOGIN_KEPT], _source(source), action, message_id,
         None if detail is None else detail[:DETAIL_KEPT]))


def views(conn: Conn, *, login: str | None = None, message_id: str | None = None,
          since: datetime | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The recorded views, newest first, at most ``limit``: of one login, of one message,
    from a time on (every criterion given must hold). Each: ``id``, ``at``, ``kind``,
    ``login``, ``source`` (text), ``action``, ``message_id``, ``detail``."""
    where: list[str] = []
    if login is not None:
        where.append("login = %(login)s")
    if message_id is not None:
        where.append("message_id = %(message_id)s")
    if since is not None:
        where.append("at >= %(since)s")
    rows: list[dict[str, Any]] = conn.execute(
        "SELECT id, at, kind, login, host(source) AS source, action, message_id, detail"
        " FROM console_view" + _where(where) + " ORDER BY at DESC, id DESC LIMIT %(limit)s",
        {"login": login, "message_id": message_id, "since": since,
         "limit": max(0, limit)}).fetchall()
    return rows
