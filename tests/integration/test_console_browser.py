"""The web console as an operator on call and a company's EDI desk use it (issue 18):
Debian's Chromium, headless, trusting the stack's CA (tests/support/browser.py), on the
console the stack serves, after real submissions through its MTA listener (Postfix, the
policy daemon, the milter, the transport, PostgreSQL). Every page is checked for what the
browser's console reports: a CSP violation fails the test wherever it happens."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from singlewindow.config import Config
from tests.support import browser as chromium
from tests.support import console
from tests.support.browser import Browser
from tests.support.console import Scene

scene = console.scene_fixture()

#: What Chromium logs about a page that answered 404, the not-found page's own status.
NOT_FOUND = "status of 404"


@pytest.fixture(scope="module")
def chrome(sw_stack: Config) -> Iterator[Browser]:
    with chromium.chromium(console.base_url(sw_stack), sw_stack.ca_file) as b:
        yield b


@pytest.fixture
def browser(chrome: Browser) -> Iterator[Browser]:
    """The module's Chromium, logged out (no cookie left from the test before)."""
    chrome.driver.delete_all_cookies()
    chrome.log()
    chrome.checked = len(chrome.entries)
    yield chrome
    chrome.assert_clean([NOT_FOUND])


def rows(b: Browser) -> list[str]:
    """The Single Window ids the messages page lists."""
    if b.find_all("p#no-messages"):
        return []
    return [r.get_attribute("data-id") or "" for r in b.find_all("table#messages tr.message")]


def search(b: Browser, **fields: str) -> list[str]:
    """Fill the search form (by field id) as a person does, press search: the ids shown."""
    b.open("/messages")
    b.wait_for("form#search")
    for name, value in fields.items():
        if name == "outcome":
            b.find(f"select#outcome option[value='{value}']").click()
        else:
            b.fill({name: value})
    b.click("button#search-submit", "table#messages, p#no-messages")
    b.assert_clean()
    return rows(b)


def test_a_browser_without_the_stacks_ca_gets_no_console(sw_stack: Config) -> None:
    """The browser checks the console's certificate for real: without the CA in its
    trust store it stops at its certificate warning, so the tests' pages prove TLS."""
    with chromium.chromium(console.base_url(sw_stack), None) as b:
        b.open("/login")
        assert b.find_all("form#login-form") == []
        assert "login" not in b.driver.page_source


def test_a_wrong_password_shows_the_error_and_no_session(browser: Browser,
                                                           scene: Scene) -> None:
    operator = scene.operator
    browser.login(operator.login, operator.password + "x")
    assert browser.find("p#login-error").is_displayed()
    assert browser.find_all("nav#nav") == []
    assert browser.driver.get_cookie("sw_session") is None
    # The form again, answered 401 Unauthorized.
    browser.assert_clean(["/login - Failed to load resource: the server responded with a "
                          "status of 401"])
    # Not logged in: every page sends the browser to the form.
    browser.open("/messages")
    browser.wait_for("form#login-form")
    assert browser.path.startswith("/login")


def test_an_operator_finds_a_message_and_sees_its_whole_way(browser: Browser,
                                                             scene: Scene) -> None:
    operator, mail, world = scene.operator, scene.mail, scene.world
    co, rival, ag = world["co"], world["rival"], world["ag"]
    browser.login(operator.login, operator.password)
    assert browser.path.startswith("/messages")
    assert operator.login in browser.text("span#who")
    for link in ("a#nav-messages", "a#nav-parties", "a#nav-queue"):
        assert browser.find(link).is_displayed()
    browser.assert_clean()
    # By Single Window id, by the submitter's Message-ID, by party, by outcome.
    assert search(browser, q=mail.good.swid) == [mail.good.swid]
    assert search(browser, q=mail.broken.message_id) == [mail.broken.swid]
    # A party's messages: those it submitted and those addressed to it.
    assert set(search(browser, party=co.name)) == {mail.good.swid, mail.broken.swid,
                                                    mail.response.swid}
    assert set(search(browser, party=rival.name)) == {mail.rivals.swid}
    found = search(browser, party=co.name, outcome="not-forwarded")
    assert found == [mail.broken.swid]
    assert browser.text(f"tr.message[data-id='{mail.broken.swid}'] td.outcome") \
        == "not-forwarded"
    assert set(search(browser, party=co.name, outcome="forwarded")) == {
        mail.good.swid, mail.response.swid}
    # The clean one's page, reached by its link: the recipient, then every step.
    browser.click(f"tr.message[data-id='{mail.good.swid}'] a.message-link", "ol#timeline")
    assert mail.good.swid in browser.text("h1#message-id")
    [recipient] = browser.find_all("table#recipients tr.recipient")
    assert recipient.find_element("css selector", "td.recipient-address").text == ag.logical
    assert recipient.find_element("css selector", "td.recipient-status").text.startswith("2")
    # Received on the MTA listener, the copy to the agency (its physical address too:
    # an operator sees all), the DSN back to co, the agency's side of the copy.
    steps = {s.get_attribute("data-kind"): s.text for s in browser.find_all(
        "ol#timeline li.step")}
    assert {"received", "copy", "notice", "agency-dsn"} <= set(steps), steps
    assert "mta" in steps["received"]
    assert ag.logical in steps["copy"] and ag.physical in steps["copy"]
    assert "DSN" in steps["notice"] and co.logical in steps["notice"]
    assert browser.find_all("table#findings tr.finding") == []
    # The agency's answer, threaded under the copy it received, links to its own page.
    [response] = browser.find_all("section#responses li.response")
    assert mail.response.swid in response.text
    browser.click("section#responses li.response a", "ol#timeline")
    assert mail.response.swid in browser.text("h1#message-id")
    browser.assert_clean()


