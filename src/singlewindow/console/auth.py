"""Who is asking the console (issue 18): logins, sessions, CSRF tokens, slowed failures.

Operators log in with a name of their own (``swctl operator add``), companies with their
account, checked against the same strong hash as POP3 and the MSA
(:func:`singlewindow.passwords.verify_strong`). A login hands out a random token in the
``sw_session`` cookie; the store keeps only its SHA-256 (a copy of the table opens no
session) and the session's CSRF token, which every form and API write sends back.

Failed logins are answered only after ``[console] login_delay`` and counted per login
name and per client address; past ``login_attempts`` within ``login_window_seconds``
every attempt is refused (HTTP 429), the right password included, until the window has
passed.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from singlewindow import config as configmod
from singlewindow import passwords
from singlewindow.store import console as store
from singlewindow.store import directory

#: The session cookie: a random token (:data:`TOKEN_BYTES`), only its SHA-256 stored.
SESSION_COOKIE = "sw_session"
#: The login form's double-submit cookie: the same value as its hidden ``csrf`` field.
LOGIN_CSRF_COOKIE = "sw_login_csrf"
#: What an API write sends the session's CSRF token in.
CSRF_HEADER = "X-CSRF-Token"
TOKEN_BYTES = 32

T = TypeVar("T")
log = logging.getLogger("singlewindow.console")


class Refused(Exception):
    """A request the console answers with ``status`` (401, 403, 404, 429) and ``text``;
    :mod:`singlewindow.console.app` shows it as a page or as JSON, by the path."""

    def __init__(self, status: int, text: str, retry_after: int | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.retry_after = retry_after


# --- the store, from a request -----------------------------------------------------------

def settings(request: Request) -> configmod.Config:
    config: configmod.Config = request.app.state.config
    return config


async def in_store(request: Request, work: Callable[..., T], *args: Any) -> T:
    """``work(conn, *args)`` on a pooled connection, in a worker thread (psycopg's
    connections block; the event loop must not)."""
    pool: ConnectionPool[Any] = request.app.state.pool

    def run() -> T:
        with pool.connection() as conn:
            return work(conn, *args)
    return await run_in_threadpool(run)


# --- logging in --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LoggedIn:
    """A new session: the cookie's token (given to the client only) and the session."""

    token: str
    csrf: str
    who: store.Credential


@functools.cache
def _dummy_hash() -> str:
    """A hash no password matches, checked for a name nobody has: the answer takes as
    long as for a known name, so the time does not tell which names exist."""
    return passwords.strong_hash(secrets.token_urlsafe(24))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def client_address(request: Request) -> str:
    return request.client.host if request.client else store.UNKNOWN_SOURCE


async def _not_throttled(request: Request, name: str, source: str, what: str) -> None:
    """:class:`Refused` 429 (after ``login_delay``) while ``name`` or ``source`` has
    ``login_attempts`` failures within the window: a wrong password at the login and a
    wrong current password at a change of password count alike."""
    console = settings(request).console
    seen = await in_store(request, store.failures, name, source, console.login_window_seconds)
    if max(seen.by_login, seen.by_source) >= console.login_attempts:
        log.info("console %s throttled: login=%r source=%s failures=%d/%d", what, name[:64],
                 source, seen.by_login, seen.by_source)
        await asyncio.sleep(console.login_delay)
        raise Refused(429, "too many failed logins; try again later",
                      retry_after=max(1, math.ceil(seen.retry_after)))


async def login(request: Request, name: str, password: str) -> LoggedIn:
    """Check ``name``/``password`` and open a session, or raise :class:`Refused` (429
    while throttled, 401 wrong), a failure only after ``login_delay``."""
    console = settings(request).console
    source = client_address(request)
    name = name.strip()
    await _not_throttled(request, name, source, "login")
    known = 0 < len(name) <= store.LOGIN_KEPT
    who = await in_store(request, store.credential, name) if known else None
    stored = who.password_hash if who is not None else _dummy_hash()
    # Longer than any password we accept: refused without hashing megabytes.
    good = len(password) <= passwords.MAX_LENGTH and await run_in_threadpool(
        passwords.verify_strong, password, stored)
    if who is None or not good:
        log.info("console login failed: login=%r source=%s", name[:64], source)
        await in_store(request, store.record_failure, name, source)
        await asyncio.sleep(console.login_delay)
        raise Refused(401, "wrong login or password")
    token, csrf = secrets.token_urlsafe(TOKEN_BYTES), secrets.token_urlsafe(TOKEN_BYTES)

    def opened(conn: psycopg.Connection[Any]) -> None:
        store.clear_failures(conn, who.login)
        store.open_session(conn, token_hash(token), who, csrf)
    await in_store(request, opened)
    log.info("console login: %s %s from %s", who.kind, who.login, source)
    return LoggedIn(token, csrf, who)


