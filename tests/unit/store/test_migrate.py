from __future__ import annotations

from typing import Any

import psycopg

from singlewindow.store import migrate


def test_migrate_again_applies_nothing(conn: psycopg.Connection[Any]) -> None:
    assert migrate.migrate(conn) == []
    versions = [r["version"] for r in conn.execute(
        "SELECT version FROM schema_migration ORDER BY version")]
    assert versions == [m.version for m in migrate.available()]


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in migrate.available()]
    assert versions == list(range(1, len(versions) + 1))
