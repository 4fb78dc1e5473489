"""The maildrop lock against a careless client, on the real Postfix, Dovecot and poplib
(SPEC R3.2, D6; issue 12 item 7).

This module runs its own stack whose Postfix retries a deferred message only after ten
minutes, so a delivery that lands within 60 s of QUIT was retried because the session
ended, not by the queue's own schedule. Its dovecot-lda is the real one behind a wrapper
that can be made slow for one login, to hold a delivery open while a client logs in.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from singlewindow import stack
from singlewindow.config import Config, Console, Listeners, Metrics, Queue, Transport
from singlewindow.transport import maildrop
from tests.support import factory
from tests.support.local import free_port, short_state_dir
from tests.support.pop3 import logged_in
from tests.support.world import Party, World, message, wait_until

REAL_LDA = Path("/usr/lib/dovecot/dovecot-lda")


def lda_wrapper(path: Path, maildrops: Path, slow: Path) -> None:
    """dovecot-lda, first sleeping 5 s (and saying so) for a login with a file in
    ``slow``, where it also records the POP3 session lock it finds held meanwhile."""
    path.write_text(f"""#!/bin/sh
login=
prev=
for arg in "$@"; do
  [ "$prev" = "-d" ] && login=$arg
  prev=$arg
done
if [ -n "$login" ] && [ -e "{slow}/$login" ]; then
  cat "{maildrops}/$login/Maildir/{maildrop.LOCK_NAME}" > "{slow}/$login.lock" 2>&1
  touch "{slow}/$login.started"
  sleep 5
fi
exec {REAL_LDA} "$@"
""")
    path.chmod(0o755)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    state = short_state_dir()
    slow = state / "slow-lda"
    slow.mkdir()
    lda = state / "dovecot-lda"
    lda_wrapper(lda, state / "maildrops", slow)
    base = replace(
        Config(),
        listeners=Listeners(mta_port=free_port(), msa_port=free_port(),
                            pop3_port=free_port(), pop3s_port=free_port(),
                            reinject_port=free_port()),
        metrics=Metrics(listen=f"127.0.0.1:{free_port()}"),
        console=Console(listen=f"127.0.0.1:{free_port()}"),
        # Far longer than the 60 s the test allows after QUIT.
        queue=Queue(lifetime="1d", minimal_backoff="600s", maximal_backoff="1200s",
                    run_delay="600s"),
        transport=Transport(dovecot_lda=lda))
    try:
        config = stack.up(state, base=base, say=lambda _: None)
        with World(config) as world:
            world.add("ag", "agency")
            yield world
    finally:
        stack.down(state, say=lambda _: None)
        if not os.environ.get("SW_KEEP_STATE"):
            shutil.rmtree(state, ignore_errors=True)


def respond(world: World, to: Party) -> str:
    """The agency answers ``to``; returns the subject."""
    ag = world["ag"]
    subj = "resp " + secrets.token_hex(6)
    data = message(ag, to.logical, subj, factory.declaration_response())
    assert world.submit(ag, [to.logical], data) == {}
    return subj


def maildir(config: Config, client: Party) -> Path:
    return config.paths.maildrop_dir / client.login / "Maildir"


def delivered(config: Config, client: Party, subj: str) -> bool:
    root = maildir(config, client)
    return any(subj.encode() in p.read_bytes()
               for d in ("new", "cur") if (root / d).is_dir() for p in (root / d).iterdir())


def deferrals(config: Config, client: Party) -> int:
    """Postfix's log lines for a delivery to ``client`` deferred by the lock (4.2.1)."""
    log = (config.paths.log_dir / "postfix.log").read_text()
    return sum(f"to=<{client.logical}>" in line and "status=deferred" in line
               and "4.2.1" in line for line in log.splitlines())


def retried(world: World, client: Party, before: int, subj: str) -> bool:
    """Whether Postfix tried ``client`` again (deferred, or delivered: the lock broken);
    if not, ask it to."""
    if deferrals(world.config, client) > before or delivered(world.config, client, subj):
        return True
    world.flush()
    time.sleep(1)
    return False


def test_long_session_is_never_written_into_and_delivery_follows_quit(world: World) -> None:
    config = world.config
    mc = world.add_mail_client("mc")
    session = logged_in(config, mc)  # TRANSACTION state: the session holds the maildrop
    try:
        lock = maildir(config, mc) / maildrop.LOCK_NAME
        pid, _, host = lock.read_text().partition(":")
        assert host == socket.gethostname()  # Dovecot's "pid:host"
        os.kill(int(pid), 0)  # its pop3 process, alive
        subj = respond(world, mc)
        wait_until(lambda: deferrals(config, mc) >= 1, timeout=60)
        assert not delivered(config, mc, subj)
        # The session lasts past the 300 s after which the old code broke the lock:
        # Dovecot touches it only every 300 s, so its mtime is that old by then.
        old = time.time() - 2 * maildrop.STALE_SECONDS
        os.utime(lock, (old, old))
        # Postfix tries again while the session lives (asked until it has: the entry may
        # still be on its way to the deferred queue, which postqueue -f alone retries).
        wait_until(lambda: retried(world, mc, 1, subj), timeout=60)
        assert not delivered(config, mc, subj)
        assert session.stat()[0] == 0
        assert lock.read_text() == f"{pid}:{host}"  # still the session's own lock
    finally:
        session.quit()
    quit_at = time.monotonic()
    wait_until(lambda: delivered(config, mc, subj), timeout=60)
    assert time.monotonic() - quit_at < 60
    session = logged_in(config, mc)
    try:
        assert session.stat()[0] == 1
    finally:
        session.quit()


def test_first_delivery_locks_the_maildrop_before_it_exists(world: World) -> None:
    """A company's first message is being delivered, its Maildir not made yet, when its
    clerk logs in for the first time: the session opens only after the delivery, whole."""
    config = world.config
    mc = world.add_mail_client("first")
    assert not maildir(config, mc).exists()
    slow = config.paths.state_dir / "slow-lda"
    (slow / mc.login).touch()
    subj = respond(world, mc)
    wait_until(lambda: (slow / f"{mc.login}.started").exists(), timeout=60)
    held = (slow / f"{mc.login}.lock").read_text()
    assert held.endswith(f":{socket.gethostname()}")  # the delivery's lock, before any
    session = logged_in(config, mc)  # waits for the delivery's lock (up to 10 s)
    try:
        assert session.stat()[0] == 1
        assert b"\r\n".join(session.retr(1)[1]).count(subj.encode()) == 1
    finally:
        session.quit()
    assert deferrals(config, mc) == 0

