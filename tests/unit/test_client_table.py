"""The README's mail-client table is the matrix that tests/integration/test_clients.py
proves (issue 14 item 7): it cannot drift from the tests, whatever order they run in."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.support import client_matrix as matrix

ROOT = Path(__file__).resolve().parents[2]


def test_readme_holds_the_generated_section() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(matrix.BEGIN)
    end = readme.index(matrix.END) + len(matrix.END)
    assert readme[start:end] == matrix.render_section(), "run scripts/client-table --write"


def test_script_prints_the_section() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "client-table")],
                            capture_output=True, text=True, check=True, timeout=30)
    assert result.stdout == matrix.render_section() + "\n"


def test_every_client_listener_and_mechanism_once() -> None:
    counts = Counter((c.client, c.listener, c.mechanism) for c in matrix.CELLS)
    assert set(counts.values()) == {1}
    assert {c.client for c in matrix.CELLS} == set(matrix.CLIENTS)
    for cell in matrix.CELLS:
        mechanisms = matrix.SMTP_MECHANISMS if cell.listener == "msa" \
            else matrix.POP3_MECHANISMS
        assert cell.listener in matrix.LISTENERS and cell.mechanism in mechanisms
        # A cell that is not simply "yes" says why.
        assert bool(cell.note) == (cell.outcome is not matrix.Outcome.WORKS), cell


def test_each_client_covers_its_listeners_fully() -> None:
    """A client on a listener is in the table for every mechanism the hub offers there,
    so a gap is a 'no' with its reason, never a silent blank."""
    for client in matrix.CLIENTS:
        for listener in matrix.LISTENERS:
            cells = {c.mechanism for c in matrix.CELLS
                     if c.client == client and c.listener == listener}
            offered = matrix.SMTP_MECHANISMS if listener == "msa" \
                else matrix.POP3_MECHANISMS
            assert cells in (set(), set(offered)), (client, listener)
