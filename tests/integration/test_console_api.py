"""The console's JSON API as a script uses it (issue 18 item 5), over HTTPS with the
stack's CA verified, against the console the stack serves after real submissions: the
session (its cookie's flags, the CSRF token a script sends back), what operators and
companies may see, and the headers and TLS every answer has."""

from __future__ import annotations

import json
import poplib
import secrets
import smtplib
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from singlewindow.config import Config
from singlewindow.console.app import SECURITY_HEADERS
from tests.support import console
from tests.support.clients import MailClient, msa, swaks, tls_context
from tests.support.console import Login, Scene
from tests.support.pop3 import POP3From

scene = console.scene_fixture()

#: What the CSP must say whatever else it says (the shared contract): scripts and styles
#: from the console only, never inline; no plugin; never framed.
CSP_MUST = ("default-src 'self'", "script-src 'self'", "style-src 'self'",
            "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'")


@pytest.fixture
def client(sw_stack: Config) -> Iterator[httpx.Client]:
    """A client of its own (its own cookies), verifying the console against the CA."""
    with httpx.Client(base_url=console.base_url(sw_stack), verify=console.tls_context(
            sw_stack), timeout=30, follow_redirects=False) as c:
        yield c


def log_in(client: httpx.Client, who: Login) -> dict[str, Any]:
    answer = client.post("/api/session", json={"login": who.login, "password": who.password})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def listed(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    answer = client.get("/api/messages", params=params)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["messages"]
    return found


def test_every_answer_has_the_security_headers(client: httpx.Client) -> None:
    for path in ("/login", "/api/messages", "/messages/none", "/static/none"):
        answer = client.get(path)
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, (path, name)
        csp = answer.headers["content-security-policy"]
        assert all(d in csp.split("; ") for d in CSP_MUST) and "unsafe" not in csp, csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["strict-transport-security"].startswith("max-age=")
        assert "server" not in answer.headers, path
    for path in ("/login", "/api/messages"):
        assert client.get(path).headers["cache-control"] == "no-store"


def test_without_a_session_the_api_answers_401(client: httpx.Client, scene: Scene) -> None:
    mail = scene.mail
    for path in ("/api/messages", f"/api/messages/{mail.good.swid}", "/api/parties",
                 "/api/queue"):
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert "error" in answer.json()
        assert mail.good.subject not in answer.text
    assert client.delete("/api/session").status_code in (401, 403)


def test_plain_http_to_the_console_gets_nothing(sw_stack: Config) -> None:
    """TLS only: an http:// request on the console's port gets no HTTP answer."""
    with pytest.raises(httpx.TransportError):
        httpx.get(console.base_url(sw_stack).replace("https://", "http://") + "/login",
                  timeout=10)
    # Nor does a raw plaintext request read anything that looks like HTTP.
    host, port = sw_stack.console.address
    with socket.create_connection((host, port), timeout=10) as raw:
        raw.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            got = raw.recv(4096)
        except ConnectionResetError:
            got = b""
    assert not got.startswith(b"HTTP/")


def test_a_session_cookie_and_its_csrf_token(client: httpx.Client, scene: Scene) -> None:
    operator, mail = scene.operator, scene.mail
    # Neither a form nor a wrong password opens a session.
    form = client.post("/api/session", data={"login": operator.login,
                                             "password": operator.password})
    assert form.status_code == 415
    wrong = client.post("/api/session", json={"login": operator.login, "password": "nope"})
    assert wrong.status_code == 401 and "error" in wrong.json()
    assert "sw_session" not in wrong.headers.get("set-cookie", "")
    answer = client.post("/api/session", json={"login": operator.login,
                                               "password": operator.password})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["kind"] == "operator" and body["login"] == operator.login
    assert body["party"] is None and len(body["csrf"]) >= 16
    [cookie] = [c for c in answer.headers.get_list("set-cookie")
                if c.startswith("sw_session=")]
    flags = {f.strip().split("=")[0].lower(): f.strip() for f in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite", "path"} <= set(flags), cookie
    assert flags["samesite"].lower() == "samesite=strict" and flags["path"] == "Path=/"
    token = cookie.split(";")[0].split("=", 1)[1]
    assert token not in body["csrf"] and len(token) >= 32
    assert mail.good.swid in {m["id"] for m in listed(client)}
    # Ending it needs the token: without it (or with another) the session stays.
    assert client.delete("/api/session").status_code == 403
    assert client.delete("/api/session",
                         headers={"X-CSRF-Token": body["csrf"][::-1]}).status_code == 403
    assert client.get("/api/messages").status_code == 200
    assert client.delete("/api/session",
                         headers={"X-CSRF-Token": body["csrf"]}).status_code == 204
    # The token is dead on the server, not just forgotten by this client.
    client.cookies.set("sw_session", token)
    assert client.get("/api/messages").status_code == 401


def test_an_operator_sees_every_message_and_its_way(client: httpx.Client,
                                                   scene: Scene) -> None:
    mail, co, ag = scene.mail, scene.world["co"], scene.world["ag"]
    log_in(client, scene.operator)
    # A party's messages: those it submitted and those addressed to it.
    ids = {m["id"] for m in listed(client, party=co.name)}
    assert ids == {mail.good.swid, mail.broken.swid, mail.response.swid}
    [good] = listed(client, q=mail.good.swid)
    assert good["subject"] == mail.good.subject and good["type"].startswith("PAXLST")
    assert good["outcome"] == "forwarded" and good["party"] == co.name
    assert good["listener"] == "mta" and good["queue_id"]
    assert good["header_message_id"].strip("<>") == mail.good.message_id.strip("<>")
    assert [(r["recipient"], r["status"][0]) for r in good["recipients"]] == [
        (ag.logical, "2")]
    assert [m["id"] for m in listed(client, party=co.name, outcome="not-forwarded")] == [
        mail.broken.swid]
    assert mail.rivals.swid in {m["id"] for m in listed(client, type="GENDEC")}
    assert len(listed(client, limit="1")) == 1
    detail = client.get(f"/api/messages/{mail.broken.swid}")
    assert detail.status_code == 200
    shown = detail.json()
    assert shown["message"]["id"] == mail.broken.swid
    assert all(set(step) >= {"at", "kind", "title", "details"} for step in shown["timeline"])
    assert len(shown["timeline"]) >= 3
    assert shown["findings"], "the MIG finding is missing"
    answered = client.get(f"/api/messages/{mail.good.swid}").json()
    assert [r["id"] for r in answered["responses"]] == [mail.response.swid]
    # Operators see another company's message too.
    assert client.get(f"/api/messages/{mail.rivals.swid}").status_code == 200
    assert client.get(f"/api/parties/{co.name}").status_code == 200
    assert client.get("/api/queue").status_code == 200


def test_a_company_sees_only_its_own(client: httpx.Client, scene: Scene) -> None:
    mail, world = scene.mail, scene.world
    co, rival, ag = world["co"], world["rival"], world["ag"]
    body = log_in(client, scene.desk)
    assert body["kind"] == "company" and body["party"] == co.name
    messages = listed(client)
    assert {m["id"] for m in messages} == {mail.good.swid, mail.broken.swid}
    for m in messages:
        assert not {"party", "listener", "queue_id", "header_message_id"} & set(m), m
    assert listed(client, q=mail.rivals.swid) == []
    # Naming another party widens nothing (a company's search has no party filter).
    assert {m["id"] for m in listed(client, party=rival.name)} <= {mail.good.swid,
                                                                   mail.broken.swid}
    # Its own message's way, with logical addresses only.
    own = client.get(f"/api/messages/{mail.broken.swid}")
    assert own.status_code == 200
    shown = own.json()
    assert [r["recipient"] for r in shown["message"]["recipients"]] == [ag.logical]
    assert shown["findings"] and shown["timeline"]
    answered = client.get(f"/api/messages/{mail.good.swid}").json()
    assert [r["id"] for r in answered["responses"]] == [mail.response.swid]
    text = json.dumps([shown, answered])
    for hidden in (ag.physical, ag.peer, co.peer, rival.name, f":{ag.sink.port}"):
        assert hidden not in text, hidden
    # Another party's message, by its id, is not there; nor are the operators' views.
    for path in (f"/api/messages/{mail.rivals.swid}", "/api/messages/SW-no-such-id"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert answer.json() == {"error": "no such message"}
    for path in ("/api/parties", f"/api/parties/{co.name}", "/api/queue"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert co.name not in answer.text


def followed(client: httpx.Client, url: str) -> list[str]:
    """The ids of every page from ``url`` on, following each ``Link: <...>; rel="next"``."""
    ids: list[str] = []
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        page = [m["id"] for m in answer.json()["messages"]]
        assert len(page) == 1, (url, page)
        ids += page
        link = answer.headers.get("link")
        assert link is None or link.endswith('>; rel="next"'), link
        url = link[1:link.index(">")] if link else ""
        assert not url or url.startswith("/api/messages?"), url
    return ids


def test_pages_of_one_followed_by_link_list_each_message_once(client: httpx.Client,
                                                               scene: Scene) -> None:
    mail = scene.mail
    log_in(client, scene.operator)
    every = [m["id"] for m in listed(client, limit="1000")]
    assert {mail.good.swid, mail.broken.swid, mail.rivals.swid, mail.response.swid} <= set(
        every)
    assert followed(client, "/api/messages?limit=1") == every
    log_in(client, scene.desk)
    mine = followed(client, "/api/messages?limit=1")
    assert sorted(mine) == sorted({mail.good.swid, mail.broken.swid})
    # A rival's message as the cursor shows a company nothing, as an unknown id does.
    for before in (mail.rivals.swid, "SW-no-such-id"):
        answer = client.get("/api/messages", params={"before": before})
        assert (answer.status_code, answer.json(), answer.headers.get("link")) == (
            200, {"messages": []}, None)


def from_address(config: Config, address: str) -> httpx.Client:
    """A client whose connections leave from ``address`` (a loopback address of its own:
    a failed login counts against its client address)."""
    return httpx.Client(base_url=console.base_url(config), verify=console.tls_context(config),
                        timeout=30, transport=httpx.HTTPTransport(
                            local_address=address, verify=console.tls_context(config)))


def test_failed_logins_are_slowed_then_refused(sw_stack: Config, scene: Scene) -> None:
    """Each failure is answered after the login delay; after ``login_attempts`` of them
    for one name, that name is refused (429 with Retry-After) even with its password and
    from anywhere, and so is anyone from that address; others log in as before."""
    target = console.add_operator(sw_stack)
    limits = sw_stack.console
    tag = secrets.randbelow(200) + 20
    attacker, elsewhere = f"127.0.8.{tag}", f"127.0.9.{tag}"
    wrong = {"login": target.login, "password": target.password + "x"}
    right = {"login": target.login, "password": target.password}
    with from_address(sw_stack, attacker) as client:
        for _ in range(limits.login_attempts):
            started = time.monotonic()
            assert client.post("/api/session", json=wrong).status_code == 401
            assert time.monotonic() - started >= limits.login_delay
        refused = client.post("/api/session", json=right)
        assert refused.status_code == 429, refused.text
        assert 0 < int(refused.headers["retry-after"]) <= limits.login_window_seconds
        assert "sw_session" not in refused.headers.get("set-cookie", "")
        # Anyone else from the same address: refused as well.
        other = {"login": scene.desk.login, "password": scene.desk.password}
        assert client.post("/api/session", json=other).status_code == 429
    with from_address(sw_stack, elsewhere) as client:
        assert client.post("/api/session", json=right).status_code == 429
        assert client.post("/api/session", json=other).status_code == 200


def _msa_accepts(config: Config, login: str, password: str, source: str) -> bool:
    """SMTP AUTH PLAIN on the stack's submission port (the MSA): 235, or 535."""
    with msa(config, source) as client:
        try:
            client.user, client.password = login, password
            return client.auth("PLAIN", client.auth_plain)[0] == 235
        except smtplib.SMTPAuthenticationError as exc:
            assert exc.smtp_code == 535
            return False


def _pop3_accepts(config: Config, login: str, password: str, source: str) -> bool:
    """USER/PASS after STLS on the stack's POP3 port."""
    session = POP3From(config.listeners.bind, config.listeners.pop3_port, source, timeout=30)
    try:
        session.stls(tls_context(config))
        session.user(login)
        try:
            session.pass_(password)
        except poplib.error_proto:
            return False
        return True
    finally:
        session.close()


def test_a_company_changes_its_password_and_msa_and_pop3_take_it_at_once(
        sw_stack: Config, client: httpx.Client, mail_client: MailClient) -> None:
    """The form in the console changes the account Dovecot checks (no auth cache): the
    MSA (PLAIN and DIGEST-MD5) and POP3 take the new password at once and refuse the old
    one; the console's other session of that login ends."""
    old, new = mail_client.password, console.password()
    login = mail_client.login
    # Dovecot slows every login from an address that just failed: the refused attempts
    # come from addresses of their own.
    tag = secrets.randbelow(200) + 20
    assert _msa_accepts(sw_stack, login, old, "127.0.0.1")
    csrf = log_in(client, Login(login, old))["csrf"]
    with httpx.Client(base_url=console.base_url(sw_stack), verify=console.tls_context(
            sw_stack), timeout=30) as other:
        log_in(other, Login(login, old))
        answer = client.post("/password", data={"csrf": csrf, "current": old, "new": new,
                                                "again": new})
        assert answer.status_code == 200, answer.text
        assert 'id="password-changed"' in answer.text
        assert other.get("/api/messages").status_code == 401
    assert client.get("/api/messages").status_code == 200
    assert _msa_accepts(sw_stack, login, new, "127.0.0.1")
    assert not _msa_accepts(sw_stack, login, old, f"127.0.12.{tag}")
    assert _pop3_accepts(sw_stack, login, new, "127.0.0.2")
    assert not _pop3_accepts(sw_stack, login, old, f"127.0.13.{tag}")
    server = f"{sw_stack.listeners.bind}:{sw_stack.listeners.msa_port}"
    digest = swaks("--server", server, "--tlsc", "--auth", "DIGEST-MD5", "--auth-user", login,
                   "--quit-after", "AUTH", password=new)
    assert "235 2.7.0" in digest.stdout, digest.stdout
    digest = swaks("--server", server, "--tlsc", "--auth", "DIGEST-MD5", "--auth-user", login,
                   "--quit-after", "AUTH", "--local-interface", f"127.0.14.{tag}",
                   password=old)
    assert "535 5.7.8" in digest.stdout, digest.stdout

def test_who_looked_at_a_message_is_recorded_for_operators_only(
        sw_stack: Config, client: httpx.Client, scene: Scene) -> None:
    """The audit log after a real submission: an operator's view of the message is in its
    ``views`` (and in ``swctl audit``); the company that submitted it sees no views."""
    swid = scene.mail.good.swid
    viewer = console.add_operator(sw_stack)  # a login of this test's own
    log_in(client, viewer)
    shown = client.get(f"/api/messages/{swid}")
    assert shown.status_code == 200, shown.text
    latest = shown.json()["views"][0]
    assert (latest["login"], latest["kind"]) == (viewer.login, "operator")
    assert latest["source"] == "127.0.0.1"
    with httpx.Client(base_url=console.base_url(sw_stack), timeout=30,
                      verify=console.tls_context(sw_stack)) as desk:
        log_in(desk, scene.desk)
        own = desk.get(f"/api/messages/{swid}")
        assert own.status_code == 200 and "views" not in own.json()
        assert viewer.login not in own.text
    again = client.get(f"/api/messages/{swid}").json()["views"]
    assert [(v["login"], v["kind"]) for v in again[:3]] == [
        (viewer.login, "operator"), (scene.desk.login, "company"), (viewer.login, "operator")]
    rows = json.loads(console.swctl(sw_stack, "audit", "--login", viewer.login, "--json"))
    assert [(r["action"], r["message_id"]) for r in rows] == [("message", swid)] * 2
