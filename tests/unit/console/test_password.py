"""Changing one's own password in the console (the ``/password`` page and
``POST /api/password``): CSRF, the rules swctl keeps, a wrong current password counted
and throttled as a failed login, both hashes of a company's account, every other
session ended and the one asking carried on under a fresh token."""

from __future__ import annotations

from typing import Any

import lxml.html
from starlette.testclient import TestClient

from singlewindow import passwords
from singlewindow.console import auth
from tests.unit.console import world as w

NEW = "a brand new secret"


def _form(current: str = w.PASSWORD, new: str = NEW, again: str = NEW,
          csrf: str = "") -> dict[str, str]:
    return {"current": current, "new": new, "again": again, "csrf": csrf}


def _hash(world: w.World, login: str) -> str:
    row = world.conn.execute(
        "SELECT password_hash FROM operator WHERE name = %(l)s UNION ALL"
        " SELECT password_hash FROM account WHERE login = %(l)s", {"l": login}).fetchone()
    assert row is not None
    return str(row["password_hash"])


def _page(answer: Any) -> Any:
    assert answer.headers["content-type"].startswith("text/html")
    return lxml.html.fromstring(answer.text)


def _token(client: TestClient) -> str:
    token = client.cookies.get(auth.SESSION_COOKIE)
    assert token
    return str(token)


def _with_token(world: w.World, token: str) -> TestClient:
    other = world.client()
    other.cookies.set(auth.SESSION_COOKIE, token)
    return other


def test_the_page_is_every_logged_in_users_and_carries_the_csrf_token(
        world: w.World) -> None:
    assert world.client().get("/password").headers["location"] == "/login"
    assert world.client().post("/password", data=_form()).headers["location"] == "/login"
    for login in ("op", "acme-desk"):
        client, csrf = world.logged_in(login)
        page = _page(client.get("/password"))
        assert page.xpath("//form[@id='password-form']/@action") == ["/password"]
        assert page.xpath("//form[@id='password-form']//input[@name='csrf']/@value") == [csrf]
        assert page.xpath("//form[@id='password-form']//input[@type='password']/@name") == [
            "current", "new", "again"]
        assert page.xpath("//nav[@id='nav']/a[@id='nav-password']/@href") == ["/password"]


def test_the_form_needs_the_sessions_csrf_token(world: w.World) -> None:
    client, _ = world.logged_in("op")
    before = _hash(world, "op")
    assert client.post("/password", data=_form(csrf="forged")).status_code == 403
    assert client.post("/password", data=_form()).status_code == 403
    assert _hash(world, "op") == before


def test_an_operator_changes_its_password_other_sessions_end_this_one_goes_on(
        world: w.World) -> None:
    client, csrf = world.logged_in("op")
    other, _ = world.logged_in("op", "192.0.2.2")
    company, _ = world.logged_in("acme-desk")
    old_token = _token(client)
    answer = client.post("/password", data=_form(csrf=csrf))
    assert answer.status_code == 200
    page = _page(answer)
    assert "Every other session of op has ended" in page.xpath(
        "string(//p[@id='password-changed'])")
    new_csrf = page.xpath("//form[@id='logout']//input[@name='csrf']/@value")[0]
    assert new_csrf != csrf
    assert page.xpath("//form[@id='password-form']//input[@name='csrf']/@value") == [new_csrf]
    assert _token(client) != old_token
    assert passwords.verify_strong(NEW, _hash(world, "op"))
    # This browser goes on with its new cookie; the old cookie and the other session end.
    assert client.get("/api/messages").status_code == 200
    assert _with_token(world, old_token).get("/api/messages").status_code == 401
    assert other.get("/api/messages").status_code == 401
    assert company.get("/api/messages").status_code == 200
    # The new CSRF token is the session's: logging out with it works.
    assert client.post("/logout", data={"csrf": new_csrf}).status_code == 303
    assert world.client().post("/api/session", json={
        "login": "op", "password": w.PASSWORD}).status_code == 401
    assert world.client().post("/api/session", json={
        "login": "op", "password": NEW}).status_code == 200


def test_a_company_changes_its_accounts_two_hashes(world: w.World) -> None:
    client, csrf = world.logged_in("acme-desk")
    assert client.post("/password", data=_form(csrf=csrf)).status_code == 200
    row = world.conn.execute("SELECT password_hash, digest_md5_hash FROM account"
                             " WHERE login = 'acme-desk'").fetchone()
    assert row is not None
    assert passwords.verify_strong(NEW, row["password_hash"])
    assert row["digest_md5_hash"] == passwords.digest_md5_hash(
        "acme-desk", world.config.hub.sasl_realm, NEW)
    assert passwords.verify_strong(w.PASSWORD, _hash(world, "bright"))


