"""The console application: the headers on every response, errors as pages or JSON by
path, redirects to the login, its own pool."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from singlewindow.console import app as appmod
from tests.unit.console import world as w

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _secured(answer: Any, cached: bool = False) -> None:
    h = answer.headers
    assert h["content-security-policy"] == CSP
    assert h["x-frame-options"] == "DENY"
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"
    assert h["strict-transport-security"] == "max-age=31536000"
    assert "server" not in h
    if not cached:
        assert h["cache-control"] == "no-store"


def test_every_kind_of_response_carries_the_security_headers(world: w.World) -> None:
    anonymous = world.client()
    client, _ = world.logged_in("op")
    for answer in (anonymous.get("/"), anonymous.get("/login"), anonymous.get("/messages"),
                   anonymous.get("/api/messages"), anonymous.get("/nowhere"),
                   anonymous.get("/api/nowhere"), client.get("/messages"),
                   client.get(f"/messages/{w.SW_A}"), client.get("/api/messages"),
                   client.get(f"/api/messages/{w.SW_A}"), client.get("/messages/SWnone"),
                   client.get("/api/messages/SWnone"), client.get("/parties"),
                   client.post("/logout", data={"csrf": "x"})):
        _secured(answer)
    static = anonymous.get("/static/console.css")
    assert static.status_code == 200 and static.headers["content-type"].startswith("text/css")
    _secured(static, cached=True)
    missing = anonymous.get("/static/nothing.js")
    assert missing.status_code == 404
    _secured(missing, cached=True)


def test_an_internal_error_answers_with_the_headers_too(
        world: w.World, monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = world.logged_in("op")

    def broken(*args: Any) -> None:
        raise RuntimeError("boom")
    monkeypatch.setattr("singlewindow.console.api.search_page", broken)
    app = client.app
    answer = TestClient(app, base_url="https://testserver", raise_server_exceptions=False,
                        cookies=client.cookies).get("/api/messages")
    assert answer.status_code == 500
    _secured(answer)


def test_not_found_is_a_page_or_json_by_path(world: w.World) -> None:
    client, _ = world.logged_in("op")
    page = client.get("/messages/SW20991231000000000ffff0000")
    assert page.status_code == 404 and 'id="not-found"' in page.text
    assert page.headers["content-type"].startswith("text/html")
    assert client.get("/no/such/page").status_code == 404
    assert 'id="not-found"' in client.get("/no/such/page").text
    api = client.get("/api/messages/SW20991231000000000ffff0000")
    assert api.status_code == 404 and api.json() == {"error": "no such message"}
    assert client.get("/api/nothing").json() == {"error": "not found"}


def test_without_a_session_pages_go_to_the_login_and_the_api_says_401(world: w.World) -> None:
    client = world.client()
    assert client.get("/").headers["location"] == "/login"
    for path in ("/messages", f"/messages/{w.SW_A}", "/parties", "/queue"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/login"
    for path in ("/api/messages", f"/api/messages/{w.SW_A}", "/api/parties", "/api/queue"):
        answer = client.get(path)
        assert answer.status_code == 401 and answer.json() == {"error": "not logged in"}
    logged_in, _ = world.logged_in("op")
    assert logged_in.get("/").headers["location"] == "/messages"
    assert logged_in.get("/login").headers["location"] == "/messages"


def test_a_forged_session_cookie_is_no_session(world: w.World) -> None:
    client = world.client()
    client.cookies.set("sw_session", "A" * 43)
    assert client.get("/api/messages").status_code == 401


def test_the_api_login_wants_json(world: w.World) -> None:
    client = world.client()
    assert client.post("/api/session", data={"login": "op", "password": "x"}
                       ).status_code == 415
    assert client.post("/api/session", content=b"{", headers={
        "content-type": "application/json"}).status_code == 400
    assert client.post("/api/session", json={"login": "op"}).status_code == 400


def test_the_console_opens_a_pool_of_its_own_as_sw_console(world: w.World) -> None:
    app = appmod.create_app(world.config)
    with TestClient(app, base_url="https://testserver") as client:
        assert client.post("/api/session", json={"login": "op", "password": "wrong one!"}
                           ).status_code == 401
        with app.state.pool.connection() as conn:
            assert conn.execute("SELECT current_user AS u").fetchone() == {"u": "sw_console"}


def test_a_database_that_does_not_answer_is_a_503_not_an_error(world: w.World) -> None:
    gone = replace(world.config, database=replace(
        world.config.database, conninfo="host=/tmp/sw-nothing-here dbname=x",
        connect_timeout=1))
    app = appmod.create_app(gone)
    with TestClient(app, base_url="https://testserver") as client:
        client.cookies.set("sw_session", "A" * 43)
        api = client.get("/api/messages")
        assert api.status_code == 503 and "unavailable" in api.json()["error"]
        assert api.headers["retry-after"] == "10"
        page = client.get("/messages")
        assert page.status_code == 503 and "unavailable" in page.text
        _secured(page)


def test_a_large_body_or_one_of_unknown_length_is_refused_unread(world: w.World) -> None:
    client = world.client()
    big = client.post("/api/session", content=b"{" + b" " * (appmod.MAX_BODY + 1) + b"}",
                      headers={"content-type": "application/json"})
    assert big.status_code == 413
    _secured(big)

    def chunks() -> Iterator[bytes]:
        yield b'{"login": "op", "password": "correct horse battery"}'
    unknown = client.post("/api/session", content=chunks(),
                          headers={"content-type": "application/json"})
    assert unknown.status_code == 411
    assert client.post("/api/session", json={"login": "op", "password": w.PASSWORD}
                       ).status_code == 200
