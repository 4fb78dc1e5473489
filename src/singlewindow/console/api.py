"""The console's JSON API under ``/api/`` (issue 18), and what the caller may see, which
the pages (:mod:`singlewindow.console.pages`) show from the same functions.

Every answer is scoped on the server: a company's search carries its party, a message
it did not submit is "no such message" (404) whether it exists or not, and what it sees
of its own passes :class:`singlewindow.console.timeline.Privacy`.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

import psycopg
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from singlewindow import config as configmod
from singlewindow import health, trace
from singlewindow.console import audit, auth, timeline
from singlewindow.store import console as store
from singlewindow.store import directory

Conn = psycopg.Connection[Any]

#: At most this many messages in one answer (``limit``), and the default.
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
#: The oldest deferred entries the queue page lists.
DEFERRED_SHOWN = 50


def plain(value: Any) -> Any:
    """``value`` with every time as UTC ISO 8601 and anything else JSON lacks as text."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return timeline.iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# --- searching ---------------------------------------------------------------------------

#: A ``before`` (a message's id, :attr:`singlewindow.store.console.Query.before`):
#: printable ASCII without spaces, as every id the hub gives is.
_MESSAGE_ID = re.compile(r"[!-~]+")


def _before(text: str | None) -> str | None:
    if text is not None and not _MESSAGE_ID.fullmatch(text):
        raise ValueError("before: not a message id (the last id of the page before)")
    return text


def query(params: dict[str, str], who: store.Session, limit: int = DEFAULT_LIMIT
          ) -> store.Query:
    """The search the query parameters ask for, within what ``who`` may see; ValueError
    says what is wrong with them."""
    def given(name: str) -> str | None:
        value = (params.get(name) or "").strip()
        if len(value) > 998:
            raise ValueError(f"{name}: too long")
        return value or None
    outcome = given("outcome")
    if outcome is not None and outcome not in store.OUTCOMES:
        raise ValueError(f"outcome: one of {', '.join(store.OUTCOMES)}")
    company = who.kind != "operator"
    return store.Query(
        text=given("q"), party=None if company else given("party"),
        message_type=given("type"), outcome=outcome,
        since=store.when(given("since"), "since"), until=store.when(given("until"), "until"),
        party_id=who.party_id if company else None, limit=limit,
        before=_before(given("before")))


def privacy(conn: Conn, party_id: int | None, data: Any) -> timeline.Privacy:
    """What party ``party_id`` may read of the addresses in ``data``: logical addresses
    and its own physical ones; another party's physical address as its logical one."""
    known = directory.known_addresses(conn, timeline.words(data))
    keep = {w for w, a in known.items() if a.logical == w or a.party.id == party_id}
    return timeline.Privacy(frozenset(keep), {w: a.logical for w, a in known.items()
                                              if w not in keep})


def listed(row: dict[str, Any], who: store.Session, p: timeline.Privacy | None
           ) -> dict[str, Any]:
    """One search result as the API gives it (a company: no party, listener or queue id)."""
    scrub = p.scrub if p is not None else str
    out: dict[str, Any] = {
        "id": row["id"], "received_at": timeline.iso(row["received_at"]),
        "subject": row.get("subject"), "type": row.get("message_type"),
        "outcome": row.get("outcome"),
        "recipients": [{"recipient": r["recipient"], "status": r["status"],
                        "reason": scrub(r["reason"]) if r["reason"] else r["reason"]}
                       for r in row.get("recipients", [])]}
    if who.kind == "operator":
        out.update({k: row.get(k) for k in ("party", "listener", "queue_id",
                                            "header_message_id", "envelope_from")})
    return out


def search(conn: Conn, q: store.Query, who: store.Session) -> list[dict[str, Any]]:
    rows = store.search(conn, q)
    p = privacy(conn, who.party_id, rows) if who.kind != "operator" else None
    return [listed(r, who, p) for r in rows]


