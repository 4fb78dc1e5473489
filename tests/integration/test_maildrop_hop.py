"""The maildrop hop (issue 15) on the real Dovecot: a second sw-maildrop beside the stack,
with the stack's Dovecot configuration, maildrops and log, delivers with the real
dovecot-lda under real POP3 session locks; the edge's side is :class:`hop.Hop`, and the
whole transport with ``[maildrop] backend`` set."""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from singlewindow import replies
from singlewindow.config import ADMIN_ROLE, Config, Maildrop, to_toml
from singlewindow.replies import Reply
from singlewindow.store import connect
from singlewindow.transport import hop
from tests.support import factory
from tests.support.local import free_port, short_state_dir
from tests.support.maildrop import backend
from tests.support.pop3 import logged_in
from tests.support.world import Party, World, message, replaced_transport, wait_until

#: The backend's [maildrop] lock_wait here: long enough to see a delivery wait, short
#: enough to see it give up.
LOCK_WAIT = 4.0


@pytest.fixture(scope="module")
def hop_world(sw_stack: Config) -> Iterator[tuple[World, Config, Path]]:
    """The stack, a sw-maildrop on 127.0.0.1 (a free port) serving its maildrops, and the
    edge's config that reaches it by the name in the stack's certificate."""
    work = short_state_dir()
    port = free_port()
    served = replace(sw_stack, maildrop=Maildrop(
        listen=f"127.0.0.1:{port}", clients=("127.0.0.1",), lock_wait=LOCK_WAIT))
    edge = replace(sw_stack, maildrop=Maildrop(backend=f"localhost:{port}",
                                               lock_wait=LOCK_WAIT))
    try:
        with backend(served, work), World(sw_stack) as world:
            world.add("ag", "agency")
            yield world, edge, work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def copy_for(client: Party, subject: str) -> bytes:
    return (f"From: <single-window@sw.test>\r\nTo: <{client.logical}>\r\n"
            f"Subject: {subject}\r\nMessage-ID: <SWN{secrets.token_hex(8)}@sw.test>\r\n"
            "Date: Mon, 30 Nov 2026 08:00:00 +0000\r\n\r\nover the hop\r\n").encode()


def saved(config: Config, client: Party, subject: str) -> int:
    """How many messages in ``client``'s maildrop carry ``subject``."""
    root = config.paths.maildrop_dir / client.login / "Maildir"
    return sum(p.read_bytes().count(subject.encode())
               for d in ("new", "cur") if (root / d).is_dir() for p in (root / d).iterdir())


def decisions(work: Path, needle: str) -> list[str]:
    return [line for line in (work / "sw-maildrop.log").read_text().splitlines()
            if "event=maildrop" in line and needle in line]


def test_a_delivery_over_the_hop_is_fetched_by_pop3(hop_world: tuple[World, Config, Path]
                                                    ) -> None:
    world, edge, work = hop_world
    client = world.add_mail_client("hop")
    subject = "hop " + secrets.token_hex(4)
    assert hop.Hop(edge).deliver(client.login, "", copy_for(client, subject)).code == 250
    session = logged_in(world.config, client)
    try:
        assert session.stat()[0] == 1
        assert subject.encode() in b"\r\n".join(session.retr(1)[1])
    finally:
        session.quit()
    (line,) = decisions(work, f"login={client.login}")
    assert "action=deliver" in line and "reply=\"250 2.0.0" in line


def _deliver_in_background(edge: Config, client: Party, data: bytes
                           ) -> tuple[threading.Thread, list[Reply], list[float]]:
    result: list[Reply] = []
    done: list[float] = []

    def run() -> None:
        result.append(hop.Hop(edge).deliver(client.login, "", data))
        done.append(time.monotonic())

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result, done


