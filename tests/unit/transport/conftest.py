"""The ``transport`` fixture of the router's tests (test_router, test_submission,
test_agency_report, test_generated, test_terminal, test_fuzz): :mod:`tests.support.transport`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from singlewindow.config import Config
from tests.support.transport import Transport, running


@pytest.fixture
def transport(database_config: Config, conn: psycopg.Connection[Any]) -> Iterator[Transport]:
    with running(database_config, conn) as started:
        yield started
