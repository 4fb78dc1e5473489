"""``swctl`` called in-process as the operator calls it: its words, its exit status,
what it printed."""

from __future__ import annotations

import io
import sys

import pytest

from singlewindow import cli


def call(argv: tuple[str, ...], monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str], stdin: str = "") -> tuple[int, str, str]:
    """Run ``swctl ARGV...`` with ``stdin``; (exit status, stdout, stderr). argparse's
    usage errors exit; their status is returned like the others."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