def test_a_delivery_waits_for_the_pop3_session_and_lands_after_quit(
        hop_world: tuple[World, Config, Path]) -> None:
    world, edge, work = hop_world
    client = world.add_mail_client("held")
    subject = "held " + secrets.token_hex(4)
    session = logged_in(world.config, client)  # the session holds the maildrop
    try:
        assert session.stat()[0] == 0
        thread, result, done = _deliver_in_background(edge, client, copy_for(client, subject))
        time.sleep(LOCK_WAIT / 2)
        assert thread.is_alive() and not result  # held at the backend, not refused
        assert saved(world.config, client, subject) == 0  # never written into a session
    finally:
        session.quit()
    quit_at = time.monotonic()
    thread.join(timeout=30)
    assert result and result[0].code == 250
    assert done[0] - quit_at < 2.0  # as soon as the session is gone
    assert saved(world.config, client, subject) == 1
    (line,) = decisions(work, f"login={client.login}")
    assert "action=deliver" in line
    assert float(line.split("waited=")[1].split()[0]) >= LOCK_WAIT / 2


def test_past_lock_wait_the_backend_answers_451_4_2_1_and_saves_nothing(
        hop_world: tuple[World, Config, Path]) -> None:
    world, edge, work = hop_world
    client = world.add_mail_client("busy")
    subject = "busy " + secrets.token_hex(4)
    session = logged_in(world.config, client)
    try:
        started = time.monotonic()
        reply = hop.Hop(edge).deliver(client.login, "", copy_for(client, subject))
        assert time.monotonic() - started >= LOCK_WAIT
    finally:
        session.quit()
    assert reply == replies.MAILDROP_LOCKED  # the edge defers as for a local lock
    (line,) = decisions(work, f"login={client.login}")
    assert "action=defer" in line
    assert f"reply={replies.MAILDROP_BUSY.line()}" in line.replace('"', "")
    time.sleep(1)
    assert saved(world.config, client, subject) == 0


def test_a_retried_copy_already_saved_is_answered_250_and_not_saved_twice(
        hop_world: tuple[World, Config, Path]) -> None:
    world, edge, work = hop_world
    client = world.add_mail_client("retry")
    subject = "retry " + secrets.token_hex(4)
    data = copy_for(client, subject)
    since = time.time() - 60  # the claim's first attempt
    first = hop.Hop(edge).deliver(client.login, "", data)
    assert first.code == 250 and first != replies.MAILDROP_SAVED_BEFORE
    # The edge died before it recorded the 250: its retry says since when.
    again = hop.Hop(edge).deliver(client.login, "", data, since=since)
    assert again == replies.MAILDROP_SAVED_BEFORE
    assert saved(world.config, client, subject) == 1
    # A retried copy that no attempt saved is saved.
    other = "other " + secrets.token_hex(4)
    fresh = hop.Hop(edge).deliver(client.login, "", copy_for(client, other), since=since)
    assert fresh.code == 250 and fresh != replies.MAILDROP_SAVED_BEFORE
    session = logged_in(world.config, client)
    try:
        assert session.stat()[0] == 2
    finally:
        session.quit()
    actions = [line.split("action=")[1].split()[0]
               for line in decisions(work, f"login={client.login}")]
    assert actions == ["deliver", "duplicate", "deliver"]


