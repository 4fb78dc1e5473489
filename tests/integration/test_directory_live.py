"""Issue 13: the daemons answer from the directory in memory, Postfix from generated files.

Real Postfix, PostgreSQL and daemons: a change made with swctl is in force at once for
additions and once its notification arrived for removals, also after the daemons' LISTEN
connections were killed; and an MTA submission costs the policy daemon and the milter
no statement at all.
"""

from __future__ import annotations

import re
import secrets
import smtplib
import subprocess
import sys
from collections.abc import Iterator

import pytest

from singlewindow import maps, stack
from singlewindow.config import ADMIN_ROLE, Config
from singlewindow.store import connect
from tests.support import factory
from tests.support.local import free_port
from tests.support.sinks import Sink, delivery_status, dsn_about
from tests.support.world import Party, World, message, wait_until, world_fixture

world = world_fixture(("co", "company"), ("ag", "agency"))

_peers = iter(range(10, 250))


def swctl(config: Config, *argv: str) -> str:
    done = subprocess.run([sys.executable, "-m", "singlewindow.cli", "--state-dir",
                           str(config.paths.state_dir), *argv],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def generation(config: Config) -> int:
    with connect(config.database, autocommit=True, role=ADMIN_ROLE) as conn:
        row = conn.execute("SELECT generation FROM directory_state").fetchone()
        assert row is not None
        return int(row["generation"])


_STATEMENT = re.compile(r" LOG:  (statement|execute [^:]*): ")
_LOADED = re.compile(r"directory generation (\d+) loaded")


def loaded(config: Config, daemon: str) -> int:
    """The newest directory generation ``daemon`` (policyd, milter, transport) loaded."""
    log = config.paths.log_dir / f"{daemon}.log"
    return max((int(g) for g in _LOADED.findall(log.read_text())), default=0)


def in_force(config: Config, *daemons: str) -> None:
    """Wait until each daemon holds the directory as it is now (the removal tests: a
    removal is in force when its notification arrived, a few milliseconds)."""
    now = generation(config)
    wait_until(lambda: all(loaded(config, d) >= now for d in daemons))


def tables_hold(config: Config, table: str, key: str, present: bool) -> bool:
    found = subprocess.run(["postmap", "-c", str(config.postfix_config), "-q", key,
                            f"{maps.MAP_TYPE}:{config.paths.maps_dir / table}"],
                           capture_output=True, text=True, check=False)
    return (found.returncode == 0) == present


def rcpt(config: Config, party: Party, to: str) -> tuple[int, bytes]:
    """MAIL and RCPT from ``party``'s MTA on a new connection: Postfix's answer."""
    with smtplib.SMTP(config.listeners.bind, config.listeners.mta_port, timeout=30,
                      source_address=(party.peer, 0)) as smtp:
        smtp.ehlo("mta.example")
        code, text = smtp.mail(party.physical)
        if code != 250:
            return code, text
        answer = smtp.rcpt(to)
        smtp.rset()
        return answer


@pytest.fixture
def added(sw_stack: Config) -> Iterator[tuple[Party, Party]]:
    """A company and an agency added with swctl, the agency's MTA a running sink."""
    config, sinks = sw_stack, []
    parties = []
    for kind in ("company", "agency"):
        name = f"live-{kind[:2]}-{secrets.token_hex(3)}"
        peer = f"127.0.5.{next(_peers)}"
        sink = Sink(free_port()).start()
        sinks.append(sink)
        domain = config.hub.domain
        swctl(config, "party", "add", name, "--kind", kind, "--peer", f"{peer}/32",
              "--relay", f"127.0.0.1:{sink.port}")
        swctl(config, "address", "add", f"{name}@{domain}", "--party", name,
              "--physical", f"edi@{name}.example")
        parties.append(Party(name, f"{name}@{domain}", f"edi@{name}.example", peer, sink))
    yield parties[0], parties[1]
    for sink in sinks:
        sink.stop()


def test_a_party_added_with_swctl_is_served_at_once(sw_stack: Config,
                                                    added: tuple[Party, Party]) -> None:
    """No wait between swctl and the submission: policy, milter, Postfix's tables and the
    transport each find what their copy or file does not hold yet."""
    co, ag = added
    subject = f"added {secrets.token_hex(4)}"
    data = message(co, ag.logical, subject, factory.gendec())
    with smtplib.SMTP(sw_stack.listeners.bind, sw_stack.listeners.mta_port, timeout=30,
                      source_address=(co.peer, 0)) as smtp:
        assert smtp.sendmail(co.physical, [ag.logical], data) == {}
    copies = ag.sink.wait_for(lambda r: f"Subject: {subject}".encode() in r.data)
    assert copies and copies[0].rcpt_tos == [ag.physical]


def test_a_revoked_link_and_a_removed_sender_are_refused_after_the_change(
        sw_stack: Config, world: World) -> None:
    co, ag = world["co"], world["ag"]
    try:
        swctl(sw_stack, "link", "deny", co.name, ag.name)
        in_force(sw_stack, "policyd", "milter", "transport")
        subject = f"revoked {secrets.token_hex(4)}"
        assert world.submit(co, [ag.logical], message(co, ag.logical, subject,
                                                      factory.gendec())) == {}
        [dsn] = co.sink.wait_for(lambda r: dsn_about(r, subject))
        assert delivery_status(dsn)[0]["status"] == "5.7.1"
        assert not ag.sink.wait_for(lambda r: f"Subject: {subject}".encode() in r.data,
                                    timeout=1)
    finally:
        swctl(sw_stack, "link", "allow", co.name, ag.name)


def test_a_removed_address_leaves_postfixs_tables(sw_stack: Config,
                                                  added: tuple[Party, Party]) -> None:
    co, ag = added
    assert rcpt(sw_stack, co, ag.logical)[0] == 250
    swctl(sw_stack, "address", "remove", ag.logical)
    wait_until(lambda: tables_hold(sw_stack, maps.RELAY_RECIPIENTS, ag.logical, False)
               and tables_hold(sw_stack, maps.TRANSPORT, ag.physical, False))
    code, text = rcpt(sw_stack, co, ag.logical)
    assert (code, text.split()[0]) == (550, b"5.1.1"), text
    # And added again: accepted at once (the socketmap behind the file answers).
    swctl(sw_stack, "address", "add", ag.logical, "--party", ag.name,
          "--physical", ag.physical)
    assert rcpt(sw_stack, co, ag.logical)[0] == 250
    wait_until(lambda: tables_hold(sw_stack, maps.RELAY_RECIPIENTS, ag.logical, True))


def _superuser(config: Config, *sql: str) -> str:
    layout = config.paths
    argv = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", str(layout.pg_socket_dir), "-U", "postgres", "-d", "singlewindow"]
    for statement in sql:
        argv += ["-c", statement]
    return stack.run(argv, user="postgres", cwd=layout.state_dir).stdout


def test_the_directory_recovers_after_its_connections_were_killed(
        sw_stack: Config, added: tuple[Party, Party]) -> None:
    """The listeners lose their connections; a removal made meanwhile is in force once
    they are back (the policy daemon refuses the removed sender at RCPT)."""
    co, ag = added
    assert rcpt(sw_stack, co, ag.logical)[0] == 250
    killed = _superuser(sw_stack, "SELECT count(pg_terminate_backend(pid)) FROM"
                        " pg_stat_activity WHERE application_name LIKE '%-directory'")
    assert int(killed) >= 2  # at least the policy daemon's and the milter's
    swctl(sw_stack, "address", "remove", co.logical)
    in_force(sw_stack, "policyd", "milter")
    code, text = rcpt(sw_stack, co, ag.logical)
    assert (code, text.split()[0]) == (553, b"5.7.1"), text
    for daemon in ("policyd", "milter"):
        log = (sw_stack.paths.log_dir / f"{daemon}.log").read_text()
        assert "directory connection lost" in log


def test_an_mta_submission_costs_policy_and_milter_no_statement(
        sw_stack: Config, world: World) -> None:
    """Every statement PostgreSQL runs is logged, with the name of who ran it, while
    messages go through; the policy daemon and milter name none."""
    co, ag = world["co"], world["ag"]
    log = sw_stack.paths.log_dir / "postgresql.log"
    # Who is who: each daemon names its connections (else the count below proves nothing).
    named = _superuser(sw_stack, "SELECT string_agg(DISTINCT application_name, ' ')"
                       " FROM pg_stat_activity WHERE application_name LIKE 'sw-%'").split()
    assert {"sw-policyd-directory", "sw-milter-directory"} <= set(named), named
    _superuser(sw_stack, "ALTER SYSTEM SET log_statement = 'all'",
               "ALTER SYSTEM SET log_line_prefix = '%m [%p] app=%a '",
               "SELECT pg_reload_conf()")
    try:
        # In force once a session logs its statements with the new prefix.
        def logging() -> bool:
            _superuser(sw_stack, "SELECT 1")
            return "app=psql LOG:  statement: SELECT 1" in log.read_text()
        wait_until(logging)
        start = log.stat().st_size
        subjects = [f"count {secrets.token_hex(4)}" for _ in range(3)]
        for subject in subjects:
            assert world.submit(co, [ag.logical], message(co, ag.logical, subject,
                                                          factory.gendec())) == {}
        for subject in subjects:
            assert ag.sink.wait_for(lambda r, s=subject: f"Subject: {s}".encode() in r.data)
    finally:
        _superuser(sw_stack, "ALTER SYSTEM RESET log_statement",
                   "ALTER SYSTEM RESET log_line_prefix", "SELECT pg_reload_conf()")
    with log.open("rb") as handle:
        handle.seek(start)
        lines = handle.read().decode("utf-8", "replace").splitlines()
    # Simple and extended query protocol alike (psycopg binds its parameters).
    statements = [line for line in lines if _STATEMENT.search(line)]
    assert any("INSERT" in s for s in statements), "the transport's bookkeeping is missing:" \
        " the counting does not work"
    assert [s for s in statements if "app=sw-policyd " in s or "app=sw-milter " in s] == []
    # Their directory listeners only confirm the generation now and then (not per message).
    listeners = [s for s in statements if "-directory " in s]
    assert all(s.endswith("SELECT generation FROM directory_state") for s in listeners), \
        listeners
