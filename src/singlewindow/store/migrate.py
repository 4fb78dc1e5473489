"""Ordered, plain-SQL schema migrations tracked in ``schema_migration`` (swctl db migrate).

Files ``migrations/NNNN_name.sql`` run once each, in order, every one in its own
transaction together with its bookkeeping row; an advisory lock keeps two concurrent
``migrate`` runs (two nodes starting at once) from racing. Running it again does nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import tuple_row

#: Any constant will do; it only has to be the same for every migrate run.
_LOCK_KEY = 0x5357_4D49  # "SWMI"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """The shipped migrations, in order."""
    found = []
    for entry in resources.files("singlewindow.store.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return found


def migrate(conn: psycopg.Connection[Any]) -> list[Migration]:
    """Apply what is missing; return what was applied. ``conn`` must be in autocommit."""
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migration ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = conn.cursor(row_factory=tuple_row)
        done = {v for (v,) in cursor.execute("SELECT version FROM schema_migration")}
        applied = []
        for migration in available():
            if migration.version in done:
                continue
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migration (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            applied.append(migration)
        return applied
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
