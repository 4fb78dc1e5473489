"""The web console as a person sees it: Debian's Chromium, headless, driven by Selenium
through Debian's version-matched chromedriver (nothing downloaded: no Selenium Manager).

Chromium checks the console's certificate for real. It runs with a throwaway HOME whose
NSS database (``~/.pki/nssdb``, where Chromium on Linux keeps its trust store) trusts the
stack's CA for TLS servers and nothing else; no certificate error is ignored, so a page
that loads proved the console's chain and name. Everything the page reports to the
browser's console is kept: a Content Security Policy violation always fails, and any
other error does unless the test expects it (a 404 page's own status).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Every page is seen (and screenshotted) at this size, so pictures compare run to run.
WINDOW = (1280, 900)
#: The tallest full-page screenshot: longer pages are cut there.
MAX_HEIGHT = 4000
#: Seconds a page may take to show what a step waits for.
TIMEOUT = 20.0
#: Chromium's words for a CSP violation in its console ("... violates the following
#: Content Security Policy directive ..."), reported with source "security".
CSP = "Content Security Policy"

LogEntry = dict[str, Any]


def trust_store(home: Path, ca_file: Path) -> Path:
    """An NSS database in ``home``/.pki/nssdb holding ``ca_file`` as a CA trusted to
    issue TLS server certificates only (trust flags ``C,,``: not for mail, not for
    code); its path. Needs certutil (Debian's libnss3-tools)."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True, exist_ok=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"],
                   check=True, capture_output=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-A", "-n", "Single Window stack CA",
                    "-t", "C,,", "-i", str(ca_file)], check=True, capture_output=True)
    return nssdb


def problems(entries: Iterable[LogEntry], expected: Iterable[str] = ()) -> list[str]:
    """What in the browser log ``entries`` should fail a test: every CSP violation (never
    expected), and every other error (level SEVERE) whose message contains none of the
    ``expected`` strings."""
    allowed = tuple(expected)

    def fails(entry: LogEntry) -> bool:
        message: str = entry.get("message", "")
        if CSP in message:
            return True
        return entry.get("level") == "SEVERE" and not any(a in message for a in allowed)
    return [e["message"] for e in entries if fails(e)]


def options(window: tuple[int, int] = WINDOW) -> webdriver.ChromeOptions:
    """Debian's Chromium, headless, at a fixed window size, its console log kept. As root
    Chromium's own sandbox cannot start (``--no-sandbox``)."""
    chosen = webdriver.ChromeOptions()
    chosen.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", f"--window-size={window[0]},{window[1]}",
                     "--no-first-run", "--no-default-browser-check",
                     "--disable-extensions", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync"):
        chosen.add_argument(argument)
    chosen.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return chosen


@dataclass
class Browser:
    """One Chromium window on the console at ``base_url`` (``https://HOST:PORT``)."""

    driver: WebDriver
    base_url: str
    window: tuple[int, int] = WINDOW
    #: Every browser log entry seen so far, in order.
    entries: list[LogEntry] = field(default_factory=list)
    #: How many of ``entries`` :meth:`assert_clean` has judged already.
    checked: int = 0

    def open(self, path: str) -> None:
        """Go to ``path`` on the console (``/messages?q=...``)."""
        self.driver.get(self.base_url + path)

    @property
    def path(self) -> str:
        """The current page's path and query, without the console's origin."""
        url: str = self.driver.current_url
        return url.removeprefix(self.base_url)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        found: str = self.find(css).text
        return found

    def wait_for(self, css: str, timeout: float = TIMEOUT) -> WebElement:
        """The element ``css`` once the page shows it; fails with the page's path."""
        try:
            found: WebElement = WebDriverWait(self.driver, timeout).until(
                expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))
        except TimeoutException:
            raise AssertionError(f"no {css} on {self.path} within {timeout:.0f}s") from None
        return found

    def fill(self, values: dict[str, str]) -> None:
        """Type ``values`` into the inputs with those ids (replacing what they held)."""
        for name, value in values.items():
            field_ = self.find(f"#{name}")
            field_.clear()
            field_.send_keys(value)

    def click(self, target: str, then: str) -> WebElement:
        """Click ``target`` (a CSS selector: a link, a form's button) and wait for the next
        page's ``then`` (never found on the page being left)."""
        # A mark on this document's window: gone once the next document is shown.
        self.driver.execute_script("window.swLeaving = true")
        self.find(target).click()
        try:
            WebDriverWait(self.driver, TIMEOUT).until(
                lambda d: d.execute_script("return window.swLeaving === undefined"))
        except TimeoutException:
            raise AssertionError(f"{target} on {self.path} led nowhere") from None
        return self.wait_for(then)

    def login(self, login: str, password: str) -> None:
        """Log in through the form at /login, as a person types; ends on the page the
        console sends a logged-in person to, or on the form again with its error."""
        self.open("/login")
        self.wait_for("form#login-form")
        self.fill({"login": login, "password": password})
        self.click("button#login-submit", "nav#nav, p#login-error")

    def logout(self) -> None:
        """Press the logout button in the page's header; ends on the login form."""
        self.click("button#logout-button", "form#login-form")

    def log(self) -> list[LogEntry]:
        """The browser's console entries since the last call (Chromium hands each once)."""
        new: list[LogEntry] = self.driver.get_log("browser")
        self.entries.extend(new)
        return new

    def assert_clean(self, expected: Iterable[str] = ()) -> None:
        """Fail on any CSP violation or unexpected error logged since the last check."""
        self.log()
        found = problems(self.entries[self.checked:], expected)
        self.checked = len(self.entries)
        assert not found, f"browser console on {self.path}:\n" + "\n".join(found)

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """A PNG of the window at ``path``; ``full_page``: as tall as the page (up to
        :data:`MAX_HEIGHT`), at the window's width."""
        path.parent.mkdir(parents=True, exist_ok=True)
        width, height = self.window
        if full_page:
            # The window's height counts its own frame too, the page's does not.
            tall, frame = self.driver.execute_script(
                "return [document.documentElement.scrollHeight,"
                " window.outerHeight - window.innerHeight]")
            self.driver.set_window_size(width, min(max(int(tall) + int(frame), height),
                                                   MAX_HEIGHT))
        try:
            assert self.driver.save_screenshot(str(path)), f"no screenshot at {path}"
        finally:
            if full_page:
                self.driver.set_window_size(width, height)
        return path


@contextlib.contextmanager
def chromium(base_url: str, ca_file: Path | None,
             window: tuple[int, int] = WINDOW) -> Iterator[Browser]:
    """A headless Chromium trusting ``ca_file`` (None: no CA of ours, only what a fresh
    NSS database holds) for the console at ``base_url``; quit, its HOME removed, when
    the block ends."""
    home = Path(tempfile.mkdtemp(dir="/tmp", prefix="sw-chrome-"))
    try:
        if ca_file is not None:
            trust_store(home, ca_file)
        # chromedriver passes its environment on to the Chromium it starts; its
        # temporary files (the profile's singleton socket) go into HOME too, removed with
        # it, not into /tmp, where each run left a directory behind.
        (home / "tmp").mkdir()
        service = Service(CHROMEDRIVER, env={**os.environ, "HOME": str(home),
                                             "TMPDIR": str(home / "tmp")})
        driver = webdriver.Chrome(service=service, options=options(window))
        try:
            yield Browser(driver, base_url.rstrip("/"), window)
        finally:
            driver.quit()
    finally:
        shutil.rmtree(home, ignore_errors=True)
