"""Shared fixtures of the MIG tests: the shipped registry, the public samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from singlewindow.mig.loader import Registry, registry

PUBLIC = Path(__file__).resolve().parents[4].parent / "shared" / "testdata" / "public"
if not PUBLIC.exists():  # CI lays shared/ beside the clone; a worktree has it at /work/shared
    PUBLIC = Path("/work/shared/testdata/public")


@pytest.fixture(scope="session")
def reg() -> Registry:
    return registry()


@pytest.fixture(scope="session")
def public() -> Path:
    if not PUBLIC.exists():
        # A skip would pass unnoticed in CI; missing test data is a broken checkout.
        pytest.fail(f"shared test data is missing: {PUBLIC} does not exist")
    return PUBLIC / "edifact"
