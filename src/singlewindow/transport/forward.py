"""Re-injection: copies go back into Postfix through its loopback listener (SPEC §5).

That listener runs neither the policy daemon nor the milter; Postfix then relays each copy
to the destination party's next hop with the DSN parameters set here. It is the way in
for the transport alone (issue 12): it takes mail only over TLS from a client that shows
the transport's certificate (conf/postfix/master.cf.j2), which :func:`client_context`
presents. Sending is smtplib; the exactly-once bookkeeping is :mod:`.copies`' (SPEC D4).
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
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


#: Copy bytes gathered into one write (small pieces, the end of DATA) before sending.
_WRITE = 64 << 10

_CRLF = "\r\n"

#: Refused transactions after which a kept connection is closed rather than reset. Postfix
#: counts each refused command (a pipelined refused MAIL is three: MAIL, RCPT and DATA)
#: and slows all its replies from smtpd_soft_error_limit (10) on; a new session starts
#: at nought.
_REFUSALS_PER_CONNECTION = 3


class _Stale(Exception):
    """A kept connection turned out dead before Postfix answered anything of this copy
    (it closed an idle session): open a new one and start over."""


class Injector:
    """Sends copies to Postfix's re-injection listener, one kept-open connection per worker
    thread (a connection per copy cost more than the copy itself).

    A copy costs two round trips when Postfix offers PIPELINING (RFC 2920): MAIL, RCPT
    and DATA in one write, and the data with its end in as few writes as it takes. A
    kept connection is used as it is (no NOOP first); one found dead at its first reply
    is opened anew once.

    ``tls``: makes the TLS context of a new connection (:func:`client_context`); None
    only for a test's plain SMTP sink standing in for Postfix.
    """

    def __init__(self, host: str, port: int, helo: str, timeout: float = 60.0,
                 tls: Callable[[], ssl.SSLContext] | None = None) -> None:
        self.host, self.port, self.helo, self.timeout = host, port, helo, timeout
        self.tls = tls
        self._local = threading.local()

    def _connection(self) -> tuple[smtplib.SMTP, bool]:
        """This thread's connection, and whether it is a kept one (it may have died)."""
        smtp: smtplib.SMTP | None = getattr(self._local, "smtp", None)
        if smtp is not None:
            return smtp, True
        smtp = smtplib.SMTP(self.host, self.port, self.helo, timeout=self.timeout)
        try:
            if smtp.sock is not None:
                # The data and its end go out as written, not held back for the ACK of
                # the previous write (Nagle against the server's delayed ACK).
                smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
        self._local.refusals = 0
        return smtp, False

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
        while True:
            try:
                smtp, kept = self._connection()
            except (OSError, smtplib.SMTPException) as exc:
                raise InjectError(f"re-injection failed: {exc}") from exc
            try:
                return self._transaction(smtp, kept, mail_from, rcpt, data, envid=envid,
                                         notify=notify, orcpt=orcpt, deadline=deadline,
                                         checkpoint=checkpoint)
            except _Stale:
                self._drop()  # a fresh connection is never stale: this loops once at most

    def _transaction(self, smtp: smtplib.SMTP, kept: bool, mail_from: str, rcpt: str,
                     data: bytes | Copy, *, envid: str | None, notify: str,
                     orcpt: str | None, deadline: float | None, checkpoint: Checkpoint
                     ) -> str:
        mail_options = ["RET=HDRS"] if mail_from else []
        if envid:
            mail_options.append(f"ENVID={envid}")
        rcpt_options = [f"NOTIFY={notify}"]
        if orcpt:
            rcpt_options.append(f"ORCPT=rfc822;{orcpt}")
        if not smtp.has_extn("dsn"):
            # RFC 3461 4: DSN parameters only to a server that offers DSN.
            mail_options, rcpt_options = [], []
        size = len(data) if isinstance(data, bytes) else data.size
        if smtp.has_extn("size"):
            # RFC 1870: a copy over the listener's limit is refused at MAIL (552 5.3.4)
            # before its bytes are sent.
            mail_options.append(f"SIZE={size}")
        commands = [
            ("MAIL FROM", _command(f"MAIL FROM:{smtplib.quoteaddr(mail_from)}",
                                   mail_options), (250,)),
            ("RCPT TO", _command(f"RCPT TO:{smtplib.quoteaddr(rcpt)}", rcpt_options),
             (250, 251)),
            ("DATA", "DATA", (354,)),
        ]
        sent_end = False
        try:
            failure = self._envelope(smtp, commands, kept)
            if failure is not None:
                self._reset(smtp)
                raise failure
            pieces = _halves(data) if isinstance(data, bytes) else data.chunks()
            done, halfway, last = 0, False, b""
            pending: list[bytes] = []  # small pieces gathered into one write
            held = 0
            for piece in stuffed(pieces):
                if pending and held + len(piece) > _WRITE:
                    smtp.send(b"".join(pending))
                    pending, held = [], 0
                if len(piece) >= _WRITE:
                    smtp.send(piece)
                else:
                    pending.append(piece)
                    held += len(piece)
                done += len(piece)
                last = piece[-2:] if len(piece) >= 2 else last[-1:] + piece
                if not halfway and done >= size // 2:
                    halfway = True
                    if pending:
                        smtp.send(b"".join(pending))
                        pending, held = [], 0
                    checkpoint("during-data")
            if last != b"\r\n":
                pending.append(b"\r\n")
            if deadline is not None and time.monotonic() > deadline:
                self._drop()  # inside DATA: only closing the connection ends it
                raise InjectError("the copy's claim ran out before the end of DATA; "
                                  "transaction dropped, nothing queued")
            sent_end = True
            pending.append(b".\r\n")
            smtp.send(b"".join(pending))
            reply = smtp.getreply()
        except (Refused, InjectError, _Stale):
            raise
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()  # a half-done transaction must not leak into the next copy
            raise InjectError(f"re-injection failed: {exc}", uncertain=sent_end) from exc
        if reply[0] == 421:
            self._drop()  # RFC 5321 3.8: Postfix closes the session
        elif reply[0] != 250:
            self._refused()
        # After the reply to the end of DATA the transaction is over, taken or not: the
        # connection serves the next copy as it is.
        _, text = self._expect(reply, "end of DATA", (250,))
        match = _QUEUED.search(text)
        return match[1].decode() if match else ""

    def _envelope(self, smtp: smtplib.SMTP, commands: list[tuple[str, str, tuple[int, ...]]],
                  kept: bool) -> Refused | InjectError | None:
        """MAIL, RCPT and DATA, in one write when Postfix offers PIPELINING; each reply
        read in order and checked. Returns the first refusal (the replies after it are
        still read), None when DATA was answered 354."""
        pipelined = smtp.has_extn("pipelining")
        failure: Refused | InjectError | None = None
        for n, (stage, line, ok) in enumerate(commands):
            if failure is not None and not pipelined:
                break
            try:
                if n == 0 and pipelined:
                    smtp.send("".join(command + _CRLF for _, command, _ in commands))
                elif not pipelined:
                    smtp.send(line + _CRLF)
                reply = smtp.getreply()
            except (OSError, smtplib.SMTPException) as exc:
                if n == 0 and kept:
                    raise _Stale from exc  # Postfix ended the idle session meanwhile
                raise
            if n == 0 and kept and reply[0] == 421:
                raise _Stale
            if failure is None:
                try:
                    self._expect(reply, stage, ok)
                except (Refused, InjectError) as exc:
                    failure = exc
            elif reply[0] == 354:
                # DATA taken after a refused MAIL or RCPT: no end of DATA may follow.
                self._drop()
                raise failure
            if reply[0] == 421:
                self._drop()  # RFC 5321 3.8: Postfix closes the session
                raise failure or InjectError(f"{stage}: 421")
        return failure

    def _reset(self, smtp: smtplib.SMTP) -> None:
        """RSET after a refused MAIL, RCPT or DATA, so the connection serves the next copy;
        closed instead if even that fails."""
        if not self._refused():
            return
        try:
            if smtp.rset()[0] == 250:
                return
        except (OSError, smtplib.SMTPException):
            pass
        self._drop()

    def _refused(self) -> bool:
        """Count a refused transaction; False when that closed the connection."""
        self._local.refusals += 1
        if self._local.refusals < _REFUSALS_PER_CONNECTION:
            return True
        self._drop()
        return False

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


def _command(verb: str, options: list[str]) -> str:
    return " ".join([verb, *options])


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
