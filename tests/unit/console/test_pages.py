"""The console's pages as a person sees them: the ids the browser tests rely on, the
search by each criterion, what a company may and may not see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lxml.html
import pytest

from tests.unit.console import world as w

#: What ``postqueue -j`` prints (one JSON object per line, postqueue(1)).
QUEUE_LISTING = (
    '{"queue_name": "deferred", "queue_id": "4DEF1", "arrival_time": 1700000100,'
    ' "message_size": 900, "forced_expire": false, "sender": "",'
    ' "recipients": [{"address": "edi@acme.example", "delay_reason":'
    ' "connect to mx.acme.example[10.1.0.9]:25: Connection refused"}]}\n'
    '{"queue_name": "deferred", "queue_id": "4DEF0", "arrival_time": 1700000000,'
    ' "message_size": 900, "forced_expire": false, "sender": "singlewindow@sw.test",'
    ' "recipients": [{"address": "in@customs.example", "delay_reason":'
    ' "host mx.customs.example said: 451 try later"}]}\n'
    '{"queue_name": "active", "queue_id": "4ACT0", "arrival_time": 1700000200,'
    ' "message_size": 900, "forced_expire": false, "sender": "a@b.example",'
    ' "recipients": [{"address": "c@d.example"}]}\n')


def tree(answer: Any) -> Any:
    assert answer.headers["content-type"].startswith("text/html")
    return lxml.html.fromstring(answer.text)


def ids(answer: Any) -> list[str]:
    return [str(tr.get("data-id")) for tr in tree(answer).xpath(
        "//table[@id='messages']//tr[contains(@class, 'message')]")]


def test_every_logged_in_page_has_the_navigation(world: w.World) -> None:
    client, csrf = world.logged_in("op")
    for path in ("/messages", f"/messages/{w.SW_A}", "/parties", "/parties/acme"):
        page = tree(client.get(path))
        assert page.xpath("//nav[@id='nav']/a/@id") == ["nav-messages", "nav-parties",
                                                        "nav-queue", "nav-password"]
        assert page.xpath("string(//span[@id='who'])").startswith("op")
        assert page.xpath("//form[@id='logout']//input[@name='csrf']/@value") == [csrf]
        assert page.xpath("//form[@id='logout']//button[@id='logout-button']")
        assert page.xpath("//main[@id='main']")
    company, _ = world.logged_in("acme-desk")
    page = tree(company.get("/messages"))
    assert page.xpath("//nav[@id='nav']/a/@id") == ["nav-messages", "nav-password"]
    assert "acme" in page.xpath("string(//span[@id='who'])")


def test_the_login_page(world: w.World) -> None:
    page = tree(world.client().get("/login"))
    form = page.xpath("//form[@id='login-form']")[0]
    assert form.get("method") == "post" and form.get("action") == "/login"
    assert page.xpath("//input[@id='login']/@name") == ["login"]
    assert page.xpath("//input[@id='password']/@name") == ["password"]
    assert page.xpath("//input[@id='password']/@type") == ["password"]
    assert page.xpath("//button[@id='login-submit']")
    assert not page.xpath("//p[@id='login-error']")
    # No script at all, no inline style; no favicon to ask for (an empty data: one).
    assert not page.xpath("//script") and not page.xpath("//*[@style]")
    assert page.xpath("//link[@rel='icon']/@href") == ["data:,"]


def test_the_operator_searches_by_each_criterion(world: w.World) -> None:
    world.conn.execute("UPDATE message SET received_at = '2026-01-01T10:00Z' WHERE id = %s",
                       (w.SW_A,))
    client, _ = world.logged_in("op")
    page = client.get("/messages")
    assert ids(page) == [w.SW_R, w.SW_C, w.SW_B, w.SW_A]
    for params, expected in (
            ({"q": w.SW_B}, [w.SW_B]),
            ({"q": f"{w.SW_A.lower()}@acme.example"}, [w.SW_A]),  # Message-ID without <>
            ({"q": "QC1"}, [w.SW_A]),  # the copy's queue id
            ({"party": "bright"}, [w.SW_B]),
            ({"party": "acme"}, [w.SW_R, w.SW_C, w.SW_A]),  # submitted by, or addressed to
            ({"type": "PAXLST"}, [w.SW_B, w.SW_A]),
            ({"outcome": "refused"}, [w.SW_C]),
            ({"outcome": "not-forwarded"}, [w.SW_B]),
            ({"since": "2026-01-01T09:00", "until": "2026-01-01T11:00"}, [w.SW_A]),
            ({"since": "2026-01-01T11:00"}, [w.SW_R, w.SW_C, w.SW_B]),
            ({"q": "nothing-like-it"}, [])):
        answer = client.get("/messages", params=params)
        assert answer.status_code == 200
        assert ids(answer) == expected, params
        form = tree(answer)
        for name, value in params.items():
            field = form.xpath(f"//form[@id='search']//*[@id='{name}'][@name='{name}']")[0]
            shown = field.xpath("string(option[@selected]/@value)") if name == "outcome" \
                else field.get("value")
            assert shown == value
    assert tree(client.get("/messages", params={"q": "x"})).xpath("//p[@id='no-messages']")


def test_the_results_table_links_each_message_with_its_outcome(world: w.World) -> None:
    client, _ = world.logged_in("op")
    page = tree(client.get("/messages", params={"q": w.SW_C}))
    row = page.xpath(f"//tr[@data-id='{w.SW_C}']")[0]
    assert row.xpath(".//a[@class='message-link']/@href") == [f"/messages/{w.SW_C}"]
    assert row.xpath("string(.//td[contains(@class, 'outcome')])").strip() == "refused"
    assert row.xpath(".//time/@datetime")[0].endswith("+00:00")
    assert page.xpath("//select[@id='outcome']/option/@value")[0] == ""
    assert page.xpath("//input[@id='since']/@type") == ["datetime-local"]


def test_a_bad_search_says_what_is_wrong(world: w.World) -> None:
    client, _ = world.logged_in("op")
    answer = client.get("/messages", params={"since": "yesterday"})
    assert answer.status_code == 400
    assert "since" in tree(answer).xpath("string(//p[@id='search-error'])")
    assert client.get("/messages", params={"outcome": "lost"}).status_code == 400


def test_the_message_page_for_an_operator(world: w.World) -> None:
    client, _ = world.logged_in("op")
    page = tree(client.get(f"/messages/{w.SW_A}"))
    assert w.SW_A in page.xpath("string(//h1[@id='message-id'])")
    rows = page.xpath("//table[@id='recipients']//tr[@class='recipient']")
    assert [(r.xpath("string(td[contains(@class, 'recipient-address')])"),
             r.xpath("string(td[contains(@class, 'recipient-status')])")) for r in rows] == [
        ("customs@sw.test", "250 2.0.0")]
    kinds = page.xpath("//ol[@id='timeline']/li[@class='step']/@data-kind")
    assert {"received", "outcome", "copy", "agency-dsn", "notice"} <= set(kinds)
    assert all(t.endswith("+00:00") for t in page.xpath("//ol[@id='timeline']//time/@datetime"))
    assert w.AGENCY_PHYSICAL in page.text_content()  # operators see everything
    responses = page.xpath("//section[@id='responses']//li[@class='response']")
    assert len(responses) == 1 and w.SW_R in responses[0].text_content()
    findings = tree(client.get(f"/messages/{w.SW_B}")).xpath(
        "//table[@id='findings']//tr[@class='finding']")
    assert len(findings) == 1 and "segment 2 UNH" in findings[0].text_content()


def test_a_company_sees_its_own_message_with_logical_addresses_only(world: w.World) -> None:
    client, _ = world.logged_in("acme-desk")
    listing = client.get("/messages")
    assert ids(listing) == [w.SW_C, w.SW_A]
    assert not tree(listing).xpath("//input[@name='party']")
    for answer in (listing, client.get(f"/messages/{w.SW_A}"), client.get(f"/messages/{w.SW_C}")):
        assert answer.status_code == 200
        for secret in (w.AGENCY_PHYSICAL, w.AGENCY_HOST, w.AGENCY_IP, w.PEER_IP, "10.9.0.1"):
            assert secret not in answer.text
        assert "customs@sw.test" in answer.text
    page = tree(client.get(f"/messages/{w.SW_A}"))
    assert page.xpath("//section[@id='responses']//li[@class='response']")
    assert not page.xpath("//section[@id='responses']//a")  # not its message to open


def test_a_company_asking_for_another_partys_message_gets_not_found(world: w.World) -> None:
    client, _ = world.logged_in("acme-desk")
    for ident in (w.SW_B, w.SW_R, f"<{w.SW_B.lower()}@bright.example>", "QCTL"):
        answer = client.get(f"/messages/{ident}")
        assert answer.status_code == 404 and 'id="not-found"' in answer.text
        assert "Crew list" not in answer.text
    assert ids(client.get("/messages", params={"q": w.SW_B})) == []
    for path in ("/parties", "/parties/acme", "/queue"):
        answer = client.get(path)
        assert answer.status_code == 404 and 'id="not-found"' in answer.text
    other, _ = world.logged_in("bright")
    assert other.get(f"/messages/{w.SW_B}").status_code == 200
    assert other.get(f"/messages/{w.SW_A}").status_code == 404


def test_the_parties_pages(world: w.World) -> None:
    client, _ = world.logged_in("op")
    page = tree(client.get("/parties"))
    assert page.xpath("//table[@id='parties']//tr[@class='party']/@data-name") == [
        "acme", "bright", "customs"]
    one = tree(client.get("/parties/customs"))
    assert one.xpath("string(//h1[@id='party-name'])") == "customs"
    assert one.xpath("//table[@id='addresses']//td/text()")[:2] == ["customs@sw.test",
                                                                    w.AGENCY_PHYSICAL]
    missing = client.get("/parties/nobody")
    assert missing.status_code == 404 and 'id="not-found"' in missing.text


@pytest.fixture
def queue_world(world: w.World, tmp_path: Path) -> w.World:
    from dataclasses import replace
    script = tmp_path / "postqueue"
    (tmp_path / "listing").write_text(QUEUE_LISTING)
    script.write_text(f"#!/bin/sh\ncat {tmp_path / 'listing'}\n")
    script.chmod(0o755)
    world.config = replace(world.config, transport=replace(world.config.transport,
                                                           postqueue=script))
    return world


def test_the_queue_page_lists_counts_and_the_oldest_deferred_first(
        queue_world: w.World) -> None:
    client, _ = queue_world.logged_in("op")
    page = tree(client.get("/queue"))
    counts = {tr.get("data-queue"): tr.xpath("string(td[2])") for tr in page.xpath(
        "//table[@id='queue-counts']//tr[@data-queue]")}
    assert counts == {"incoming": "0", "active": "1", "deferred": "2", "hold": "0"}
    rows = page.xpath("//table[@id='deferred']//tr[@class='deferred']")
    assert [r.xpath("string(td[2])") for r in rows] == ["4DEF0", "4DEF1"]
    assert rows[0].xpath(".//a/@href") == ["/messages?q=4DEF0"]
    assert "451 try later" in rows[0].xpath("string(td[@class='reason'])")
    assert rows[0].xpath(".//time/@datetime") == ["2023-11-14T22:13:20+00:00"]


def test_the_queue_page_says_when_postqueue_fails(world: w.World) -> None:
    client, _ = world.logged_in("op")
    page = tree(client.get("/queue"))
    assert "postqueue" in page.xpath("string(//p[@id='queue-error'])")


def test_a_notice_about_no_known_message_has_a_page_for_operators_only(
        world: w.World) -> None:
    w.orphan_notice(world.conn)
    client, _ = world.logged_in("op")
    page = tree(client.get("/messages/QORPH"))
    assert "SWNorphan" in page.xpath("string(//h1[@id='message-id'])")
    assert page.xpath("//ol[@id='timeline']/li/@data-kind") == ["notice"]
    company, _ = world.logged_in("acme-desk")
    assert company.get("/messages/QORPH").status_code == 404
    assert company.get("/api/messages/QORPH").status_code == 404


HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def test_a_hostile_subject_is_shown_as_text(world: w.World) -> None:
    """A submitter writes the Subject; the operator's pages show it as text, never as
    markup (autoescaped templates; the CSP would block a script that got through)."""
    swid = "SW20261130173000000eeee0005"
    w.received(world.conn, swid, "acme", "edi@acme.example", HOSTILE,
               header_message_id=f"<{HOSTILE}@acme.example>")
    client, _ = world.logged_in("op")
    for path in ("/messages", f"/messages/{swid}"):
        answer = client.get(path)
        assert answer.status_code == 200
        assert "<script>" not in answer.text and "<img" not in answer.text
        page = tree(answer)
        assert not page.xpath("//script") and not page.xpath("//img[@onerror]")
        assert HOSTILE in page.text_content()


def test_older_and_newest_links_keep_the_search(
        world: w.World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("singlewindow.console.pages.PAGE_LIMIT", 1)
    client, _ = world.logged_in("op")
    # As the form sends it: every field, the empty ones too.
    form = {"q": "", "party": "", "type": "PAXLST", "outcome": "", "since": "2026-01-01T09:00",
            "until": ""}
    first = client.get("/messages", params=form)
    assert ids(first) == [w.SW_B] and not tree(first).xpath("//a[@id='newest']")
    [older] = tree(first).xpath("//nav[@id='paging']/a[@id='older']/@href")
    assert older == f"/messages?type=PAXLST&since=2026-01-01T09%3A00&before={w.SW_B}"
    second = client.get(older)
    assert ids(second) == [w.SW_A] and not tree(second).xpath("//a[@id='older']")
    assert "older message" in tree(second).xpath("string(//p[@class='count'])")
    assert tree(second).xpath("//a[@id='newest']/@href") == [
        "/messages?type=PAXLST&since=2026-01-01T09%3A00"]
    # Every message, each once, following Older to the end.
    seen, url = [], "/messages"
    while url:
        page = tree(client.get(url))
        seen += [str(tr.get("data-id")) for tr in page.xpath("//tr[@data-id]")]
        url = (page.xpath("//a[@id='older']/@href") or [""])[0]
    assert seen == [w.SW_R, w.SW_C, w.SW_B, w.SW_A]


def test_a_companys_later_page_and_a_cursor_not_its_own(
        world: w.World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("singlewindow.console.pages.PAGE_LIMIT", 1)
    client, _ = world.logged_in("acme-desk")
    assert ids(client.get("/messages")) == [w.SW_C]
    assert ids(client.get("/messages", params={"before": w.SW_C})) == [w.SW_A]
    # bright's message or no message: the same empty page, a way back to the newest.
    for before in (w.SW_B, "SW20991231000000000ffff0000"):
        answer = client.get("/messages", params={"before": before})
        assert answer.status_code == 200 and ids(answer) == []
        assert tree(answer).xpath("//p[@id='no-messages']")
        assert tree(answer).xpath("//a[@id='newest']/@href") == ["/messages"]
    bad = client.get("/messages", params={"before": "not an id"})
    assert bad.status_code == 400
    assert "before" in tree(bad).xpath("string(//p[@id='search-error'])")