def test_mismatch_and_the_rules_are_refused_on_the_page_and_not_counted(
        world: w.World) -> None:
    client, csrf = world.logged_in("op")
    before = _hash(world, "op")
    for fields, text in ((_form(again=NEW + "!", csrf=csrf), "differ"),
                         (_form(new="short", again="short", csrf=csrf), "too short"),
                         (_form(new="x" * 1025, again="x" * 1025, csrf=csrf), "too long")):
        answer = client.post("/password", data=fields)
        assert answer.status_code == 400
        assert text in _page(answer).xpath("string(//p[@id='password-error'])")
    assert _hash(world, "op") == before
    assert world.conn.execute("SELECT count(*) AS n FROM console_login_failure").fetchone(
        ) == {"n": 0}
    assert client.get("/api/messages").status_code == 200


def test_a_wrong_current_password_counts_as_a_failed_login_and_is_throttled(
        world: w.World) -> None:
    client, csrf = world.logged_in("op")
    other, _ = world.logged_in("op", "192.0.2.2")
    before = _hash(world, "op")
    for _ in range(3):
        answer = client.post("/password", data=_form(current="wrong one!", csrf=csrf))
        assert answer.status_code == 403
        assert "current password is wrong" in _page(answer).xpath(
            "string(//p[@id='password-error'])")
    assert world.conn.execute("SELECT count(*) AS n FROM console_login_failure"
                              " WHERE login = 'op'").fetchone() == {"n": 3}
    # Now even the right current password is refused, and so is the login by that name.
    answer = client.post("/password", data=_form(csrf=csrf))
    assert answer.status_code == 429 and 1 <= int(answer.headers["retry-after"]) <= 60
    assert _hash(world, "op") == before
    assert world.client("192.0.2.77").post("/api/session", json={
        "login": "op", "password": w.PASSWORD}).status_code == 429
    # Nothing ended: the failed attempts change no session.
    assert other.get("/api/messages").status_code == 200


def test_the_api_changes_the_password_with_the_csrf_header(world: w.World) -> None:
    client, csrf = world.logged_in("acme-desk")
    other, _ = world.logged_in("acme-desk", "192.0.2.2")
    body = {"current": w.PASSWORD, "new": NEW}
    assert client.post("/api/password", json=body).status_code == 403
    assert client.post("/api/password", json=body,
                       headers={auth.CSRF_HEADER: "nope"}).status_code == 403
    assert client.post("/api/password", json={"current": w.PASSWORD},
                       headers={auth.CSRF_HEADER: csrf}).status_code == 400
    assert client.post("/api/password", content=b"[1]", headers={
        auth.CSRF_HEADER: csrf, "content-type": "application/json"}).status_code == 400
    assert client.post("/api/password", data=body,
                       headers={auth.CSRF_HEADER: csrf}).status_code == 415
    answer = client.post("/api/password", json={**body, "new": "short"},
                         headers={auth.CSRF_HEADER: csrf})
    assert answer.status_code == 400 and "too short" in answer.json()["error"]
    answer = client.post("/api/password", json={**body, "current": "wrong one!"},
                         headers={auth.CSRF_HEADER: csrf})
    assert answer.status_code == 403 and answer.json() == {
        "error": "the current password is wrong"}
    assert passwords.verify_strong(w.PASSWORD, _hash(world, "acme-desk"))
    answer = client.post("/api/password", json=body, headers={auth.CSRF_HEADER: csrf})
    assert answer.status_code == 200, answer.text
    new_csrf = answer.json()["csrf"]
    assert new_csrf != csrf and answer.json()["login"] == "acme-desk"
    assert passwords.verify_strong(NEW, _hash(world, "acme-desk"))
    assert other.get("/api/messages").status_code == 401
    assert client.get("/api/messages").status_code == 200
    assert client.delete("/api/session", headers={auth.CSRF_HEADER: csrf}).status_code == 403
    assert client.delete("/api/session",
                         headers={auth.CSRF_HEADER: new_csrf}).status_code == 204


def test_the_api_throttles_wrong_current_passwords(world: w.World) -> None:
    client, csrf = world.logged_in("op")
    headers = {auth.CSRF_HEADER: csrf}
    for _ in range(3):
        assert client.post("/api/password", json={"current": "wrong one!", "new": NEW},
                           headers=headers).status_code == 403
    answer = client.post("/api/password", json={"current": w.PASSWORD, "new": NEW},
                         headers=headers)
    assert answer.status_code == 429 and "retry-after" in answer.headers
    assert passwords.verify_strong(w.PASSWORD, _hash(world, "op"))
