"""Reading a server's log file from a test.

Dovecot's log process and Postfix's postlogd write a line a moment after the client has
had its answer, so a test that reads the file at once can miss a line that is on its way.
A test that expects a line waits for it here; the deadline makes a line that never comes
a failure that prints the log's tail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

#: Seconds a line may take from the server's answer to the file; far more than it takes.
LOG_DEADLINE = 10.0


def lines(path: Path) -> list[str]:
    """The lines of ``path`` now (none while it does not exist yet)."""
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def wait_for_lines(path: Path, match: Callable[[str], bool],
                   timeout: float = LOG_DEADLINE) -> list[str]:
    """Every line of ``path`` that ``match`` accepts, as soon as there is at least one;
    AssertionError with the log's tail when none came within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in lines(path) if match(line)]
        if found:
            return found
        if time.monotonic() > deadline:
            tail = "\n".join(lines(path)[-40:])
            raise AssertionError(f"no matching line in {path} after {timeout:.0f}s:\n{tail}")
        time.sleep(0.1)
