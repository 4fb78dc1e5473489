"""The local stack's pure parts (the stack itself runs in tests/integration/test_stack.py)."""

from __future__ import annotations

import string

from singlewindow import stack


def test_the_demo_password_never_looks_like_an_option() -> None:
    """swaks (and other tools' option parsers) take a password that starts with ``-`` for
    an option; 1 in 64 of the old demo passwords did. 128 bits, in hex."""
    drawn = {stack.demo_password() for _ in range(2000)}
    assert len(drawn) == 2000
    assert all(len(p) == 32 and set(p) <= set(string.hexdigits) for p in drawn)
    assert not any(p.startswith("-") for p in drawn)
