"""The store: PostgreSQL holds every party, address, account, link, route and log entry.

Sits under every stage of the mail flow. Postfix and Dovecot read it directly (pgsql
lookup tables, Dovecot's SQL passdb); the project's daemons and ``swctl`` go through the
query modules here. Functions take an open psycopg connection and leave transaction
control to the caller unless they say otherwise.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from singlewindow.config import Database


class StoreError(Exception):
    """A request the store refuses, phrased for the operator (one line)."""


def connect(db: Database, *, autocommit: bool = False) -> psycopg.Connection[dict[str, object]]:
    """Open a connection with dictionary rows."""
    return psycopg.connect(
        db.conninfo,
        connect_timeout=db.connect_timeout,
        autocommit=autocommit,
        row_factory=dict_row,
    )
