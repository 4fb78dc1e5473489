"""What the submitter is told: control message text, FRM-style XML, UN/EDIFACT CONTRL.

Where it sits in the mail flow: when :func:`singlewindow.mig.validate` finds errors, the
transport sends the submitter a control message instead of forwarding. The text and XML
parts come from the templates ``notices/templates/control_message.{txt,xml}.j2`` (one file
per part, StrictUndefined); the CONTRL message (ISO 9735-5 syntax and service report) is
built here because it is EDIFACT, not prose.
"""

from __future__ import annotations

import time
from importlib.resources import files
from typing import Any

import jinja2

from singlewindow.mig.edifact.syntax import Delimiters, format_segment
from singlewindow.mig.errors import SYNTAX_CLASSES, MigError
from singlewindow.mig.validate import Result

# UCI/UCM 0083 action codes (ISO 9735-5): 4 = this level and all lower levels rejected,
# 7 = this level acknowledged, all lower levels acknowledged if not reported in error.
ACTION_REJECTED = "4"
ACTION_ACCEPTED = "7"
SW_EDI_ID = "SINGLEWINDOW"  # UNB sender of CONTRL messages Single Window writes


def _environment(autoescape: bool) -> jinja2.Environment:
    folder = files("singlewindow").joinpath("notices", "templates")
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)),
                              undefined=jinja2.StrictUndefined, autoescape=autoescape,
                              keep_trailing_newline=True)


def _context(result: Result, submitted: str) -> dict[str, object]:
    contrl_text = contrl(result)
    return {
        "message_type": result.message_type,
        "syntax": result.syntax,
        "reference": result.interchange.reference if result.interchange else "",
        "submitted": submitted,
        "errors": [e.as_dict() for e in result.errors],
        "has_contrl": contrl_text is not None,
        "contrl": (contrl_text or b"").decode("latin-1"),
    }


def control_text(result: Result, submitted: str = "") -> str:
    """The human part of the control message."""
    return _environment(False).get_template("control_message.txt.j2").render(
        _context(result, submitted))


def frm_xml(result: Result, submitted: str = "") -> bytes:
    """The machine-readable part: status, and per error code, description, pointer."""
    text = _environment(True).get_template("control_message.xml.j2").render(
        _context(result, submitted))
    return text.encode("utf-8")


def contrl(result: Result, now: float | None = None) -> bytes | None:
    """A CONTRL message answering an EDIFACT submission with syntax errors, else ``None``."""
    info = result.interchange
    syntax_errors = [e for e in result.errors if e.cls in SYNTAX_CLASSES]
    if result.syntax != "edifact" or info is None or not syntax_errors:
        return None
    d = Delimiters() if info.version >= 4 else Delimiters(repetition=None)
    stamp = time.strftime("%y%m%d:%H%M", time.gmtime(now)).split(":")
    ref = f"C{info.reference}"[:14]
    uci = ["UCI", [[info.reference]], [list(info.sender)], [list(info.recipient)],
           [[ACTION_REJECTED]], *_first_code(syntax_errors, None)]
    body: list[list[Any]] = [uci]
    for msg_ref, msg_id in info.messages:
        mine = [e for e in syntax_errors if e.place.message == msg_ref]
        action = ACTION_REJECTED if mine else ACTION_ACCEPTED
        body.append(["UCM", [[msg_ref]], [msg_id.split(":")], [[action]]])
        body += _segment_errors(mine)
    segs = [["UNH", [["1"]], [["CONTRL", "4" if info.version >= 4 else "D",
                                "1" if info.version >= 4 else "3", "UN"]]], *body]
    segs.append(["UNT", [[str(len(segs) + 1)]], [["1"]]])
    text = d.una() + format_segment(
        "UNB", [[[info.syntax_id, str(info.version)]], [[SW_EDI_ID]], [list(info.sender[:2])],
                [stamp], [[ref]]], d)
    text += "".join(format_segment(s[0], s[1:], d) for s in segs)
    text += format_segment("UNZ", [[["1"]], [[ref]]], d)
    return text.encode("latin-1", "replace")


def _first_code(errors: list[MigError], message: str | None) -> list[list[list[str]]]:
    """UCI's own 0085 (and 0013 service segment tag) for interchange-level errors."""
    for e in errors:
        if e.place.message == message and e.syntax_code is not None:
            return [[[str(e.syntax_code)]], [[e.place.tag or ""]]]
    return []


def _segment_errors(errors: list[MigError]) -> list[list[Any]]:
    """UCS per erroneous segment (0096 position, 0085 code), UCD per element (S011)."""
    out: list[list[Any]] = []
    for e in errors:
        if e.place.segment is None:
            continue
        code = str(e.syntax_code or 18)
        if e.place.element is None:
            out.append(["UCS", [[str(e.place.segment)]], [[code]]])
            continue
        out.append(["UCS", [[str(e.place.segment)]]])
        position = [str(e.place.element)] + ([str(e.place.component)] if e.place.component
                                            else [])
        out.append(["UCD", [[code]], [position]])
    return out
