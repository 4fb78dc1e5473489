"""``swctl mig validate`` and ``swctl mig convert``: the MIG checks offline.

Where it sits in the mail flow: outside it. A company (or an operator) runs the same
validation the transport runs, and sees the same errors a control message would carry,
without sending mail. ``swctl`` (``singlewindow.cli``) calls these functions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from singlewindow.mig.contrl import contrl
from singlewindow.mig.validate import convert_stream, validate

EXIT_VALID = 0
EXIT_INVALID = 1


def validate_cmd(path: str, as_json: bool = False) -> int:
    """Validate FILE; print its errors (text, or JSON with ``as_json``). 0 valid, 1 invalid."""
    result = validate(Path(path).read_bytes(), None)
    if as_json:
        doc = {"file": path, "message_type": result.message_type, "syntax": result.syntax,
               "valid": result.valid, "errors": [e.as_dict() for e in result.errors]}
        print(json.dumps(doc, indent=2))
    else:
        label = result.message_type or "unknown type"
        if result.valid:
            print(f"{path}: valid {label} ({result.syntax})")
        for e in result.errors:
            print(f"{path}: {e.code} at {e.place}: {e.text} [{e.rule}]")
        ack = contrl(result)
        if ack is not None:
            print(f"CONTRL: {ack.decode('latin-1')}")
    return EXIT_VALID if result.valid else EXIT_INVALID


def convert_cmd(path: str) -> int:
    """Convert an EDIFACT FILE to its XML form on standard output. 0 done, 1 errors."""
    with Path(path).open("rb") as src:
        name, errors = convert_stream(src, sys.stdout.buffer)
    sys.stdout.flush()
    for e in errors:
        print(f"{path}: {e.code} at {e.place}: {e.text} [{e.rule}]", file=sys.stderr)
    if name is None and not errors:
        print(f"{path}: no message of a MIG type", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_INVALID if errors else EXIT_VALID
