"""Shared fixtures: real PostgreSQL, Postfix and Dovecot under short /tmp/sw-* paths.

Nothing here skips: a missing Postfix or Dovecot makes the stack fixture fail, and with
it every integration test (CI must not go green without them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

# The helpers in tests/support assert too: give their failures pytest's detail, as the
# test modules' own asserts have (registered before anything imports them).
pytest.register_assert_rewrite("tests.support")

from singlewindow import stack  # noqa: E402
from singlewindow.config import (  # noqa: E402
    OWNER_ROLE,
    Config,
    Console,
    Health,
    Listeners,
    Metrics,
    Queue,
    Transport,
)
from singlewindow.store import connect  # noqa: E402
from tests.support.local import WATCHDOG_SEC, free_port, short_state_dir  # noqa: E402


@pytest.fixture(scope="session")
def database_config() -> Iterator[Config]:
    """A private PostgreSQL cluster with the schema, for store and decision tests."""
    state = short_state_dir()
    try:
        yield stack.up(state, database_only=True, say=lambda _: None)
    finally:
        stack.down(state, say=lambda _: None)
        _remove(state)


#: Tables a unit test may fill; emptied before each test (links get their defaults back).
_TABLES = "event, message_recipient, forward, notice_delivery, message, msa_claim, route, " \
          "link, address, account, peer_network, party, operator, console_session, " \
          "console_login_failure, console_view"


@pytest.fixture
def conn(database_config: Config) -> Iterator[psycopg.Connection[Any]]:
    # The owner: TRUNCATE between tests is scaffolding, not something a part of the
    # hub may do.
    with connect(database_config.database, autocommit=True, role=OWNER_ROLE) as c:
        c.execute(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE")
        c.execute("INSERT INTO link (sender_kind, recipient_kind, allowed) VALUES"
                  " ('company', 'agency', true), ('agency', 'company', true)")
        yield c


@pytest.fixture(scope="session")
def sw_stack() -> Iterator[Config]:
    """The whole local stack with demo data, on free ports."""
    state = short_state_dir()
    # Retries every few seconds and a short queue lifetime, so tests of deferral and of
    # an agency that stays unreachable finish in seconds, not days.
    # Small MSA limits, so the rate-limit tests hit them quickly (from addresses of their
    # own: 127.0.0.1 is exempt).
    base = replace(Config(), listeners=Listeners(
        mta_port=free_port(), msa_port=free_port(), pop3_port=free_port(),
        pop3s_port=free_port(), reinject_port=free_port(),
        msa_auth_rate_limit=3, msa_connection_rate_limit=10),
        queue=Queue(lifetime="40s", minimal_backoff="5s", maximal_backoff="10s",
                    run_delay="5s"),
        # A copy whose sender was killed is recovered once its claim's lease runs out.
        # A small copy limit: the size tests need no 50 MB messages.
        transport=Transport(claim_lease=5.0, copy_size_limit=2 * 1024 * 1024),
        # The exporter on a free port too: never the default 9750 another stack may hold.
        metrics=Metrics(listen=f"127.0.0.1:{free_port()}"),
        console=Console(listen=f"127.0.0.1:{free_port()}"),
        # The supervisor's watchdog, short enough for test_supervisor to see it act.
        health=Health(watchdog_sec=WATCHDOG_SEC))
    try:
        yield stack.up(state, demo=True, base=base, say=lambda _: None)
    finally:
        stack.down(state, say=lambda _: None)
        _remove(state)


def _remove(state: Path) -> None:
    """Remove a test state directory, unless SW_KEEP_STATE asks to keep it for a look."""
    if os.environ.get("SW_KEEP_STATE"):
        print(f"\nkept state directory {state}")
    else:
        shutil.rmtree(state, ignore_errors=True)