def search_page(conn: Conn, q: store.Query, who: store.Session) -> store.Page:
    """:func:`search`'s rows of one page, and the next page's ``before`` (None: none)."""
    page = store.search_page(conn, q)
    p = privacy(conn, who.party_id, page.rows) if who.kind != "operator" else None
    return store.Page([listed(r, who, p) for r in page.rows], page.next_before)


def page_url(path: str, params: dict[str, str], before: str | None) -> str:
    """``path`` with the search ``params`` (the empty ones left out), on the page after
    ``before``'s, or the first page when None: a relative URL."""
    kept = {k: v for k, v in params.items() if k != "before" and v.strip()}
    if before is not None:
        kept["before"] = before
    return path + ("?" + urlencode(kept) if kept else "")


def link_next(response: Response, request: Request, before: str | None) -> Response:
    """The next page as an RFC 8288 ``Link: <...>; rel="next"``; none on the last page."""
    if before is not None:
        url = page_url(request.url.path, dict(request.query_params), before)
        response.headers["Link"] = f'<{url}>; rel="next"'
    return response


# --- one message -------------------------------------------------------------------------

def view(conn: Conn, config: configmod.Config, who: store.Session, ident: str
         ) -> timeline.View | None:
    """The message ``ident`` names as ``who`` may see it; None: no such message, or not
    one ``who`` may see (never told apart: a company's id is looked up among its own
    submissions only, before anything else is read)."""
    ident = ident.strip()
    if not 0 < len(ident) <= 998:
        return None
    if who.kind != "operator":
        return _company_view(conn, who, ident)
    found = trace.find(conn, config, ident)
    if found is None:
        return None
    if found["id"] is None:  # a notice about no known message: the hub's own business
        return timeline.notice_view(found)
    return timeline.operator_view(found, store.outcome(conn, found["id"]),
                                  store.responses(conn, found["id"]))


def _company_view(conn: Conn, who: store.Session, ident: str) -> timeline.View | None:
    if who.party_id is None:
        return None
    rows = store.search(conn, store.Query(text=ident, party_id=who.party_id, limit=1))
    if not rows:
        return None
    swid = rows[0]["id"]
    # Its view shows no Postfix lines: the message log alone, no read of Postfix's log.
    found = trace.gather(conn, swid)
    if found is None or found["id"] != swid or not store.owned(conn, swid, who.party_id):
        return None
    responses = store.responses(conn, swid)
    return timeline.company_view(found, rows[0]["outcome"], responses,
                                 privacy(conn, who.party_id, [found, responses]))


def view_json(v: timeline.View) -> dict[str, Any]:
    """``GET /api/messages/{id}``'s answer; for operators also ``trace``, every fact of
    ``swctl trace --json``, and ``views``, who looked at it last (the audit log)."""
    body = {"message": plain({**v.summary, "recipients": v.recipients}),
            "timeline": [s.as_dict() for s in v.steps],
            "findings": plain(v.findings), "responses": plain(v.responses)}
    if v.trace is not None:
        body["trace"] = plain(v.trace)
    if v.views is not None:
        body["views"] = plain(v.views)
    return body


# --- the queue ---------------------------------------------------------------------------

def queue(config: configmod.Config) -> dict[str, Any]:
    """Postfix's queue counts and its oldest deferred entries with their reasons, or
    ``error`` when ``postqueue`` could not be asked."""
    now = time.time()
    try:
        counts = health.list_queue(config, now)
        entries = health.list_queue_entries(config)
    except (OSError, ValueError) as exc:
        return {"error": str(exc), "counts": {}, "deferred": []}
    deferred = sorted((e for e in entries if e.queue_name == "deferred"),
                      key=lambda e: e.arrival_time)[:DEFERRED_SHOWN]
    return {"error": None,
            "counts": {name: {"messages": s.messages, "oldest_seconds": round(s.oldest)}
                       for name, s in counts.items()},
            "deferred": [{**asdict(e), "arrived_at": timeline.iso(
                datetime.fromtimestamp(e.arrival_time, UTC))} for e in deferred]}


# --- the endpoints -----------------------------------------------------------------------