# --- changing one's password -------------------------------------------------------------

async def change_password(request: Request, who: store.Session, current: str, new: str,
                          again: str) -> LoggedIn:
    """``who`` sets its own new password, or :class:`Refused`: 429 while throttled (as
    the login), 400 new and again differ or the new one breaks the rules of
    :func:`singlewindow.passwords.check` (as ``swctl``), 403 the current one is wrong
    (counted as a failed login, answered after ``login_delay``).

    On success every session of that login ends, the one asking too, and a new one
    opens in its place (:class:`LoggedIn`: a new cookie token and CSRF token), so that a
    stolen copy of the old cookie stops working with the old password. A company's
    account gets both hashes at once: MSA and POP3 take the new password from the next
    authentication on (Dovecot keeps no cache of them)."""
    source = client_address(request)
    await _not_throttled(request, who.login, source, "password change")
    if new != again:
        raise Refused(400, "the new password and its repetition differ")
    try:
        passwords.check(new)
    except passwords.PasswordError as exc:
        raise Refused(400, str(exc)) from None
    cred = await in_store(request, store.credential, who.login)
    good = (cred is not None and cred.kind == who.kind
            and len(current) <= passwords.MAX_LENGTH
            and await run_in_threadpool(passwords.verify_strong, current, cred.password_hash))
    if cred is None or not good:
        log.info("console password change refused: wrong current password: login=%r "
                 "source=%s", who.login, source)
        await in_store(request, store.record_failure, who.login, source)
        await asyncio.sleep(settings(request).console.login_delay)
        raise Refused(403, "the current password is wrong")
    strong = await run_in_threadpool(passwords.strong_hash, new)
    digest = passwords.digest_md5_hash(who.login, settings(request).hub.sasl_realm, new)
    token, csrf = secrets.token_urlsafe(TOKEN_BYTES), secrets.token_urlsafe(TOKEN_BYTES)

    def changed(conn: psycopg.Connection[Any]) -> None:
        assert cred is not None
        with conn.transaction():
            if cred.kind == "operator":
                store.set_operator_password(conn, cred.login, strong)
            else:
                directory.set_account_password(conn, cred.login, strong, digest)
            store.clear_failures(conn, cred.login)
            store.open_session(conn, token_hash(token), cred, csrf)
    await in_store(request, changed)
    log.info("console password changed: %s %s from %s", cred.kind, cred.login, source)
    return LoggedIn(token, csrf, cred)


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=settings(request).console
                        .session_max_seconds, path="/", secure=True, httponly=True,
                        samesite="strict")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True,
                           samesite="strict")


async def logout(request: Request) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await in_store(request, store.close_session, token_hash(token))


# --- who is asking -----------------------------------------------------------------------

async def current(request: Request) -> store.Session | None:
    """The caller's live session (touched: its idle time starts again), or None."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    console = settings(request).console
    return await in_store(request, store.session, token_hash(token),
                          console.session_idle_seconds, console.session_max_seconds)


async def require_session(request: Request) -> store.Session:
    """The caller's session, or :class:`Refused` 401."""
    who = await current(request)
    if who is None:
        raise Refused(401, "not logged in")
    return who


async def require_operator(request: Request) -> store.Session:
    """An operator's session; anyone else is told there is nothing here (404), not that
    something exists that they may not see (no session: 401)."""
    who = await require_session(request)
    if who.kind != "operator":
        raise Refused(404, "not found")
    return who


def same(given: str | None, expected: str | None) -> bool:
    """Compared in constant time; an empty or missing token never matches."""
    return bool(given) and bool(expected) and hmac.compare_digest(
        str(given).encode(), str(expected).encode())


def check_csrf(who: store.Session, given: str | None) -> None:
    if not same(given, who.csrf):
        raise Refused(403, "missing or wrong CSRF token")


def new_login_csrf() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def set_login_csrf_cookie(response: Response, value: str) -> None:
    response.set_cookie(LOGIN_CSRF_COOKIE, value, path="/login", secure=True, httponly=True,
                        samesite="strict")
