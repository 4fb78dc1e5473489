"""The whole way of one message, as ``swctl trace`` prints it and the web console shows it
(issue 18): one gathering of the facts and one wording of each leg, two layouts.

:func:`gather` reads the message log (:func:`singlewindow.store.messages.trace`) and
counts each copy's maildrop deferrals; :func:`find` adds how Postfix's delivery of each
leg went, from its log, with every party's physical address shown as its logical one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import psycopg

from singlewindow import config as configmod
from singlewindow.store import directory, messages
from singlewindow.transport import evidence


def gather(conn: psycopg.Connection[Any], ident: str) -> dict[str, Any] | None:
    """One message by Single Window id, either leg's queue id or Message-ID (see
    :func:`singlewindow.store.messages.trace`), each copy's and notice's
    ``maildrop_deferrals`` counted: the message log's facts only, no Postfix log read (a
    company's view of its message shows no Postfix lines). None when nothing is known."""
    found = messages.trace(conn, ident)
    if found is not None and found["id"] is None:
        # A notice about no known message has only its own row (messages.trace).
        _count_deferrals([found["notice"]], found["notice"]["events"])
    elif found is not None:
        _count_deferrals([*found["forwards"], *found["notices"]], found["events"])
    return found


def find(conn: psycopg.Connection[Any], config: configmod.Config, ident: str
         ) -> dict[str, Any] | None:
    """:func:`gather`'s facts with ``postfix`` status lines on each copy and notice and
    the inbound leg's own Postfix trail in ``postfix``: all ``swctl trace`` shows."""
    found = gather(conn, ident)
    if found is not None and found["id"] is None:
        _postfix_status(conn, config, [found["notice"]])
    elif found is not None:
        found["postfix"] = _postfix_status(conn, config,
                                           [*found["forwards"], *found["notices"]],
                                           found["queue_id"])
    return found


#: A copy row's pseudo-recipient → the generated mail whose first leg (into Postfix, to
#: the submitter's logical address) it records.
FIRST_LEG = {"*control*": "control message", "*agency-failure*": "agency-failure notice"}
#: A notice row's kind, in words.
NOTICE_KINDS = {"dsn": "DSN", "control": "control message",
                "agency-failure": "agency-failure notice"}


def sent(row: dict[str, Any], *, clock: bool = True) -> str:
    """How a copy or notice ended: its state (and when, with ``clock``; the console shows
    the time beside it), queue id or refusal, attempts beyond the first, and the times a
    POP3 session's lock made it wait."""
    at = f" at {row['injected_at']:%H:%M:%S}" if clock and row.get("injected_at") else ""
    if row["state"] == "refused":
        text = f"refused: {row['refusal']}"
    elif row["queue_id"] == "maildrop":
        text = f"saved into the POP3 maildrop{at}"
    else:
        text = f"{row['state']}{at}, queue id {row['queue_id'] or '-'}"
    text += f", {row['attempts']} attempts" if row["attempts"] > 1 else ""
    waits = row.get("maildrop_deferrals", 0)
    return text + (f", deferred {waits}x: a POP3 session held the maildrop" if waits else "")


def notice_label(n: dict[str, Any], submitter: str | None) -> str:
    """What a notice row is and to whom."""
    label = NOTICE_KINDS.get(n["kind"], n["kind"])
    if n["kind"] == "dsn" and submitter and n["recipient"].lower() == submitter.lower():
        return f"{label} back to the submitter {n['recipient']}"
    return f"{label} to {n['recipient']}"


def status_lines(lines: list[dict[str, str]] | None) -> list[str]:
    """Postfix's status lines of one leg (``find``'s ``postfix`` rows), one text each."""
    return [f"postfix: to=<{st['to']}> status={st['status']} dsn={st['dsn']} "
            f"relay={st['relay']}" + (f" ({st['text']})" if st["text"] else "")
            for st in lines or []]


_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+[A-Za-z0-9]")


def _status_rows(lines: list[evidence.Status], shown: Callable[[str], str]
                 ) -> list[dict[str, str]]:
    return [{"to": shown(st.to), "relay": st.relay, "dsn": st.dsn, "status": st.status,
             "text": shown(st.text)} for st in lines]


def _postfix_status(conn: psycopg.Connection[Any], config: configmod.Config,
                    rows: list[dict[str, Any]], inbound: str | None = None
                    ) -> dict[str, Any] | None:
    """Add to each copy or notice row how Postfix's delivery of it went (``postfix``: its
    log's status lines), with every party's physical address shown as its logical one.
    The hub's own mail has the null sender, so this is the only place its failure shows.

    ``inbound``: the submission's own queue id; returned, its attempts (into the
    transport) and the DSNs Postfix wrote about it, each with its own attempts (issue 14:
    a failure DSN on its way back to the submitter)."""
    ids = {r["queue_id"] for r in rows if r["queue_id"] and r["queue_id"] != "maildrop"}
    trail = evidence.postfix_trail(config.postfix_maillog, ids,
                                   follow=frozenset({inbound} if inbound else ()))
    words = {m[0].lower() for s in trail.status.values() for st in s
             for m in _ADDRESS.finditer(f"{st.to} {st.text}")}
    known = directory.known_addresses(conn, words)

    def shown(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            address = known.get(match[0].lower())
            return address.logical if address is not None else match[0]
        return _ADDRESS.sub(one, text)

    for r in rows:
        r["postfix"] = _status_rows(trail.status.get(r["queue_id"] or "", []), shown)
    if not inbound:
        return None
    return {"queue_id": inbound, "status": _status_rows(trail.status[inbound], shown),
            "notifications": [
                {"what": what, "queue_id": dsn_queue_id,
                 "status": _status_rows(trail.status[dsn_queue_id], shown)}
                for what, dsn_queue_id in trail.notified[inbound]]}


def _count_deferrals(rows: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    """Each row's ``maildrop_deferrals``: its ``maildrop-deferred`` events."""
    for r in rows:
        r["maildrop_deferrals"] = sum(
            1 for e in events if e["kind"] == "maildrop-deferred"
            and e["detail"].get("copy_message_id") == r["copy_message_id"])
