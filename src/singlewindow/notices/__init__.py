"""Every notice the hub writes, rendered from templates (SPEC R5, R6).

Where it sits in the mail flow: after the queue, the transport writes the "delivered" DSN
of a submission (:mod:`.delivered`), the control message about its MIG errors sent
instead of forwarding (:mod:`.control`) and the report of a copy that failed on its way to
an agency (:mod:`.agency`); before that, Postfix writes the failure, delay and
verification DSNs from the bounce(5) templates rendered here (:mod:`.bounce`). The
wording of each is a template file in ``templates/`` (one per part), rendered in one
Jinja2 environment with ``StrictUndefined``; the message around it (headers, MIME
structure, delivery-status fields) is protocol and stays in code.

An operator's own wording: the directory ``[notices] templates_dir`` (config.py) is
searched before the package's templates, as Mailman 3 searches a site's template
directory before the templates it ships. A template there replaces the package's one of
the same name and nothing else (docs/notices.md: the names and what each is given).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2

log = logging.getLogger(__name__)

#: The wording Single Window ships.
PACKAGE_DIR = Path(str(files("singlewindow").joinpath("notices", "templates")))


class NoticeError(Exception):
    """An override directory whose templates the notices cannot use."""


#: This process's override directory (:func:`use`); None: the package's wording only.
_override: Path | None = None


def _autoescape(name: str | None) -> bool:
    """XML templates (the FRM report) are escaped; text ones are written as they are."""
    return name is not None and name.removesuffix(".j2").endswith(".xml")


@functools.cache
def environment(templates_dir: Path | None = None) -> jinja2.Environment:
    """The notices' environment: ``templates_dir`` first (if any), then the package's.

    One per directory and process: templates are compiled once, not per message.
    """
    search = [str(templates_dir)] if templates_dir is not None else []
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([*search, str(PACKAGE_DIR)]),
        undefined=jinja2.StrictUndefined, autoescape=_autoescape,
        keep_trailing_newline=True)


def names() -> list[str]:
    """The notice templates an override may replace."""
    return sorted(p.name for p in PACKAGE_DIR.iterdir() if p.name.endswith(".j2"))


def check(templates_dir: Path) -> None:
    """Refuse an override directory with a template that could never be used: a name no
    notice has (a typo would silently change nothing) or a syntax error. A missing
    directory is no override at all."""
    try:
        if not templates_dir.is_dir():
            return
        found = sorted(templates_dir.glob("*.j2"))
    except OSError as exc:
        raise NoticeError(f"{templates_dir}: {exc.strerror}") from None
    known = names()
    for path in found:
        if path.name not in known:
            raise NoticeError(f"{path}: no notice has this template name (they are: "
                              f"{', '.join(known)})")
        try:
            environment(templates_dir).parse(path.read_text(encoding="utf-8"), path.name,
                                             str(path))
        except jinja2.TemplateSyntaxError as exc:
            raise NoticeError(f"{path}, line {exc.lineno}: {exc.message}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise NoticeError(f"{path}: {exc}") from None


def use(templates_dir: Path | None) -> None:
    """Search ``templates_dir`` first for this process's notices, once :func:`check`
    accepts it (the transport calls this at start, so it refuses to start with a broken
    one: :func:`singlewindow.daemon.use_notices`)."""
    global _override
    if templates_dir is not None:
        check(templates_dir)
    _override = templates_dir


def render(name: str, /, **context: Any) -> str:
    """Template ``name`` with ``context``, the operator's wording first (:func:`use`)."""
    return render_in(_override, name, context)


def render_in(templates_dir: Path | None, name: str, context: Mapping[str, Any]) -> str:
    """Template ``name`` from ``templates_dir`` if it has one, else the package's.

    A notice is never lost to its wording: an override that fails (a variable this notice
    does not have, a syntax error written since the daemon started) is logged as an
    ERROR naming its file, and the package's template is rendered instead. The package's
    own templates are not guarded: an error there is a bug, raised to the caller.
    """
    if templates_dir is not None:
        own = templates_dir / name
        try:
            if own.is_file():
                return environment(templates_dir).get_template(name).render(context)
        except (jinja2.TemplateError, OSError, UnicodeDecodeError) as exc:
            log.error("notice template %s cannot be rendered (%s: %s): the package's %s "
                      "is used instead", own, type(exc).__name__, exc, name)
    return environment(None).get_template(name).render(context)
