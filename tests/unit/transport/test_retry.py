"""The watcher that asks Postfix to retry what a maildrop lock held (no Postfix here: a
stand-in postqueue records its arguments; the integration test runs the real one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from singlewindow.transport import retry


@pytest.mark.parametrize(("received", "queue_id"), [
    # smtpd
    ("from mx.acme.example (mx.acme.example [127.0.4.10]) by mail.sw.test (Postfix) with "
     "ESMTP id 4B1C2D3E4F for <x@sw.test>; Sun, 29 Nov 2026 12:00:00 +0000", "4B1C2D3E4F"),
    # pickup, and the bounce daemon (post_mail)
    ("by mail.sw.test (Postfix, from userid 0) id 51A0B1C2D3; Sun, 29 Nov 2026", "51A0B1C2D3"),
    ("by mail.sw.test (Postfix) id 6F00112233; Sun, 29 Nov 2026 12:00:00 +0000", "6F00112233"),
    # another MTA's, or none
    ("from a by b (Exim 4.96) with esmtp id 1tXyZa-000abc-Q1", None),
    (None, None),
])
def test_queue_id_from_postfix_received(received: str | None, queue_id: str | None) -> None:
    assert retry.queue_id(received) == queue_id


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_postqueue_runs_only_once_the_lock_is_gone(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    postqueue = tmp_path / "postqueue"
    postqueue.write_text(f"#!/bin/sh\necho \"$@\" >> '{calls}'\n")
    postqueue.chmod(0o755)
    locks = {tmp_path / "a.lock"}
    clock = Clock()
    retrier = retry.Retrier(postqueue, tmp_path / "postfix", held=lambda p: p in locks,
                            clock=clock)
    retrier.wait_for(tmp_path / "a.lock", "4B1C2D3E4F")
    for _ in range(5):
        clock.now += 60
        assert retrier.poll() == []  # a session still holds the maildrop
    locks.clear()  # QUIT
    fired = []
    for _ in range(40):
        fired.append(retrier.poll())
        clock.now += 1
    # At once, and again while the entry may still be on its way to the deferred queue.
    assert [i for i, ids in enumerate(fired) if ids] == [int(s) for s in retry.SCHEDULE]
    assert calls.read_text().splitlines() == \
        [f"-c {tmp_path / 'postfix'} -i 4B1C2D3E4F"] * len(retry.SCHEDULE)
    assert retrier.waiting() == []


def test_entry_deferred_again_waits_again(tmp_path: Path) -> None:
    locks = {tmp_path / "a.lock"}
    clock = Clock()
    asked: list[str] = []
    retrier = retry.Retrier(tmp_path / "postqueue", tmp_path, held=lambda p: p in locks,
                            clock=clock)
    retrier.flush = asked.append  # type: ignore[method-assign]
    retrier.wait_for(tmp_path / "a.lock", "AAA")
    locks.clear()
    assert retrier.poll() == ["AAA"]
    locks.add(tmp_path / "a.lock")  # the client logged in again; the retry deferred
    retrier.wait_for(tmp_path / "a.lock", "AAA")
    clock.now += 100
    assert retrier.poll() == []
    locks.clear()
    assert retrier.poll() == ["AAA"]
    assert asked == ["AAA", "AAA"]


def test_a_maildrop_held_on_the_backend_is_retried_on_a_timer(tmp_path: Path) -> None:
    """Issue 15: the backend's lock cannot be watched from an edge; postqueue -i runs at
    each of REMOTE_SCHEDULE after the deferral, and the entry is then forgotten."""
    calls = tmp_path / "calls"
    postqueue = tmp_path / "postqueue"
    postqueue.write_text(f"#!/bin/sh\necho \"$@\" >> '{calls}'\n")
    postqueue.chmod(0o755)
    clock = Clock()

    def never(_: Path) -> bool:
        raise AssertionError("no local lock to look at")

    retrier = retry.Retrier(postqueue, tmp_path / "postfix", held=never, clock=clock)
    retrier.retry_later("7C0FFEE123")
    fired = []
    for _ in range(150):
        fired.append(retrier.poll())
        clock.now += 1
    assert [i for i, ids in enumerate(fired) if ids] == [int(s) for s in
                                                         retry.REMOTE_SCHEDULE]
    assert calls.read_text().splitlines() == \
        [f"-c {tmp_path / 'postfix'} -i 7C0FFEE123"] * len(retry.REMOTE_SCHEDULE)
    assert retrier.waiting() == []
