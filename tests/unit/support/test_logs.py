"""tests/support/logs.py: a line on its way is waited for; one that never comes fails."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.support.logs import lines, wait_for_lines


def test_a_line_written_after_the_call_is_found(tmp_path: Path) -> None:
    log = tmp_path / "dovecot.log"
    log.write_text("master: Info: starting up\n")

    def later() -> None:
        time.sleep(0.5)
        with log.open("a") as file:
            file.write("pop3-login: Info: proxy(mc,10.0.3.10:995): Started proxying\n")

    writer = threading.Thread(target=later)
    writer.start()
    try:
        found = wait_for_lines(log, lambda line: "Started proxying" in line)
    finally:
        writer.join()
    assert found == ["pop3-login: Info: proxy(mc,10.0.3.10:995): Started proxying"]


def test_every_matching_line_is_returned(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("a 1\nb\na 2\n")
    assert wait_for_lines(log, lambda line: line.startswith("a")) == ["a 1", "a 2"]


def test_a_line_that_never_comes_fails_with_the_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("only this\n")
    with pytest.raises(AssertionError, match="only this"):
        wait_for_lines(log, lambda line: "never" in line, timeout=0.3)


def test_a_log_not_yet_there_has_no_lines(tmp_path: Path) -> None:
    assert lines(tmp_path / "absent.log") == []
    with pytest.raises(AssertionError, match="no matching line"):
        wait_for_lines(tmp_path / "absent.log", lambda line: True, timeout=0.2)
