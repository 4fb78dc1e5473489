"""What every path of the router works with (:mod:`singlewindow.transport.context`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psycopg

from singlewindow.config import Config
from singlewindow.store import directory, snapshot
from singlewindow.transport.context import Context
from singlewindow.transport.forward import Injector


def test_the_lease_is_the_configured_one() -> None:
    config = Config()
    config = replace(config, transport=replace(config.transport, claim_lease=12.5))
    assert Context(config, Injector("127.0.0.1", 1, "hub.sw.test")).lease == 12.5


def test_where_is_this_process_directory_in_memory(
        database_config: Config, conn: psycopg.Connection[Any]) -> None:
    directory.add_party(conn, "acme", "company", ["10.1.0.0/24"], None)
    directory.add_address(conn, "acme@sw.test", "acme", "edi@acme.example", None, "sw.test")
    ctx = Context(database_config, Injector("127.0.0.1", 1, "hub.sw.test"))
    assert ctx.where is snapshot.shared(database_config.database, "sw-transport")
    found = ctx.where.find_logical("acme@sw.test")
    assert found is not None and found.physical == "edi@acme.example"
