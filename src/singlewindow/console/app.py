"""The web console's ASGI application (issue 18): pages for people, JSON under ``/api/``
for scripts, one stylesheet under ``/static/``, every response with the headers a
browser enforces (:data:`SECURITY_HEADERS`).

Served over HTTPS by :mod:`singlewindow.console.server`; it reads the message log and
the directory as the ``sw_console`` role and writes only its sessions and failed logins
and its audit log (:mod:`singlewindow.console.audit`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from singlewindow import config as configmod
from singlewindow.console import api, audit, auth, pages

STATIC_DIR = Path(__file__).parent / "static"
#: Sent with every response: no script, style or frame from anywhere but here, none
#: inline; never framed; no guessing of types; no Referer with a message id leaves.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "strict-transport-security": "max-age=31536000",
}
log = logging.getLogger("singlewindow.console")
#: Pool size: a console serves a few people at a time.
POOL_SIZE = 4


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response, and ``Cache-Control: no-store``
    to everything but the static files (a page shows who is logged in)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode().lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                if not static:
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)
        await self.app(scope, receive, with_headers)


#: The largest request body the console reads: a login form or JSON is a few hundred
#: bytes; nothing else is sent to it.
MAX_BODY = 64 * 1024


class BodyLimit:
    """Refuses, before anything reads it, a body larger than :data:`MAX_BODY` (413) or
    one without a Content-Length (411): every client of the console sends one, and a
    body of unknown length could only be counted while it is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            status = None
            if length is None:
                status = 411 if b"transfer-encoding" in headers else None
            elif not length.isdigit() or int(length) > MAX_BODY:
                status = 413
            if status is not None:
                response = JSONResponse({"error": "request body too large or of unknown "
                                                  "length"}, status_code=status)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Console(Starlette):
    """Starlette, with :class:`SecurityHeaders` outside even its error handling, so an
    internal error's answer carries the headers too."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(BodyLimit(super().build_middleware_stack()))


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def refused(request: Request, exc: Exception) -> Response:
    """A :class:`singlewindow.console.auth.Refused` or Starlette's HTTPException as JSON
    under ``/api/``, else as a page (a page without a session: to ``/login``)."""
    if isinstance(exc, auth.Refused):
        status, text, retry = exc.status, exc.text, exc.retry_after
    else:
        assert isinstance(exc, HTTPException)
        status, text, retry = exc.status_code, str(exc.detail), None
        if status == 404:
            text = "not found"
    headers = {"Retry-After": str(retry)} if retry is not None else None
    if _is_api(request):
        return JSONResponse({"error": text}, status_code=status, headers=headers)
    if status == 401:
        return pages.to("/login")
    response = pages.error_page(status, text, await auth.current(request)
                                if status != 429 else None)
    if headers:
        response.headers.update(headers)
    return response


async def unavailable(request: Request, exc: Exception) -> Response:
    """The database did not answer: 503, so the person retries rather than thinks the
    message or the session is gone. Also what the console answers when it cannot write
    the audit row of what it would show (:class:`singlewindow.console.audit.Unrecorded`,
    already logged): fail closed, nothing shown."""
    if isinstance(exc, audit.Unrecorded):
        text = "the audit log cannot be written right now; try again shortly"
    else:
        log.warning("console: database unavailable: %s", exc)
        text = "the message log is unavailable right now; try again shortly"
    if _is_api(request):
        return JSONResponse({"error": text}, status_code=503, headers={"Retry-After": "10"})
    response = pages.error_page(503, text)
    response.headers["Retry-After"] = "10"
    return response


def console_pool(config: configmod.Config) -> ConnectionPool[Any]:
    """Connections as the ``sw_console`` role (autocommit: each statement stands alone)."""
    db = config.database
    return ConnectionPool(
        db.dsn(configmod.CONSOLE_ROLE), min_size=0, max_size=POOL_SIZE,
        timeout=db.connect_timeout, open=False, check=ConnectionPool.check_connection,
        kwargs={"row_factory": dict_row, "autocommit": True,
                "connect_timeout": db.connect_timeout, "application_name": "sw-console"})


def create_app(config: configmod.Config, pool: ConnectionPool[Any] | None = None
               ) -> Starlette:
    """The console over ``pool`` (else a pool of its own as ``sw_console``, opened and
    closed with the application)."""
    own = pool is None
    used = console_pool(config) if pool is None else pool

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if own:
            used.open()
        try:
            yield
        finally:
            if own:
                used.close()

    app = Console(
        routes=[*pages.ROUTES, *api.ROUTES,
                Mount("/static", StaticFiles(directory=STATIC_DIR), name="static")],
        exception_handlers={auth.Refused: refused, HTTPException: refused,
                            PoolTimeout: unavailable, psycopg.OperationalError: unavailable,
                            audit.Unrecorded: unavailable},
        lifespan=lifespan)
    app.state.config = config
    app.state.pool = used
    return app
