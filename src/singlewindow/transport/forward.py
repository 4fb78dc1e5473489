"""Re-injection: copies go back into Postfix through its loopback listener (SPEC §5).

That listener runs neither the policy daemon nor the milter; Postfix then relays each copy
to the destination party's next hop with the DSN parameters set here. It is the way in
for the transport alone (issue 12): it takes mail only over TLS from a client that shows
the transport's certificate (conf/postfix/master.cf.j2), which :func:`client_context`
presents. Sending is smtplib; the exactly-once bookkeeping is the router's (SPEC D4).
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from singlewindow.transport.translate import Copy

_QUEUED = re.compile(rb"queued as ([0-9A-Za-z]+)")


class InjectError(Exception):
    """Postfix did not take the copy, for a reason that may pass (its listener is down, a
    4xx answer, a time-out); the caller defers (4.x.x).

    ``uncertain``: the end of DATA had been sent when it went wrong, so Postfix may have
    queued the copy after all; only its log can tell (:mod:`.evidence`).
    """

    def __init__(self, message: str, *, uncertain: bool = False) -> None:
        super().__init__(message)
        self.uncertain = uncertain


class Refused(Exception):
    """Postfix refused the copy for good (a 5xx reply, e.g. 552 5.3.4 for its size)."""

    def __init__(self, stage: str, code: int, text: str) -> None:
        super().__init__(f"{stage} refused: {code} {text}")
        self.reply = f"{code} {text}"
        """The reply as Postfix gave it, e.g. ``552 5.3.4 Message size exceeds ...``."""


#: A hook called at named points of a send (crash tests: ``during-data``).
Checkpoint = Callable[[str], None]


def _ignore(_: str) -> None:
    pass


def client_context(cert_file: Path, key_file: Path, server_cert: Path) -> ssl.SSLContext:
    """TLS towards the re-injection listener: present the transport's certificate, and
    accept only Postfix's own server certificate (``server_cert``, trusted as it is: the
    same file Postfix serves), so a process that took the port while Postfix was down
    gets no copy either. Made afresh for each new connection, so a renewed certificate
    is used without a restart."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(server_cert))
    context.check_hostname = False  # 127.0.0.1: pinned by the certificate itself
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


class Injector:
    """Sends copies to Postfix's re-injection listener, one kept-open connection per worker
    thread (a connection per copy cost more than the copy itself).

    ``tls``: makes the TLS context of a new connection (:func:`client_context`); None
    only for a test's plain SMTP sink standing in for Postfix.
    """

    def __init__(self, host: str, port: int, helo: str, timeout: float = 60.0,
                 tls: Callable[[], ssl.SSLContext] | None = None) -> None:
        self.host, self.port, self.helo, self.timeout = host, port, helo, timeout
        self.tls = tls
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
        try:
            smtp.ehlo(self.helo)
            if self.tls is not None:
                if not smtp.has_extn("starttls"):
                    raise InjectError("the re-injection listener offers no STARTTLS")
                smtp.starttls(context=self.tls())
                smtp.ehlo(self.helo)
        except BaseException:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                smtp.close()
            raise
        self._local.smtp = smtp
        return smtp

    def _drop(self) -> None:
        smtp = getattr(self._local, "smtp", None)
        self._local.smtp = None
        if smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                smtp.close()

    def send(self, mail_from: str, rcpt: str, data: bytes | Copy, *, envid: str | None,
             notify: str, orcpt: str | None, deadline: float | None = None,
             checkpoint: Checkpoint = _ignore) -> str:
        """Hand one copy to Postfix; return its queue id.

        ``data``: the whole copy, or a :class:`~singlewindow.transport.translate.Copy`
        that is encoded as it is sent (never whole in memory).
        ``deadline`` (``time.monotonic()``): the end of DATA is not sent after it, so an
        attempt that ran out of its claim's lease never commits a copy that another
        attempt may be sending (the transaction is dropped instead, and nothing is queued).
        """
        mail_options = ["RET=HDRS"] if mail_from else []
        if envid:
            mail_options.append(f"ENVID={envid}")
        rcpt_options = [f"NOTIFY={notify}"]
        if orcpt:
            rcpt_options.append(f"ORCPT=rfc822;{orcpt}")
        size = len(data) if isinstance(data, bytes) else data.size
        sent_end = False
        try:
            smtp = self._connection()
            if not smtp.has_extn("dsn"):
                # RFC 3461 4: DSN parameters only to a server that offers DSN.
                mail_options, rcpt_options = [], []
            if smtp.has_extn("size"):
                # RFC 1870: a copy over the listener's limit is refused at MAIL (552 5.3.4)
                # before its bytes are sent.
                mail_options.append(f"SIZE={size}")
            self._expect(smtp.mail(mail_from, mail_options), "MAIL FROM", (250,))
            self._expect(smtp.rcpt(rcpt, rcpt_options), "RCPT TO", (250, 251))
            self._expect(smtp.docmd("DATA"), "DATA", (354,))
            pieces = _halves(data) if isinstance(data, bytes) else data.chunks()
            done, halfway, last = 0, False, b""
            for piece in stuffed(pieces):
                smtp.send(piece)
                done += len(piece)
                last = piece[-2:] if len(piece) >= 2 else last[-1:] + piece
                if not halfway and done >= size // 2:
                    halfway = True
                    checkpoint("during-data")
            if last != b"\r\n":
                smtp.send(b"\r\n")
            if deadline is not None and time.monotonic() > deadline:
                raise InjectError("the copy's claim ran out before the end of DATA; "
                                  "transaction dropped, nothing queued")
            sent_end = True
            smtp.send(b".\r\n")
            _, text = self._expect(smtp.getreply(), "end of DATA", (250,))
        except Refused:
            self._drop()
            raise
        except (OSError, smtplib.SMTPException, InjectError) as exc:
            self._drop()  # a half-done transaction must not leak into the next copy
            if isinstance(exc, InjectError):
                raise
            raise InjectError(f"re-injection failed: {exc}", uncertain=sent_end) from exc
        match = _QUEUED.search(text)
        return match[1].decode() if match else ""

    @staticmethod
    def _expect(reply: tuple[int, bytes], stage: str, ok: tuple[int, ...]
                ) -> tuple[int, bytes]:
        code, text = reply
        if code in ok:
            return code, text
        shown = text.decode("utf-8", "replace")
        if code >= 500:
            raise Refused(stage, code, shown)
        raise InjectError(f"{stage} refused: {code} {shown}")


def _halves(data: bytes) -> Iterator[bytes]:
    half = len(data) // 2
    yield data[:half]
    yield data[half:]


def stuffed(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """RFC 5321 4.5.2 dot-stuffing of a copy sent in ``pieces`` (it has CRLF line ends
    already): a "." that starts a line is doubled, also where a line starts at a piece's
    first byte. Each piece is stuffed on its own, so no whole stuffed copy is made."""
    line_start = True
    for piece in pieces:
        if not piece:
            continue
        piece = piece.replace(b"\n.", b"\n..")
        if line_start and piece[:1] == b".":
            piece = b"." + piece
        line_start = piece[-1:] == b"\n"
        yield piece
