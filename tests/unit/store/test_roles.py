"""Migration 0007 and the stack's pg_ident map: each part of the hub logs in as its own
role and can do only what that part needs (issue 12, "separate PostgreSQL roles").

Written as a part that went wrong would act: Postfix's or Dovecot's lookup user trying to
write, or to read what is not theirs; a daemon trying DDL. Postfix's and Dovecot's roles
are reached the way the servers reach them, as their system users over the unix socket
(peer authentication), with the real psql.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from tests.support.roles import psql, refused

from singlewindow import passwords
from singlewindow.config import (
    ADMIN_ROLE,
    DAEMON_ROLE,
    DOVECOT_ROLE,
    OWNER_ROLE,
    POSTFIX_ROLE,
    Config,
)
from singlewindow.store import connect, directory

#: What Postfix's two pgsql tables ask (conf/postfix/pgsql-*.cf.j2), with a key filled in.
POSTFIX_QUERIES = (
    "SELECT 'OK' FROM address WHERE logical = lower('acme@sw.test')",
    "SELECT 'smtp:[' || p.relay_host || ']:' || p.relay_port FROM address a"
    " JOIN party p ON p.id = a.party_id"
    " WHERE a.physical = lower('edi@acme.example') AND p.relay_host IS NOT NULL",
)


@pytest.fixture
def seeded(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """One party with an address and an account, and one logged message."""
    directory.add_party(conn, "acme", "company", ["10.9.0.0/28"], "127.0.0.1:2601")
    directory.add_account(conn, "acme", "acme", passwords.strong_hash("pw"),
                          passwords.digest_md5_hash("acme", "sw.test", "pw"))
    directory.add_address(conn, "acme@sw.test", "acme", "edi@acme.example", "acme", "sw.test")
    conn.execute("INSERT INTO message (id, listener, envelope_from) VALUES ('m1', 'mta', 'a@b')")
    return conn


@pytest.mark.usefixtures("seeded")
def test_postfix_reads_its_two_lookups_and_nothing_else(database_config: Config) -> None:
    for query in POSTFIX_QUERIES:
        code, out = psql(database_config, "postfix", POSTFIX_ROLE, query)
        assert code == 0 and out.strip() in ("OK", "smtp:[127.0.0.1]:2601"), out
    for sql in ("SELECT password_hash FROM account",
                "SELECT digest_md5_hash FROM account",
                "SELECT * FROM address",
                "SELECT * FROM message",
                "SELECT network FROM peer_network",
                "INSERT INTO party (name, kind) VALUES ('evil', 'company')",
                "UPDATE address SET physical = 'evil@evil.example'",
                "UPDATE party SET relay_host = 'evil.example'",
                "DELETE FROM address",
                "CREATE TABLE evil (x int)"):
        refused(database_config, "postfix", POSTFIX_ROLE, sql)


@pytest.mark.usefixtures("seeded")
def test_dovecot_reads_accounts_and_nothing_else(database_config: Config) -> None:
    code, out = psql(database_config, "dovecot", DOVECOT_ROLE,
                     "SELECT login, password_hash LIKE '{%' FROM account")
    assert code == 0 and out.strip() == "acme|t", out
    for sql in ("SELECT name FROM party", "SELECT logical FROM address",
                "SELECT * FROM message", "SELECT * FROM event", "SELECT * FROM forward",
                "SELECT * FROM account",  # created_at, party_id: not Dovecot's
                "UPDATE account SET password_hash = '{PLAIN}x'",
                "INSERT INTO account (login, party_id, password_hash, digest_md5_hash)"
                " VALUES ('evil', 1, '{PLAIN}x', '{DIGEST-MD5}00')",
                "DELETE FROM account"):
        refused(database_config, "dovecot", DOVECOT_ROLE, sql)


def test_system_users_cannot_borrow_another_parts_role(database_config: Config) -> None:
    """pg_ident.conf: Postfix's user is not Dovecot or the owner, root is not Postfix."""
    for os_user, role in (("postfix", DOVECOT_ROLE), ("postfix", OWNER_ROLE),
                          ("dovecot", POSTFIX_ROLE), ("dovecot", DAEMON_ROLE),
                          ("singlewindow", OWNER_ROLE), ("singlewindow", ADMIN_ROLE),
                          ("root", POSTFIX_ROLE), ("root", DOVECOT_ROLE)):
        code, out = psql(database_config, os_user, role, "SELECT 1")
        assert code != 0 and "authentication failed" in out, (os_user, role, out)


