"""Logging in to the console: sessions, cookies, slowed and throttled failures, CSRF."""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from http.cookies import SimpleCookie
from typing import Any

import pytest

from singlewindow import passwords
from singlewindow.console import auth
from tests.unit.console import world as w


def _cookie_attributes(set_cookie: str) -> tuple[str, str, set[str], dict[str, str]]:
    """(name, value, flags, attributes) of one Set-Cookie header."""
    name_value, *parts = [p.strip() for p in set_cookie.split(";")]
    name, _, value = name_value.partition("=")
    flags = {p.lower() for p in parts if "=" not in p}
    attrs = {p.split("=", 1)[0].lower(): p.split("=", 1)[1] for p in parts if "=" in p}
    return name, value, flags, attrs


def _session_cookie(headers: Any) -> tuple[str, set[str], dict[str, str]]:
    for header in headers.get_list("set-cookie"):
        name, value, flags, attrs = _cookie_attributes(header)
        if name == auth.SESSION_COOKIE:
            return value, flags, attrs
    raise AssertionError("no session cookie set")


def test_api_login_sets_a_secure_httponly_strict_cookie_and_stores_only_its_hash(
        world: w.World) -> None:
    client = world.client()
    answer = client.post("/api/session", json={"login": "op", "password": w.PASSWORD})
    assert answer.status_code == 200
    body = answer.json()
    assert body["kind"] == "operator" and body["login"] == "op" and body["party"] is None
    token, flags, attrs = _session_cookie(answer.headers)
    assert {"secure", "httponly"} <= flags
    assert attrs["samesite"].lower() == "strict" and attrs["path"] == "/"
    rows = world.conn.execute("SELECT token_sha256, csrf FROM console_session").fetchall()
    assert rows == [{"token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                     "csrf": body["csrf"]}]
    assert client.get("/api/messages").status_code == 200


def test_a_company_logs_in_with_its_account(world: w.World) -> None:
    answer = world.client().post("/api/session",
                                 json={"login": "acme-desk", "password": w.PASSWORD})
    assert answer.status_code == 200
    assert answer.json()["kind"] == "company" and answer.json()["party"] == "acme"


def test_a_wrong_password_is_refused_after_the_delay_and_counted(world: w.World) -> None:
    config = replace(world.config, console=replace(world.config.console, login_delay=0.4))
    client = world.client(config=config)
    start = time.monotonic()
    answer = client.post("/api/session", json={"login": "op", "password": "wrong one!"})
    assert time.monotonic() - start >= 0.4
    assert answer.status_code == 401 and answer.json() == {"error": "wrong login or password"}
    assert auth.SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert world.conn.execute("SELECT login, source::text FROM console_login_failure"
                              ).fetchall() == [{"login": "op", "source": "192.0.2.1/32"}]


def test_an_unknown_name_is_checked_against_a_dummy_hash(
        world: w.World, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    real = passwords.verify_strong

    def verify(password: str, stored: str) -> bool:
        checked.append(stored)
        return real(password, stored)
    monkeypatch.setattr(passwords, "verify_strong", verify)
    client = world.client()
    assert client.post("/api/session", json={"login": "nobody", "password": w.PASSWORD}
                       ).status_code == 401
    assert client.post("/api/session", json={"login": "op", "password": "wrong one!"}
                       ).status_code == 401
    # The same costly check ran for the unknown name as for the known one.
    assert len(checked) == 2 and all(h.startswith("{SHA512-CRYPT}$6$rounds=100000$")
                                     for h in checked)
    assert checked[0] != checked[1]


def test_too_many_failures_for_a_login_throttle_even_the_right_password(
        world: w.World) -> None:
    for n in range(3):
        answer = world.client(f"192.0.2.{10 + n}").post(
            "/api/session", json={"login": "op", "password": "wrong one!"})
        assert answer.status_code == 401
    client = world.client("192.0.2.99")
    answer = client.post("/api/session", json={"login": "op", "password": w.PASSWORD})
    assert answer.status_code == 429
    assert 1 <= int(answer.headers["retry-after"]) <= 60
    assert "set-cookie" not in answer.headers
    # Another name from another address is not affected.
    assert world.client("192.0.2.98").post(
        "/api/session", json={"login": "acme-desk", "password": w.PASSWORD}).status_code == 200


def test_too_many_failures_from_one_address_throttle_every_login_from_it(
        world: w.World) -> None:
    client = world.client("198.51.100.7")
    for name in ("a1", "a2", "a3"):
        assert client.post("/api/session", json={"login": name, "password": "x" * 9}
                           ).status_code == 401
    answer = client.post("/api/session", json={"login": "op", "password": w.PASSWORD})
    assert answer.status_code == 429 and "retry-after" in answer.headers
    assert world.client("198.51.100.8").post(
        "/api/session", json={"login": "op", "password": w.PASSWORD}).status_code == 200


def test_a_good_login_clears_that_logins_failures(world: w.World) -> None:
    client = world.client()
    for _ in range(2):
        client.post("/api/session", json={"login": "op", "password": "wrong one!"})
    assert client.post("/api/session", json={"login": "op", "password": w.PASSWORD}
                       ).status_code == 200
    assert world.conn.execute("SELECT count(*) AS n FROM console_login_failure"
                              " WHERE login = 'op'").fetchone() == {"n": 0}


def test_the_form_login_needs_its_double_submit_cookie(world: w.World) -> None:
    client = world.client()
    form = client.get("/login")
    cookie = SimpleCookie(form.headers["set-cookie"])[auth.LOGIN_CSRF_COOKIE].value
    _, _, flags, attrs = _cookie_attributes(form.headers["set-cookie"])
    assert {"secure", "httponly"} <= flags and attrs["samesite"].lower() == "strict"
    assert f'name="csrf" value="{cookie}"' in form.text
    fields = {"login": "op", "password": w.PASSWORD}
    # Without the cookie (another site's form) or with a field that does not match it.
    bare = world.client()
    assert bare.post("/login", data={**fields, "csrf": cookie}).status_code == 403
    assert client.post("/login", data={**fields, "csrf": "forged"}).status_code == 403
    assert client.post("/login", data=fields).status_code == 403
    done = client.post("/login", data={**fields, "csrf": cookie})
    assert done.status_code == 303 and done.headers["location"] == "/messages"
    _, flags, attrs = _session_cookie(done.headers)
    assert {"secure", "httponly"} <= flags and attrs["samesite"].lower() == "strict"
    assert client.get("/messages").status_code == 200


def test_the_form_login_shows_failure_and_throttle_on_the_page(world: w.World) -> None:
    client = world.client()
    for status in (401, 401, 401, 429):
        form = client.get("/login")
        cookie = SimpleCookie(form.headers["set-cookie"])[auth.LOGIN_CSRF_COOKIE].value
        page = client.post("/login", data={"login": "op", "password": "wrong one!",
                                           "csrf": cookie})
        assert page.status_code == status
        assert 'id="login-error"' in page.text
    assert "retry-after" in page.headers


def test_logout_needs_the_session_csrf_token(world: w.World) -> None:
    client, csrf = world.logged_in("op")
    assert client.post("/logout", data={"csrf": "wrong"}).status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    assert client.get("/api/messages").status_code == 200
    done = client.post("/logout", data={"csrf": csrf})
    assert done.status_code == 303 and done.headers["location"] == "/login"
    assert world.conn.execute("SELECT count(*) AS n FROM console_session").fetchone() == {
        "n": 0}
    assert client.get("/api/messages").status_code == 401


def test_api_logout_needs_the_csrf_header(world: w.World) -> None:
    client, csrf = world.logged_in("acme-desk")
    assert client.delete("/api/session").status_code == 403
    assert client.delete("/api/session", headers={auth.CSRF_HEADER: "nope"}
                         ).status_code == 403
    assert client.delete("/api/session", headers={auth.CSRF_HEADER: csrf}).status_code == 204
    assert client.get("/api/messages").status_code == 401


def test_an_idle_session_ends(world: w.World) -> None:
    config = replace(world.config, console=replace(world.config.console,
                                                   session_idle_seconds=1))
    client = world.client(config=config)
    assert client.post("/api/session", json={"login": "op", "password": w.PASSWORD}
                       ).status_code == 200
    assert client.get("/api/messages").status_code == 200
    time.sleep(1.2)
    assert client.get("/api/messages").status_code == 401
    assert client.get("/messages").headers["location"] == "/login"


def test_csrf_tokens_compare_only_when_both_are_given() -> None:
    assert auth.same("abc", "abc")
    assert not auth.same("", "")
    assert not auth.same(None, None)
    assert not auth.same("abc", "abd")
