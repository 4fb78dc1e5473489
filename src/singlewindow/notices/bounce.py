"""The DSNs Postfix writes: its bounce(5) template file (SPEC R5.1, R5.3).

Where it sits in the mail flow: when Postfix itself reports on mail submitted to Single
Window (a failure, a delay, a success it writes, an address verification), bounce(8)
takes the texts from ``bounce_template_file`` (main.cf), ``bounce.cf`` in Postfix's
configuration directory. That file is this notice, rendered by the local stack
(``swctl stack up``) and on a deployed node (``swctl render --target postfix``) from
``bounce.cf.j2`` in the notices' environment: an operator's own ``bounce.cf.j2`` in
``[notices] templates_dir`` replaces the package's, as for the notices the transport writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from singlewindow import notices, render

TEMPLATE = "bounce.cf.j2"
#: Its name in Postfix's configuration directory (main.cf's bounce_template_file).
FILE = "bounce.cf"


def text(context: Mapping[str, Any], templates_dir: Path | None) -> str:
    """The file, from the template context of Postfix's configuration (``hub_name``,
    ``sw_domain`` and ``message_id_header`` are the names it uses)."""
    header = render.GENERATED.format(template=f"the notice template {TEMPLATE}")
    return notices.render_in(templates_dir, TEMPLATE, {**context, "generated_header": header})
