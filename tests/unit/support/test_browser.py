"""tests/support/browser.py: what fails a browser test, and the trust store Chromium is
given (the browser itself is exercised by tests/integration/test_console_browser.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import browser, pki

#: As Chromium logs them (source "security", level SEVERE).
INLINE_SCRIPT = {
    "level": "SEVERE", "source": "security",
    "message": "https://127.0.0.1:8443/messages 0 Executing inline script violates the "
               "following Content Security Policy directive 'script-src 'self''. The "
               "action has been blocked."}
NOT_FOUND = {
    "level": "SEVERE", "source": "network",
    "message": "https://127.0.0.1:8443/messages/SW1 - Failed to load resource: the server "
               "responded with a status of 404 ()"}
SCRIPT_ERROR = {
    "level": "SEVERE", "source": "javascript",
    "message": "https://127.0.0.1:8443/static/console.js 3:7 Uncaught TypeError: x is null"}
FAVICON = {
    "level": "SEVERE", "source": "network",
    "message": "https://127.0.0.1:8443/favicon.ico - Failed to load resource: the server "
               "responded with a status of 404 (Not Found)"}
BROKEN_FAVICON = {
    "level": "SEVERE", "source": "network",
    "message": "https://127.0.0.1:8443/favicon.ico - Failed to load resource: the server "
               "responded with a status of 500 (Internal Server Error)"}
INFO = {"level": "INFO", "source": "console-api", "message": "console.js 1:1 \"ready\""}


def test_csp_violations_are_told_apart_from_other_entries() -> None:
    entries = [INFO, NOT_FOUND, INLINE_SCRIPT]
    assert browser.csp_violations(entries) == [INLINE_SCRIPT["message"]]
    assert browser.csp_violations([INFO, NOT_FOUND]) == []


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


def test_a_missing_favicon_is_no_problem_a_failing_one_is() -> None:
    """Chromium asks for /favicon.ico whatever the page says: its 404 is not the page's
    error, but a console answering 500 there is broken."""
    assert browser.problems([FAVICON, BROKEN_FAVICON]) == [BROKEN_FAVICON["message"]]


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
