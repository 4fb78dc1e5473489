"""Delivery into a POP3 maildrop (I3) with Dovecot's own delivery agent, dovecot-lda.

After the queue, for logical addresses of mail-client companies (``--maildrop LOGIN``).
dovecot-lda writes the Maildir exactly as Dovecot's POP3 server reads it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from singlewindow import replies
from singlewindow.replies import Reply

#: sysexits(3) EX_TEMPFAIL: dovecot-lda's "try again later".
EX_TEMPFAIL = 75


def deliver(lda: Path, dovecot_config: Path, login: str, mail_from: str, data: bytes,
            timeout: float = 60.0) -> Reply:
    """Deliver ``data`` into ``login``'s maildrop; any failure defers (4.x.x)."""
    cmd = [str(lda), "-c", str(dovecot_config), "-d", login, "-f", mail_from or "<>"]
    try:
        result = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return replies.INTERNAL_ERROR.with_text(f"maildrop delivery failed: {exc}")
    if result.returncode == 0:
        return replies.DELIVERED.with_text(f"Delivered to the maildrop of {login}")
    detail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
    return replies.INTERNAL_ERROR.with_text(
        f"maildrop delivery deferred (dovecot-lda exit {result.returncode}: {detail[0]})")
