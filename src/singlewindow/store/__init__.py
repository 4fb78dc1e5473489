"""The store: PostgreSQL holds every party, address, account, link, route and log entry.

Sits under every stage of the mail flow. Postfix and Dovecot read it directly (pgsql
lookup tables, Dovecot's SQL passdb); the project's daemons and ``swctl`` go through the
query modules here. Functions take an open psycopg connection and leave transaction
control to the caller unless they say otherwise.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from singlewindow.config import Database


class StoreError(Exception):
    """A request the store refuses, phrased for the operator (one line)."""


def connect(db: Database, *, autocommit: bool = False,
            role: str | None = None) -> psycopg.Connection[dict[str, object]]:
    """Open a connection with dictionary rows, as ``role`` (default: the daemons' role;
    ``swctl`` passes ``db.admin_role``, migrations ``db.owner_role``)."""
    return psycopg.connect(
        db.dsn(role),
        connect_timeout=db.connect_timeout,
        autocommit=autocommit,
        row_factory=dict_row,
    )


def pool(db: Database, max_size: int, *, autocommit: bool = False) -> ConnectionPool[Any]:
    """A connection pool for a daemon, not yet opened: start-up needs no database, and a
    database that went away is noticed per connection (``check``), so the daemon defers
    (4.x.x) while it is down and recovers by itself when it is back."""
    return ConnectionPool(
        db.dsn(), min_size=0, max_size=max_size, timeout=db.connect_timeout, open=False,
        kwargs={"row_factory": dict_row, "connect_timeout": db.connect_timeout,
                "autocommit": autocommit},
        check=ConnectionPool.check_connection)
