"""Fixtures of the console's unit tests: the application over the real PostgreSQL (as
sw_console), Starlette's TestClient over https://, and the world of world.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from singlewindow.config import Config, Console
from singlewindow.console import app as appmod
from singlewindow.store import console as store
from singlewindow.store import directory
from tests.unit.console.world import MAILLOG, World, make_messages, strong_hash
from tests.unit.parties import seed


@pytest.fixture(scope="session")
def console_pool(database_config: Config) -> Iterator[ConnectionPool[Any]]:
    pool = appmod.console_pool(database_config)
    pool.open()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def config(database_config: Config, tmp_path: Path) -> Config:
    """A small login delay and window; a Postfix log of the copy to customs."""
    maillog = tmp_path / "maillog"
    maillog.write_text(MAILLOG)
    return replace(database_config, console=Console(
        login_delay=0.05, login_attempts=3, login_window_seconds=60),
        transport=replace(database_config.transport, postfix_maillog=maillog))


@pytest.fixture
def world(conn: psycopg.Connection[Any], config: Config,
          console_pool: ConnectionPool[Any]) -> World:
    conn.execute("TRUNCATE operator, console_session, console_login_failure")
    seed(conn)
    directory.add_account(conn, "acme-desk", "acme", strong_hash(), "{DIGEST-MD5}" + "0" * 32)
    conn.execute("UPDATE account SET password_hash = %s WHERE login = 'bright'",
                 (strong_hash(),))
    store.add_operator(conn, "op", strong_hash())
    make_messages(conn)
    return World(conn, config, console_pool)
