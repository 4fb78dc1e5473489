"""tests/support/browser.py: what fails a browser test, and the trust store Chromium is
given (the browser itself is exercised by tests/integration/test_console_browser.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import browser, pki


def entry(source: str, message: str, level: str = "SEVERE") -> browser.LogEntry:
    """A browser log entry as Chromium hands it to Selenium."""
    return {"level": level, "source": source, "message": message, "timestamp": 0}


ORIGIN = "https://127.0.0.1:8443"
INLINE_SCRIPT = entry("security", f"{ORIGIN}/messages 0 Executing inline script violates "
                      "the following Content Security Policy directive 'script-src 'self''."
                      " The action has been blocked.")
NOT_FOUND = entry("network", f"{ORIGIN}/messages/SW1 - Failed to load resource: the server "
                  "responded with a status of 404 ()")
SCRIPT_ERROR = entry("javascript", f"{ORIGIN}/static/console.js 3:7 Uncaught TypeError: "
                     "x is null")
INFO = entry("console-api", "console.js 1:1 \"ready\"", level="INFO")


def test_errors_fail_unless_expected_and_csp_violations_always() -> None:
    entries = [INFO, NOT_FOUND, SCRIPT_ERROR, INLINE_SCRIPT]
    assert browser.problems(entries) == [NOT_FOUND["message"], SCRIPT_ERROR["message"],
                                         INLINE_SCRIPT["message"]]
    # A 404 page's own status is expected there; the script error is not.
    assert browser.problems(entries, ["status of 404"]) == [SCRIPT_ERROR["message"],
                                                            INLINE_SCRIPT["message"]]
    # Expecting a violation's words does not excuse it.
    assert browser.problems([INLINE_SCRIPT], ["script-src", "violates"]) == [
        INLINE_SCRIPT["message"]]
    assert browser.problems([INFO]) == []


def test_the_trust_store_holds_the_ca_for_tls_servers_only(tmp_path: Path) -> None:
    pki.make_ca(tmp_path, "ca")
    nssdb = browser.trust_store(tmp_path / "home", tmp_path / "ca.pem")
    assert nssdb == tmp_path / "home" / ".pki" / "nssdb"
    listed = subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-L"], check=True,
                            capture_output=True, text=True).stdout
    [line] = [line for line in listed.splitlines() if "Single Window" in line]
    assert line.split()[-1] == "C,,"
    # The certificate held is the CA's own.
    shown = subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-L", "-a", "-n",
                            "Single Window stack CA"], check=True, capture_output=True,
                           text=True).stdout
    assert "".join(shown.split()) == "".join((tmp_path / "ca.pem").read_text().split())


def test_chromium_leaves_nothing_in_tmp() -> None:
    """Chromium's temporary files go into its throwaway HOME, removed with it: each
    browser test used to leave an org.chromium.Chromium.* directory in /tmp."""
    tmp = Path("/tmp")
    before = {p.name for p in tmp.iterdir()}
    with browser.chromium("https://127.0.0.1:9/", None) as b:
        b.driver.get("data:text/html,<p id=x>here</p>")
        assert b.driver.find_element("id", "x").text == "here"
    left = {p.name for p in tmp.iterdir()} - before
    assert not {n for n in left if n.startswith(("org.chromium.", "sw-chrome-"))}
