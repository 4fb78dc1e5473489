"""The directory in memory (issue 13) against the store's own queries, on real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from tests.support.roles import psql, refused
from tests.unit.parties import D, seed, seed_with_harbour

from singlewindow import stack
from singlewindow.config import ADMIN_ROLE, DAEMON_ROLE, Config
from singlewindow.store import StoreError, directory, snapshot
from singlewindow.store.snapshot import LiveDirectory


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def generation(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT generation FROM directory_state").fetchone()
    assert row is not None
    return int(row["generation"])


@pytest.fixture
def seeded(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    return seed_with_harbour(conn)


@pytest.fixture
def live(database_config: Config) -> Iterator[LiveDirectory]:
    found = LiveDirectory(database_config.database, "test")
    yield found
    found.close()


def test_every_lookup_answers_as_the_store_does(seeded: psycopg.Connection[Any]) -> None:
    conn = seeded
    snap = snapshot.load(conn)
    for ip in ("10.1.0.5", "10.1.0.255", "10.1.1.7", "10.1.1.8", "10.9.0.1", "10.9.0.2",
               "2001:db8::1", "2001:db8:1::1", "::1", "not an address"):
        expected = (directory.party_by_peer(conn, ip)
                    if ip != "not an address" else None)
        assert snap.party_by_peer(ip) == expected, ip
    for login in ("bright", "acme", "ghost"):
        assert snap.party_by_login(login) == directory.party_by_login(conn, login)
    parties = [directory.get_party(conn, n) for n in ("acme", "bright", "customs", "harbour")]
    for party in parties:
        assert snap.get_party(party.name) == party
        for address in ("edi@acme.example", "EDI@Acme.Example", "clerk@bright.example",
                        "acme@sw.test", "nobody@x.example"):
            assert snap.owns_physical(party, address) == \
                directory.owns_physical(conn, party, address), (party.name, address)
        for other in parties:
            assert snap.link_allowed(party, other) == \
                directory.link_allowed(conn, party, other), (party.name, other.name)
    with pytest.raises(StoreError, match="unknown party 'ghost'"):
        snap.get_party("ghost")
    for text in ("ACME@sw.test", f"harbour@{D}", "edi@acme.example", "x@sw.test"):
        assert snap.find_logical(text) == directory.find_logical(conn, text)
        assert snap.find_physical(text) == directory.find_physical(conn, text)
    asked = ["EDI@acme.example", f"customs@{D}", "in@harbour.example", "x@y.example", ""]
    assert snap.known_addresses(asked) == directory.known_addresses(conn, asked)
    for logical, kind in ((f"acme@{D}", "PAXLST"), (f"ACME@{D}", "PAXLST"),
                          (f"acme@{D}", "CUSCAR"), (f"customs@{D}", "PAXLST")):
        assert snap.routes_for(logical, kind) == directory.routes_for(conn, logical, kind)
    assert [a.logical for a in snap.routes_for(f"acme@{D}", "PAXLST")] == \
        [f"customs@{D}", f"harbour@{D}"]


def test_every_change_is_a_new_generation(conn: psycopg.Connection[Any]) -> None:
    before = generation(conn)
    directory.add_party(conn, "acme", "company", ["10.1.0.0/24"], None)  # two statements
    directory.add_address(conn, f"acme@{D}", "acme", "edi@acme.example", None, D)
    directory.set_link(conn, "acme", "agency", False)
    assert generation(conn) > before + 2
    assert snapshot.load(conn).generation == generation(conn)
    # A statement that changes no table is no change.
    unchanged = generation(conn)
    conn.execute("SELECT * FROM party")
    assert generation(conn) == unchanged


def test_only_the_trigger_moves_the_generation(database_config: Config) -> None:
    for os_user, role in (("root", DAEMON_ROLE), ("root", ADMIN_ROLE)):
        refused(database_config, os_user, role,
                "UPDATE directory_state SET generation = generation + 1")
        code, out = psql(database_config, os_user, role, "SELECT generation FROM directory_state")
        assert code == 0 and out.strip().isdigit(), out


def test_a_miss_reloads_once_and_finds_what_was_added_just_now(
        conn: psycopg.Connection[Any], live: LiveDirectory) -> None:
    # Not started: no notification can arrive, only the check on a miss finds it.
    assert live.party_by_peer("10.1.0.5") is None
    first = live.snapshot.generation
    assert live.newer() is None  # nothing changed: one statement, no reload
    seed(conn)
    acme = live.party_by_peer("10.1.0.5")
    assert acme is not None and acme.name == "acme"
    assert live.snapshot.generation > first
    assert live.owns_physical(acme, "edi@acme.example")
    assert live.find_logical(f"customs@{D}") is not None
    directory.add_address(conn, f"late@{D}", "acme", "late@acme.example", None, D,
                          active=False)
    assert live.find_logical(f"late@{D}") is not None
    directory.activate_address(conn, f"late@{D}")
    found = live.find_logical(f"late@{D}")  # inactive in the copy: asks again
    assert found is not None and found.active
    customs = live.get_party("customs")
    assert live.link_allowed(acme, customs)
    directory.set_link(conn, "acme", "customs", False)
    assert live.link_allowed(acme, customs)  # a hit is not checked: the copy still allows


def test_a_removal_is_in_force_when_its_notification_arrives(
        seeded: psycopg.Connection[Any], live: LiveDirectory) -> None:
    live.start()
    acme, customs = live.get_party("acme"), live.get_party("customs")
    assert live.owns_physical(acme, "edi@acme.example")
    directory.set_link(seeded, "acme", "customs", True)
    wait_until(lambda: live.snapshot.link_allowed(acme, customs), "the link allowed")
    directory.set_link(seeded, "acme", "customs", False)
    directory.add_route(seeded, f"customs@{D}", "PAXLST", [f"harbour@{D}"])
    directory.remove_address(seeded, f"acme@{D}")
    wait_until(lambda: live.snapshot.generation == generation(seeded), "the removal")
    assert not live.link_allowed(acme, customs)
    assert not live.owns_physical(acme, "edi@acme.example")
    assert live.find_logical(f"acme@{D}") is None
    with pytest.raises(StoreError, match="still in use"):
        directory.remove_address(seeded, f"harbour@{D}")  # a route leads to it


def _terminate(config: Config, application_name: str) -> int:
    layout = config.paths
    result = stack.run(
        ["psql", "-X", "-q", "-A", "-t", "-h", str(layout.pg_socket_dir), "-U", "postgres",
         "-d", "singlewindow", "-c",
         "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
         f" WHERE application_name = '{application_name}'"],
        user="postgres", cwd=layout.state_dir)
    return int(result.stdout.strip())


def test_the_listener_recovers_and_loads_what_changed_meanwhile(
        database_config: Config, seeded: psycopg.Connection[Any],
        live: LiveDirectory) -> None:
    live.start()
    wait_until(lambda: live.fresh() is not None, "the first load")
    acme = live.get_party("acme")
    assert _terminate(database_config, "test-directory") >= 1
    # Changed while the listener may be away: no miss asks for it (an owner still found).
    directory.remove_address(seeded, f"acme@{D}")
    wait_until(lambda: live.snapshot.generation == generation(seeded),
               "the reconnected listener's reload")
    assert not live.snapshot.owns_physical(acme, "edi@acme.example")
    # And it listens again.
    directory.add_address(seeded, f"again@{D}", "acme", "edi@acme.example", None, D)
    wait_until(lambda: live.snapshot.owns_physical(acme, "edi@acme.example"),
               "a change after the reconnection")


def test_without_a_database_a_lookup_raises_so_the_caller_defers(
        database_config: Config) -> None:
    from dataclasses import replace
    down = replace(database_config.database, conninfo="host=/nonexistent/sw dbname=x",
                   connect_timeout=1)
    live = LiveDirectory(down, "test")
    with pytest.raises(psycopg.OperationalError):
        live.party_by_peer("10.1.0.5")
    live.close()
