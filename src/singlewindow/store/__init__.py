"""The store: PostgreSQL holds every party, address, account, link, route and log entry.

Sits under every stage of the mail flow. Dovecot reads it directly (its SQL passdb);
Postfix reads lookup tables generated from it (:mod:`singlewindow.maps`); the project's
daemons answer from an in-memory copy (:mod:`singlewindow.store.snapshot`) and ``swctl``
goes through the query modules here. Functions take an open psycopg connection and leave transaction
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


def connect(db: Database, *, autocommit: bool = False, role: str | None = None,
            application_name: str | None = None) -> psycopg.Connection[dict[str, object]]:
    """Open a connection with dictionary rows, as ``role`` (default: the daemons' role;
    ``swctl`` passes ``db.admin_role``, migrations ``db.owner_role``). A daemon names
    itself (``application_name``), so pg_stat_activity and the server log tell who asked."""
    extra: dict[str, Any] = {"application_name": application_name} if application_name else {}
    return psycopg.connect(
        db.dsn(role),
        connect_timeout=db.connect_timeout,
        autocommit=autocommit,
        row_factory=dict_row,
        **extra,
    )


def pool(db: Database, max_size: int, *, autocommit: bool = False,
         application_name: str | None = None) -> ConnectionPool[Any]:
    """A connection pool for a daemon, not yet opened: start-up needs no database, and a
    database that went away is noticed per connection (``check``), so the daemon defers
    (4.x.x) while it is down and recovers by itself when it is back."""
    kwargs: dict[str, Any] = {"row_factory": dict_row, "connect_timeout": db.connect_timeout,
                              "autocommit": autocommit}
    if application_name:
        kwargs["application_name"] = application_name
    return ConnectionPool(
        db.dsn(), min_size=0, max_size=max_size, timeout=db.connect_timeout, open=False,
        kwargs=kwargs,
        check=ConnectionPool.check_connection)