def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


async def open_session(request: Request) -> Response:
    if not _is_json(request):
        return _json({"error": "send application/json"}, 415)
    body = await _json_body(request)
    if body is None or not isinstance(body.get("login"), str) \
            or not isinstance(body.get("password"), str):
        return _json({"error": 'send {"login": ..., "password": ...}'}, 400)
    done = await auth.login(request, body["login"], body["password"])
    response = _json({"csrf": done.csrf, "kind": done.who.kind, "login": done.who.login,
                      "party": done.who.party})
    auth.set_session_cookie(response, request, done.token)
    return response


async def close_session(request: Request) -> Response:
    who = await auth.require_session(request)
    auth.check_csrf(who, request.headers.get(auth.CSRF_HEADER))
    await auth.logout(request)
    response = Response(status_code=204)
    auth.clear_session_cookie(response)
    return response


async def change_password(request: Request) -> Response:
    """``{"current": ..., "new": ...}``: the caller's own new password; the answer carries
    the new session's CSRF token (and its cookie): every session of the login ended."""
    who = await auth.require_session(request)
    auth.check_csrf(who, request.headers.get(auth.CSRF_HEADER))
    if not _is_json(request):
        return _json({"error": "send application/json"}, 415)
    body = await _json_body(request)
    if body is None or not isinstance(body.get("current"), str) \
            or not isinstance(body.get("new"), str):
        return _json({"error": 'send {"current": ..., "new": ...}'}, 400)
    done = await auth.change_password(request, who, body["current"], body["new"],
                                      body["new"])
    response = _json({"csrf": done.csrf, "login": done.who.login,
                      "changed": True, "other_sessions_ended": True})
    auth.set_session_cookie(response, request, done.token)
    return response


def _is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip() == "application/json"


async def _json_body(request: Request) -> dict[str, Any] | None:
    """The request's JSON object, or None (not JSON, not an object)."""
    body: Any = None
    with contextlib.suppress(ValueError):
        body = json.loads(await request.body())
    return body if isinstance(body, dict) else None


async def messages(request: Request) -> Response:
    who = await auth.require_session(request)
    try:
        limit = int(request.query_params.get("limit") or DEFAULT_LIMIT)
        if not 0 < limit <= MAX_LIMIT:
            raise ValueError(f"limit: 1 to {MAX_LIMIT}")
        q = query(dict(request.query_params), who, limit)
    except ValueError as exc:
        return _json({"error": str(exc)}, 400)
    await audit.searched(request, who, q)
    page = await auth.in_store(request, search_page, q, who)
    return link_next(_json({"messages": page.rows}), request, page.next_before)


async def message(request: Request) -> Response:
    who = await auth.require_session(request)
    v = await auth.in_store(request, view, auth.settings(request), who,
                            request.path_params["id"])
    if v is None:
        return _json({"error": "no such message"}, 404)
    v = await audit.message(request, who, v)
    return _json(view_json(v))


async def parties(request: Request) -> Response:
    await audit.seen(request, await auth.require_operator(request), "parties")
    return _json({"parties": plain(await auth.in_store(request, store.parties))})


async def party(request: Request) -> Response:
    who = await auth.require_operator(request)
    found = await auth.in_store(request, store.party, request.path_params["name"])
    if found is None:
        return _json({"error": "no such party"}, 404)
    await audit.seen(request, who, "party", found["name"])
    return _json({"party": plain(found)})


async def queue_state(request: Request) -> Response:
    await audit.seen(request, await auth.require_operator(request), "queue")
    return _json(await run_in_threadpool(queue, auth.settings(request)))


ROUTES = [
    Route("/api/session", open_session, methods=["POST"]),
    Route("/api/session", close_session, methods=["DELETE"]),
    Route("/api/password", change_password, methods=["POST"]),
    Route("/api/messages", messages),
    Route("/api/messages/{id}", message),
    Route("/api/parties", parties),
    Route("/api/parties/{name}", party),
    Route("/api/queue", queue_state),
]