def test_the_transport_of_an_edge_delivers_maildrop_copies_over_the_hop(
        hop_world: tuple[World, Config, Path]) -> None:
    """The stack's transport replaced by an edge's: ``[maildrop] backend`` set, and a
    dovecot-lda that cannot run, so only the hop can have delivered the agency's answers.
    The first arrives while a POP3 session holds the maildrop past the backend's
    lock_wait: deferred (4.2.1, a ``maildrop-deferred`` event as for a local lock), then
    delivered once the session is gone."""
    world, edge, work = hop_world
    client = world.add_mail_client("edge")
    agency = world["ag"]
    config_file = work / "edge.toml"
    config_file.write_text(to_toml(replace(edge, transport=replace(
        edge.transport, dovecot_lda=Path("/nonexistent/dovecot-lda")))))
    with replaced_transport(world.config, ["--config", str(config_file)], {},
                            "transport-edge"):
        session = logged_in(world.config, client)
        try:
            held = "held " + secrets.token_hex(4)
            data = message(agency, client.logical, held, factory.declaration_response())
            assert world.submit(agency, [client.logical], data) == {}
            wait_until(lambda: decisions(work, f"login={client.login}") != [], timeout=60)
            assert saved(world.config, client, held) == 0
            assert "action=defer" in decisions(work, f"login={client.login}")[0]
            wait_until(lambda: deferred_events(world.config, client) == 1, timeout=30)
        finally:
            session.quit()
        wait_until(lambda: saved(world.config, client, held) == 1, timeout=90)
        subject = "edge " + secrets.token_hex(4)
        data = message(agency, client.logical, subject, factory.declaration_response())
        assert world.submit(agency, [client.logical], data) == {}
        wait_until(lambda: saved(world.config, client, subject) == 1, timeout=60)
    actions = [line.split("action=")[1].split()[0]
               for line in decisions(work, f"login={client.login}")]
    assert actions == ["defer", "deliver", "deliver"]
    session = logged_in(world.config, client)
    try:
        assert session.stat()[0] == 2
    finally:
        session.quit()


def deferred_events(config: Config, client: Party) -> int:
    with connect(config.database, autocommit=True, role=ADMIN_ROLE) as conn:
        row = conn.execute("SELECT count(*) AS n FROM event WHERE kind = 'maildrop-deferred'"
                           " AND detail->>'login' = %s AND detail->>'status' = '4.2.1'",
                           (client.login,)).fetchone()
    assert row is not None
    return int(row["n"])


def test_a_retry_sent_while_the_first_attempt_still_waits_is_not_saved_twice(
        hop_world: tuple[World, Config, Path]) -> None:
    """The edge gave up on an attempt the backend still holds for a POP3 session, and its
    retry (XSINCE) arrives meanwhile: it waits for the first to end, then finds it saved."""
    world, edge, _ = hop_world
    client = world.add_mail_client("twice")
    subject = "twice " + secrets.token_hex(4)
    data = copy_for(client, subject)
    session = logged_in(world.config, client)
    try:
        first, first_reply, _ = _deliver_in_background(edge, client, data)
        time.sleep(0.5)
        replies_: list[Reply] = []
        retry = threading.Thread(target=lambda: replies_.append(hop.Hop(edge).deliver(
            client.login, "", data, since=time.time() - 60)))
        retry.start()
        time.sleep(LOCK_WAIT / 2)
        assert first.is_alive() and retry.is_alive()
    finally:
        session.quit()
    first.join(timeout=30)
    retry.join(timeout=30)
    assert first_reply[0].code == 250 and first_reply[0] != replies.MAILDROP_SAVED_BEFORE
    assert replies_ == [replies.MAILDROP_SAVED_BEFORE]
    assert saved(world.config, client, subject) == 1


def test_one_delivery_per_held_maildrop_waits_the_next_is_deferred_at_once(
        hop_world: tuple[World, Config, Path]) -> None:
    """A waiting delivery keeps an edge's worker busy: one per maildrop, not one per copy."""
    world, edge, _ = hop_world
    client = world.add_mail_client("queue")
    first_subject, second_subject = ("queue " + secrets.token_hex(4) for _ in range(2))
    session = logged_in(world.config, client)
    try:
        first, first_reply, _ = _deliver_in_background(edge, client,
                                                       copy_for(client, first_subject))
        time.sleep(0.5)
        started = time.monotonic()
        second = hop.Hop(edge).deliver(client.login, "", copy_for(client, second_subject))
        assert time.monotonic() - started < 1.0
        assert second == replies.MAILDROP_LOCKED
        assert first.is_alive()
    finally:
        session.quit()
    first.join(timeout=30)
    assert first_reply[0].code == 250
    assert saved(world.config, client, first_subject) == 1
    assert saved(world.config, client, second_subject) == 0