def test_an_operator_sees_a_mig_finding_with_its_position(browser: Browser,
                                                           scene: Scene) -> None:
    operator, mail, co = scene.operator, scene.mail, scene.world["co"]
    browser.login(operator.login, operator.password)
    browser.open(f"/messages/{quote(mail.broken.swid)}")
    browser.wait_for("ol#timeline")
    findings = browser.find_all("table#findings tr.finding")
    assert findings, "no finding shown"
    text = " ".join(f.text for f in findings)
    # The date of birth in month 99: where it is (message, segment, element), the rule.
    assert re.search(r"message M0 segment \d+ DTM element 1", text), text
    assert "19609915" in text and "PAX-R5" in text, text
    timeline = browser.text("ol#timeline").lower()
    assert "control message" in timeline and co.logical in browser.text(
        "ol#timeline")
    browser.assert_clean()


def test_an_operator_sees_parties_and_the_queue(browser: Browser, scene: Scene) -> None:
    operator, co = scene.operator, scene.world["co"]
    browser.login(operator.login, operator.password)
    browser.click("a#nav-parties", "table#parties")
    assert browser.find_all(f"table#parties tr.party[data-name='{co.name}']")
    browser.assert_clean()
    browser.open(f"/parties/{co.name}")
    assert browser.text("h1#party-name").endswith(co.name)
    addresses = browser.text("table#addresses")
    assert co.logical in addresses and co.physical in addresses
    browser.assert_clean()
    browser.click("a#nav-queue", "table#queue-counts")
    queues = {r.get_attribute("data-queue") for r in browser.find_all(
        "table#queue-counts tr[data-queue]")}
    assert {"active", "deferred"} <= queues, queues
    browser.assert_clean()


def test_a_company_sees_its_own_messages_only(browser: Browser, scene: Scene) -> None:
    desk, mail, world = scene.desk, scene.mail, scene.world
    co, rival, ag = world["co"], world["rival"], world["ag"]
    browser.login(desk.login, desk.password)
    assert browser.path.startswith("/messages")
    assert desk.login in browser.text("span#who")
    assert browser.find_all("a#nav-parties") == [] and browser.find_all("a#nav-queue") == []
    assert set(rows(browser)) == {mail.good.swid, mail.broken.swid}
    browser.assert_clean()
    # Searching for another party's message by its id finds nothing.
    assert search(browser, q=mail.rivals.swid) == []
    assert browser.find("p#no-messages").is_displayed()
    # Its own messages: the outcome per recipient, by logical address only; what came
    # back (the control message with its findings, the DSN, the agency's response).
    browser.open(f"/messages/{quote(mail.broken.swid)}")
    browser.wait_for("ol#timeline")
    [recipient] = browser.find_all("table#recipients tr.recipient")
    assert recipient.find_element("css selector", "td.recipient-address").text == ag.logical
    assert "not-forwarded" in browser.text("main#main")
    assert re.search(r"segment \d+ DTM", browser.text("table#findings tr.finding"))
    kinds = {s.get_attribute("data-kind") for s in browser.find_all("ol#timeline li.step")}
    assert {"received", "control-message", "notice"} <= kinds, kinds
    pages = [browser.driver.page_source]
    browser.assert_clean()
    browser.open(f"/messages/{quote(mail.good.swid)}")
    browser.wait_for("ol#timeline")
    assert mail.response.swid in browser.text("section#responses li.response")
    pages.append(browser.driver.page_source)
    for hidden in (ag.physical, ag.peer, co.peer, f":{ag.sink.port}", rival.name):
        assert not any(hidden in page for page in pages), hidden
    browser.assert_clean()
    # Another company's message and the operators' pages: not found, whatever the URL.
    for path in (f"/messages/{quote(mail.rivals.swid)}", "/parties", f"/parties/{co.name}",
                 "/queue"):
        browser.open(path)
        browser.wait_for("h1#not-found")
        assert mail.rivals.subject not in browser.driver.page_source
        # Answered with the status, not only the words (Chromium logs the 404).
        assert any(NOT_FOUND in e["message"] for e in browser.log()), path
        browser.assert_clean([NOT_FOUND])
    # Logging out ends the session: the pages send the browser to the form again.
    browser.open("/messages")
    browser.logout()
    assert browser.driver.get_cookie("sw_session") is None
    browser.open(f"/messages/{quote(mail.good.swid)}")
    browser.wait_for("form#login-form")
    assert mail.good.subject not in browser.driver.page_source
    browser.assert_clean()