@pytest.fixture
def as_daemon(database_config: Config) -> Iterator[psycopg.Connection[Any]]:
    with connect(database_config.database, autocommit=True) as c:  # the default role
        yield c


@pytest.mark.usefixtures("seeded")
def test_daemons_write_the_log_read_the_directory_and_have_no_ddl(
        as_daemon: psycopg.Connection[Any]) -> None:
    assert as_daemon.execute("SELECT current_user AS u").fetchone() == {"u": DAEMON_ROLE}
    # What they do: read the directory, record messages, events and copies.
    assert as_daemon.execute("SELECT party_id FROM account WHERE login = 'acme'").fetchone()
    as_daemon.execute("INSERT INTO event (message_id, kind) VALUES ('m1', 'test')")
    as_daemon.execute("UPDATE message SET message_type = 'GENDEC' WHERE id = 'm1'")
    for sql in ("CREATE TABLE evil (x int)",
                "CREATE TEMP TABLE evil (x int)",
                "DROP TABLE event",
                "ALTER TABLE message ADD COLUMN evil text",
                "ALTER TABLE message DROP CONSTRAINT message_listener_check",
                "TRUNCATE event",
                "CREATE INDEX evil ON message (envelope_from)",
                "CREATE FUNCTION evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
                "DELETE FROM schema_migration",
                "SELECT password_hash FROM account",
                "SELECT digest_md5_hash FROM account",
                "INSERT INTO party (name, kind) VALUES ('evil', 'company')",
                "UPDATE address SET active = true",
                "INSERT INTO peer_network (party_id, network) VALUES (1, '0.0.0.0/0')",
                "UPDATE link SET allowed = true",
                "DELETE FROM route"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_daemon.execute(sql)  # type: ignore[arg-type]


@pytest.mark.usefixtures("seeded")
def test_swctl_writes_the_directory_but_not_the_log_and_has_no_ddl(
        database_config: Config) -> None:
    with connect(database_config.database, autocommit=True, role=ADMIN_ROLE) as admin:
        directory.add_party(admin, "brightline", "company", [], None)
        assert admin.execute("SELECT count(*) AS n FROM message").fetchone() == {"n": 1}
        for sql in ("CREATE TABLE evil (x int)", "DROP TABLE party",
                    "ALTER TABLE account ADD COLUMN evil text",
                    "UPDATE message SET envelope_from = 'forged@example'",
                    "DELETE FROM event", "INSERT INTO schema_migration VALUES (99, 'x')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                admin.execute(sql)  # type: ignore[arg-type]


def test_a_table_a_later_migration_adds_is_the_daemons(
        database_config: Config, conn: psycopg.Connection[Any],
        as_daemon: psycopg.Connection[Any]) -> None:
    """Default privileges: tables that migrations after 0007 create (as the owner) are
    the daemons' to use, with no grant of their own."""
    table = "later_" + secrets.token_hex(3)
    conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, x text)")  # type: ignore[arg-type]
    try:
        as_daemon.execute(f"INSERT INTO {table} (x) VALUES ('a')")  # type: ignore[arg-type]
        as_daemon.execute(f"UPDATE {table} SET x = 'b'")  # type: ignore[arg-type]
        assert as_daemon.execute(f"SELECT x FROM {table}").fetchone() == {"x": "b"}  # type: ignore[arg-type]
        as_daemon.execute(f"DELETE FROM {table}")  # type: ignore[arg-type]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_daemon.execute(f"DROP TABLE {table}")  # type: ignore[arg-type]
    finally:
        conn.execute(f"DROP TABLE {table}")  # type: ignore[arg-type]
