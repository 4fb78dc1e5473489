"""The console's HTML pages (issue 18): Jinja2 templates in ``templates/``, filled from
the same functions as the API (:mod:`singlewindow.console.api`).

A page asked for without a session sends the browser to ``/login``; what a company may
not see is "not found" (404), exactly as what does not exist.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC
from pathlib import Path
from typing import Any

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from singlewindow import passwords
from singlewindow.console import api, audit, auth, timeline
from singlewindow.store import console as store

TEMPLATE_DIR = Path(__file__).parent / "templates"
#: The search page lists at most this many messages.
PAGE_LIMIT = 200

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True,
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_env.filters["iso"] = timeline.iso
_env.filters["clock"] = lambda at: (at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
                                    if at is not None else "")
_env.filters["utc"] = lambda at: (at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                                  if at is not None else "")


def render(name: str, status: int = 200, who: store.Session | None = None,
           **context: Any) -> HTMLResponse:
    html = _env.get_template(name).render(who=who, **context)
    return HTMLResponse(html, status_code=status)


def to(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


async def home(request: Request) -> Response:
    return to("/messages" if await auth.current(request) else "/login")


# --- logging in and out ------------------------------------------------------------------

def _login_form(status: int = 200, error: str | None = None, login: str = "",
                retry_after: int | None = None) -> Response:
    csrf = auth.new_login_csrf()
    response = render("login.html.j2", status, csrf=csrf, error=error, login=login)
    auth.set_login_csrf_cookie(response, csrf)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def login(request: Request) -> Response:
    if request.method == "GET":
        return to("/messages") if await auth.current(request) else _login_form()
    form = await request.form()
    if not auth.same(str(form.get("csrf") or ""), request.cookies.get(auth.LOGIN_CSRF_COOKIE)):
        raise auth.Refused(403, "the login form expired or came from elsewhere; reload it")
    name, password = str(form.get("login") or ""), str(form.get("password") or "")
    try:
        done = await auth.login(request, name, password)
    except auth.Refused as refused:
        return _login_form(refused.status, refused.text, name[:256], refused.retry_after)
    response = to("/messages")
    auth.set_session_cookie(response, request, done.token)
    response.delete_cookie(auth.LOGIN_CSRF_COOKIE, path="/login", secure=True,
                           httponly=True, samesite="strict")
    return response


async def logout(request: Request) -> Response:
    who = await auth.current(request)
    if who is None:
        return to("/login")
    form = await request.form()
    auth.check_csrf(who, str(form.get("csrf") or ""))
    await auth.logout(request)
    response = to("/login")
    auth.clear_session_cookie(response)
    return response


# --- one's own password -------------------------------------------------------------------

def _password_form(who: store.Session, status: int = 200, error: str | None = None,
                   done: bool = False) -> HTMLResponse:
    return render("password.html.j2", status, who, error=error, done=done,
                  min_length=passwords.MIN_LENGTH, max_length=passwords.MAX_LENGTH)


async def password(request: Request) -> Response:
    """Every logged-in user's own password (:func:`auth.change_password`). On success
    the page comes with the new session's cookie and CSRF token."""
    who = await auth.require_session(request)
    if request.method == "GET":
        return _password_form(who)
    form = await request.form()
    auth.check_csrf(who, str(form.get("csrf") or ""))
    try:
        done = await auth.change_password(request, who, str(form.get("current") or ""),
                                          str(form.get("new") or ""),
                                          str(form.get("again") or ""))
    except auth.Refused as refused:
        response = _password_form(who, refused.status, refused.text)
        if refused.retry_after is not None:
            response.headers["Retry-After"] = str(refused.retry_after)
        return response
    response = _password_form(replace(who, csrf=done.csrf), done=True)
    auth.set_session_cookie(response, request, done.token)
    return response


# --- messages ----------------------------------------------------------------------------

async def messages(request: Request) -> Response:
    who = await auth.require_session(request)
    params = dict(request.query_params)
    try:
        q = api.query(params, who, PAGE_LIMIT)
    except ValueError as exc:
        return render("messages.html.j2", 400, who, params=params, error=str(exc),
                      rows=None, outcomes=store.OUTCOMES, limit=PAGE_LIMIT)
    await audit.searched(request, who, q)
    page = await auth.in_store(request, api.search_page, q, who)
    return render("messages.html.j2", 200, who, params=params, error=None, rows=page.rows,
                  outcomes=store.OUTCOMES, limit=PAGE_LIMIT, **paging(params, page))


def paging(params: dict[str, str], page: store.Page) -> dict[str, str | None]:
    """The links of the messages page, each keeping the search: ``older``, the next
    page's (None on the last); ``newest``, the first page's (None on the first)."""
    return {"older": api.page_url("/messages", params, page.next_before)
            if page.next_before is not None else None,
            "newest": api.page_url("/messages", params, None)
            if params.get("before", "").strip() else None}


async def message(request: Request) -> Response:
    who = await auth.require_session(request)
    v = await auth.in_store(request, api.view, auth.settings(request), who,
                            request.path_params["id"])
    if v is None:
        raise auth.Refused(404, "no such message")
    v = await audit.message(request, who, v)
    return render("message.html.j2", 200, who, v=v)


# --- operators only ----------------------------------------------------------------------

async def parties(request: Request) -> Response:
    who = await auth.require_operator(request)
    await audit.seen(request, who, "parties")
    return render("parties.html.j2", 200, who,
                  parties=await auth.in_store(request, store.parties))


async def party(request: Request) -> Response:
    who = await auth.require_operator(request)
    found = await auth.in_store(request, store.party, request.path_params["name"])
    if found is None:
        raise auth.Refused(404, "no such party")
    await audit.seen(request, who, "party", found["name"])
    return render("party.html.j2", 200, who, party=found)


async def queue(request: Request) -> Response:
    who = await auth.require_operator(request)
    await audit.seen(request, who, "queue")
    state = await run_in_threadpool(api.queue, auth.settings(request))
    return render("queue.html.j2", 200, who, queue=state)


def error_page(status: int, text: str, who: store.Session | None = None) -> HTMLResponse:
    return render("error.html.j2", status, who, code=status, text=text)


ROUTES = [
    Route("/", home),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/password", password, methods=["GET", "POST"]),
    Route("/messages", messages),
    Route("/messages/{id}", message),
    Route("/parties", parties),
    Route("/parties/{name}", party),
    Route("/queue", queue),
]
