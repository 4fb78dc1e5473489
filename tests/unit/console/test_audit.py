"""The console's audit log (:mod:`singlewindow.console.audit`): every message view,
search, party and queue page, and their API twins, recorded before it is shown; nothing
shown when the row cannot be written; the operators' "Viewed by", which a company never
sees."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import lxml.html
import pytest
from psycopg import sql

from singlewindow.config import CONSOLE_ROLE
from singlewindow.console import audit
from singlewindow.store import console as store
from tests.unit.console import world as w


def logged(world: w.World) -> list[tuple[Any, ...]]:
    """The audit log, oldest first: kind, login, source, action, message id, detail."""
    return [(r["kind"], r["login"], r["source"], r["action"], r["message_id"], r["detail"])
            for r in reversed(store.views(world.conn, limit=1000))]


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_every_message_view_is_recorded(world: w.World, prefix: str) -> None:
    op, _ = world.logged_in("op", "192.0.2.7")
    desk, _ = world.logged_in("acme-desk", "2001:db8::5")
    assert op.get(f"{prefix}/messages/{w.SW_B}").status_code == 200
    by_message_id = f"<{w.SW_A.lower()}@acme.example>"
    assert desk.get(f"{prefix}/messages/{by_message_id}").status_code == 200
    assert desk.get(f"{prefix}/messages/{w.SW_C}").status_code == 200
    assert logged(world) == [
        ("operator", "op", "192.0.2.7", "message", w.SW_B, None),
        ("company", "acme-desk", "2001:db8::5", "message", w.SW_A, by_message_id),
        ("company", "acme-desk", "2001:db8::5", "message", w.SW_C, None)]


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_what_is_not_shown_is_not_recorded(world: w.World, prefix: str) -> None:
    desk, _ = world.logged_in("acme-desk")
    assert desk.get(f"{prefix}/messages/{w.SW_B}").status_code == 404  # bright's
    assert desk.get(f"{prefix}/messages", params={"since": "soon"}).status_code == 400
    assert desk.get(f"{prefix}/parties").status_code == 404  # operators only
    op, _ = world.logged_in("op")
    assert op.get(f"{prefix}/parties/nobody").status_code == 404
    assert world.client().get(f"{prefix}/messages/{w.SW_A}").status_code in (303, 401)
    assert logged(world) == []


@pytest.mark.parametrize("path,limit", [("/messages", 200), ("/api/messages", 100)])
def test_every_search_is_recorded_with_its_criteria(world: w.World, path: str,
                                                    limit: int) -> None:
    op, _ = world.logged_in("op")
    desk, _ = world.logged_in("acme-desk")
    assert op.get(path).status_code == 200
    assert op.get(path, params={"q": w.SW_A, "party": "acme", "type": "PAXLST",
                                "outcome": "forwarded", "since": "2026-11-30T10:00",
                                "until": "2026-12-01T00:00Z"}).status_code == 200
    # A company's party filter is no criterion of its (the store never saw it).
    assert desk.get(path, params={"q": "x\ny", "party": "bright"}).status_code == 200
    assert logged(world) == [
        ("operator", "op", "192.0.2.1", "search", None, f"limit={limit}"),
        ("operator", "op", "192.0.2.1", "search", None,
         f'text="{w.SW_A}" party="acme" message_type="PAXLST" outcome="forwarded" '
         f"since=2026-11-30T10:00:00+00:00 until=2026-12-01T00:00:00+00:00 limit={limit}"),
        ("company", "acme-desk", "192.0.2.1", "search", None, f'text="x\\ny" limit={limit}')]


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_party_and_queue_views_are_recorded(world: w.World, prefix: str) -> None:
    op, _ = world.logged_in("op")
    for path in ("/parties", "/parties/customs", "/queue"):
        assert op.get(prefix + path).status_code == 200, path
    assert logged(world) == [
        ("operator", "op", "192.0.2.1", "parties", None, None),
        ("operator", "op", "192.0.2.1", "party", None, "customs"),
        ("operator", "op", "192.0.2.1", "queue", None, None)]


def test_a_notice_about_no_known_message_is_recorded_by_the_id_asked(
        world: w.World) -> None:
    w.orphan_notice(world.conn)
    op, _ = world.logged_in("op")
    body = op.get("/api/messages/QORPH").json()
    assert body["views"] == []  # no message to have views of
    assert logged(world) == [("operator", "op", "192.0.2.1", "message", None, "QORPH")]


def test_the_operator_sees_who_viewed_a_message_a_company_never(world: w.World) -> None:
    desk, _ = world.logged_in("acme-desk", "192.0.2.9")
    desk.get(f"/messages/{w.SW_A}")
    op, _ = world.logged_in("op", "192.0.2.7")
    op.get(f"/api/messages/{w.SW_C}")  # another message's view is not SW_A's
    body = op.get(f"/api/messages/{w.SW_A}").json()
    assert [(v["login"], v["kind"], v["source"]) for v in body["views"]] == [
        ("op", "operator", "192.0.2.7"), ("acme-desk", "company", "192.0.2.9")]
    assert set(body["views"][0]) == {"at", "kind", "login", "source"}
    assert datetime.fromisoformat(body["views"][0]["at"]).utcoffset() is not None
    page = lxml.html.fromstring(op.get(f"/messages/{w.SW_A}").text)
    rows = page.xpath("//section[@id='views']//table[@id='viewed-by']//tr[@class='view']")
    assert [(r.xpath("string(td[@class='view-login'])"),
             r.xpath("string(td[@class='view-kind'])")) for r in rows] == [
        ("op", "operator"), ("op", "operator"), ("acme-desk", "company")]
    assert rows[0].xpath(".//time/@datetime")[0].endswith("+00:00")
    # The company's own message, viewed by an operator: no views, no operator's name.
    own = desk.get(f"/api/messages/{w.SW_A}")
    assert own.status_code == 200 and "views" not in own.json()
    text = desk.get(f"/messages/{w.SW_A}").text
    assert 'id="views"' not in text and "Viewed by" not in text


def test_views_shown_are_the_last_ones(world: w.World) -> None:
    for _ in range(audit.VIEWS_SHOWN + 3):
        store.record_view(world.conn, "company", "acme-desk", "192.0.2.9", "message", w.SW_A)
    op, _ = world.logged_in("op")
    views = op.get(f"/api/messages/{w.SW_A}").json()["views"]
    assert len(views) == audit.VIEWS_SHOWN and views[0]["login"] == "op"


@pytest.fixture
def unwritable(world: w.World) -> Iterator[w.World]:
    """The console may not write its audit log (as if the table refused it)."""
    role = sql.Identifier(CONSOLE_ROLE)
    world.conn.execute(sql.SQL("REVOKE INSERT ON console_view FROM {}").format(role))
    try:
        yield world
    finally:
        world.conn.execute(sql.SQL("GRANT INSERT ON console_view TO {}").format(role))


@pytest.mark.parametrize("path", [
    f"/messages/{w.SW_A}", "/messages", "/parties", "/parties/customs", "/queue",
    f"/api/messages/{w.SW_A}", "/api/messages", "/api/parties", "/api/parties/customs",
    "/api/queue"])
def test_nothing_is_shown_when_the_audit_row_cannot_be_written(
        unwritable: w.World, path: str, caplog: pytest.LogCaptureFixture) -> None:
    op, _ = unwritable.logged_in("op")
    answer = op.get(path)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "10"
    assert "audit log cannot be written" in answer.text
    for shown in ("Flight LH400", w.AGENCY_PHYSICAL, "customs@sw.test", "deferred"):
        assert shown not in answer.text
    assert any("audit row not written" in r.getMessage() for r in caplog.records)
    assert logged(unwritable) == []


def test_a_companys_view_is_not_shown_unrecorded_either(unwritable: w.World) -> None:
    desk, _ = unwritable.logged_in("acme-desk")
    for path in (f"/messages/{w.SW_A}", f"/api/messages/{w.SW_A}", "/api/messages"):
        answer = desk.get(path)
        assert answer.status_code == 503 and "Flight LH400" not in answer.text


def test_criteria_quote_texts_and_skip_the_companys_scope() -> None:
    q = store.Query(text='a "b"\n', outcome="refused", party_id=7, limit=5,
                    since=datetime(2026, 1, 1, 10, tzinfo=UTC))
    assert audit.criteria(q) == ('text="a \\"b\\"\\n" outcome="refused" '
                                 "since=2026-01-01T10:00:00+00:00 limit=5")
    assert audit.criteria(store.Query(limit=1)) == "limit=1"
