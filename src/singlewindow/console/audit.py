"""The console's audit log (issue 18): what each login looked at, written before it is
shown (:func:`singlewindow.store.console.record_view`, migration 0015).

Every handler that shows a message, a search's results, the parties, a party or the
queue calls one function of this module, after it has found what it will show and
before it answers. Fail closed: when the row cannot be written, nothing is shown;
:class:`Unrecorded` is answered 503 (:mod:`singlewindow.console.app`), as a database
that does not answer is. A lookup that finds nothing to show (a 404) is not recorded.

An operator's view of a message carries the last :data:`VIEWS_SHOWN` views of that
message (this one included); a company never sees views, not even of its own messages:
they would name the hub's operators.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from starlette.requests import Request

from singlewindow.console import auth, timeline
from singlewindow.store import StoreError
from singlewindow.store import console as store

#: The message page and ``GET /api/messages/{id}`` show at most this many of its views.
VIEWS_SHOWN = 20
#: What an operator is shown of each view of a message.
VIEW_FIELDS = ("at", "kind", "login", "source")

log = logging.getLogger("singlewindow.console")


class Unrecorded(Exception):
    """The audit row could not be written: nothing is shown (503)."""


async def _record(request: Request, who: store.Session, action: str,
                  message_id: str | None = None, detail: str | None = None,
                  read: bool = False) -> list[dict[str, Any]]:
    """Write the row; with ``read``, the last views of ``message_id`` after it."""
    source = auth.client_address(request)

    def work(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
        store.record_view(conn, who.kind, who.login, source, action, message_id, detail)
        if not read:
            return []
        return store.views(conn, message_id=message_id, limit=VIEWS_SHOWN)
    try:
        return await auth.in_store(request, work)
    except (psycopg.Error, PoolTimeout, StoreError) as exc:
        log.error("console: audit row not written, nothing shown: %s %s %s: %s",
                  who.kind, who.login, action, exc)
        raise Unrecorded(str(exc)) from exc


def message_id(v: timeline.View) -> str | None:
    """The Single Window id of the message ``v`` shows; None for a notice about no known
    message (its summary's id is the notice's Message-ID)."""
    ident = (v.trace if v.trace is not None else v.summary).get("id")
    return None if ident is None else str(ident)


async def message(request: Request, who: store.Session, v: timeline.View
                  ) -> timeline.View:
    """Record ``who``'s view of the message ``v`` shows (the id as asked for in
    ``detail`` when it is not the Single Window id); for an operator, ``v`` with
    ``views``: the last views of that message, newest first."""
    swid = message_id(v)
    asked = str(request.path_params.get("id", "")).strip()
    operator = who.kind == "operator"
    rows = await _record(request, who, "message", swid, asked if asked != swid else None,
                         read=operator and swid is not None)
    if not operator:
        return v
    return dataclasses.replace(v, views=[{k: r[k] for k in VIEW_FIELDS} for r in rows])


def criteria(q: store.Query) -> str:
    """A search's criteria as the log keeps them: each one given, ``name=value`` (texts
    JSON-quoted, so no criterion can forge a line of ``swctl audit``; times ISO 8601).
    A company's scope (``party_id``) is not repeated: its login says it."""
    parts = []
    for field in dataclasses.fields(q):
        value = getattr(q, field.name)
        if value is None or field.name == "party_id":
            continue
        if isinstance(value, datetime):
            text = str(timeline.iso(value))
        else:
            text = json.dumps(value) if isinstance(value, str) else str(value)
        parts.append(f"{field.name}={text}")
    return " ".join(parts)


async def searched(request: Request, who: store.Session, q: store.Query) -> None:
    """Record a search (a list of messages) and its criteria."""
    await _record(request, who, "search", detail=criteria(q))


async def seen(request: Request, who: store.Session, action: str,
               detail: str | None = None) -> None:
    """Record a view of the parties (``parties``), a party (``party``, its name in
    ``detail``) or the queue (``queue``)."""
    await _record(request, who, action, detail=detail)
