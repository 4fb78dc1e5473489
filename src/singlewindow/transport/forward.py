"""Re-injection: copies go back into Postfix through its loopback listener (SPEC §5).

That listener runs neither the policy daemon nor the milter; Postfix then relays each copy
to the destination party's next hop with the DSN parameters set here. Sending is plain
smtplib; the exactly-once bookkeeping is the router's (SPEC D4).
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import threading
from pathlib import Path

_QUEUED = re.compile(rb"queued as ([0-9A-Za-z]+)")


class InjectError(Exception):
    """Postfix did not take the copy; the caller defers (4.x.x)."""


class Injector:
    """Sends copies to Postfix's re-injection listener, one kept-open connection per worker
    thread (a connection per copy cost more than the copy itself)."""

    def __init__(self, host: str, port: int, helo: str, timeout: float = 60.0) -> None:
        self.host, self.port, self.helo, self.timeout = host, port, helo, timeout
        self._local = threading.local()

    def _connection(self) -> smtplib.SMTP:
        smtp: smtplib.SMTP | None = getattr(self._local, "smtp", None)
        if smtp is not None:
            try:
                if smtp.noop()[0] == 250:
                    return smtp
            except (OSError, smtplib.SMTPException):
                pass
            self._drop()
        smtp = smtplib.SMTP(self.host, self.port, self.helo, timeout=self.timeout)
        smtp.ehlo(self.helo)
        self._local.smtp = smtp
        return smtp

    def _drop(self) -> None:
        smtp = getattr(self._local, "smtp", None)
        self._local.smtp = None
        if smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                smtp.close()

    def send(self, mail_from: str, rcpt: str, data: bytes, *, envid: str | None,
             notify: str, orcpt: str | None) -> str:
        """Hand one copy to Postfix; return its queue id."""
        mail_options = ["RET=HDRS"] if mail_from else []
        if envid:
            mail_options.append(f"ENVID={envid}")
        rcpt_options = [f"NOTIFY={notify}"]
        if orcpt:
            rcpt_options.append(f"ORCPT=rfc822;{orcpt}")
        try:
            smtp = self._connection()
            if not smtp.has_extn("dsn"):
                # RFC 3461 4: DSN parameters only to a server that offers DSN.
                mail_options, rcpt_options = [], []
            code, text = smtp.mail(mail_from, mail_options)
            if code != 250:
                raise InjectError(f"MAIL FROM refused: {code} {text!r}")
            code, text = smtp.rcpt(rcpt, rcpt_options)
            if code not in (250, 251):
                raise InjectError(f"RCPT TO refused: {code} {text!r}")
            code, text = smtp.data(data)
            if code != 250:
                raise InjectError(f"DATA refused: {code} {text!r}")
        except (OSError, smtplib.SMTPException, InjectError) as exc:
            self._drop()  # a half-done transaction must not leak into the next copy
            if isinstance(exc, InjectError):
                raise
            raise InjectError(f"re-injection failed: {exc}") from exc
        match = _QUEUED.search(text)
        return match[1].decode() if match else ""


def find_in_maillog(maillog: Path | None, copy_message_id: str) -> str | None:
    """The queue id under which Postfix logged ``message-id=<copy>``, if it did.

    Recovery after a crash between re-injection and the bookkeeping that follows it:
    Postfix's cleanup(8) logs every queued message's Message-ID, so the log tells whether
    the copy already went in.
    """
    if maillog is None or not maillog.exists():
        return None
    needle = f"message-id={copy_message_id}".encode()
    with maillog.open("rb") as handle:
        for line in handle:
            if needle in line:
                match = re.search(rb"cleanup\[\d+\]: ([0-9A-Za-z]+): message-id=", line)
                if match:
                    return match[1].decode()
    return None
