"""Shared fixtures of the notices' tests: the shipped MIG registry."""

from __future__ import annotations

import pytest

from singlewindow.mig.loader import Registry, registry


@pytest.fixture(scope="session")
def reg() -> Registry:
    return registry()
