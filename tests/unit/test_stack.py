"""The local stack's pure parts (the stack itself runs in tests/integration/test_stack.py)."""

from __future__ import annotations

import string
from dataclasses import replace

from singlewindow import stack
from singlewindow.config import Config, Console


def test_the_demo_password_never_looks_like_an_option() -> None:
    """swaks (and other tools' option parsers) take a password that starts with ``-`` for
    an option; 1 in 64 of the old demo passwords did. 128 bits, in hex."""
    drawn = {stack.demo_password() for _ in range(2000)}
    assert len(drawn) == 2000
    assert all(len(p) == 32 and set(p) <= set(string.hexdigits) for p in drawn)
    assert not any(p.startswith("-") for p in drawn)


def test_the_consoles_url_is_what_a_browser_opens() -> None:
    """``swctl stack status`` and ``up`` show the console as a URL: an IPv6 address in
    brackets (RFC 3986 §3.2.2), the port always."""
    def url(listen: str) -> str:
        return stack.console_url(replace(Config(), console=Console(listen=listen)))

    assert url("127.0.0.1:8443") == "https://127.0.0.1:8443/"
    assert url("[::1]:9443") == "https://[::1]:9443/"
    assert url("localhost:443") == "https://localhost:443/"
