"""The LMTP server of the routing transport (RFC 2033).

Where this sits: after the queue, Postfix's lmtp(8) client delivers every message for the
Single Window domain to this server over a unix socket (SPEC D3). The server owns the
socket and the protocol; it decides nothing. For each accepted recipient it awaits a
pluggable ``deliver`` callable (the store-backed router) and sends that recipient's reply.
Postfix turns each reply into that recipient's delivery status and DSN.

aiosmtpd's ``LMTP`` class is the protocol engine. It sends whatever ``handle_DATA``
returns as the reply to DATA, so the handler joins one complete reply line per recipient
with CRLF: RFC 2033 4.2 wants exactly that many replies, in RCPT order. The message data
itself is read here, into one buffer (aiosmtpd keeps an object per line, which costs
more than the message for one of short lines).

The server announces DSN (RFC 3461) in its LHLO reply and keeps each recipient's NOTIFY and
ORCPT and the ENVID and RET of MAIL FROM. Postfix's lmtp(8) then counts a 250 as a relay
to a DSN-capable server and writes no "delivered" DSN itself (smtp_rcpt.c,
``smtp_rcpt_done`` clears NOTIFY=SUCCESS when the server announced DSN); the transport
writes it (:meth:`Deliver.finish`). Failures (5xx) still make Postfix's own DSNs.

The POP3 backend's maildrop service (:mod:`.backend`, issue 15) runs the same engine
(:class:`PerRecipientLMTP`, :class:`LmtpHandler`) over TCP with STARTTLS.

A failure inside this service must never bounce mail: any exception, or anything that is not
a proper reply, becomes ``replies.INTERNAL_ERROR`` (4.3.0) and Postfix retries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import stat
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import AnyStr, Protocol

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from singlewindow import config, replies
from singlewindow.replies import Reply

log = logging.getLogger(__name__)

#: Largest message accepted, advertised as SIZE (RFC 1870) so Postfix refuses bigger ones
#: at MAIL FROM instead of sending them: ``transport.lmtp_size_limit`` (config.py), which
#: is above Postfix's message_size_limit. The services pass the configured one; this is
#: its default, for a server started without it.
DEFAULT_DATA_SIZE_LIMIT = config.Transport().lmtp_size_limit
#: Seconds an idle connection is kept; Postfix's lmtp(8) reuses connections in between.
DEFAULT_IDLE_TIMEOUT = 300.0
#: Mode of the socket file: Postfix's delivery agents run as the ``postfix`` user, which
#: reaches the socket through its group.
DEFAULT_SOCKET_MODE = 0o660
#: Longest reply line without its CRLF (RFC 5321 4.5.3.1.5).
MAX_REPLY_LINE = 510


@dataclass(frozen=True, slots=True)
class RecipientDsn:
    """A recipient's DSN parameters (RFC 3461 4.1, 4.2), as Postfix passed them."""

    notify: tuple[str, ...] = ()
    """NOTIFY's keywords in upper case (``SUCCESS``, ``FAILURE``, ``DELAY``, ``NEVER``);
    empty when Postfix sent none."""
    orcpt: str | None = None
    """ORCPT, xtext decoded: ``rfc822;a@b``."""

    @property
    def success(self) -> bool:
        return "SUCCESS" in self.notify


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Transaction:
    """One LMTP mail transaction: everything Postfix sent between MAIL FROM and the dot.

    The same object goes to the ``deliver`` call of every recipient and to ``finish``;
    it is hashed and compared by identity and can be weakly referenced, so a ``deliver``
    callable can keep what its calls share about the transaction (work that is the same
    for every recipient) in a weak mapping of its own: the server knows nothing of it.
    """

    mail_from: str
    """The envelope sender, ``""`` for the null sender of a DSN (RFC 5321 4.5.5)."""
    recipients: tuple[str, ...]
    """Every accepted recipient, in RCPT order."""
    mail_options: tuple[str, ...]
    """The MAIL FROM parameters, e.g. ``SIZE=1234``, ``BODY=8BITMIME``."""
    raw: bytes
    """The message as received: CRLF line ends, dot-stuffing undone (RFC 5321 4.5.2)."""
    dsn: tuple[RecipientDsn, ...] = ()
    """Each recipient's NOTIFY and ORCPT, in RCPT order (empty: none were given)."""
    envid: str | None = None
    """MAIL FROM's ENVID (RFC 3461 4.4), xtext decoded."""
    ret: str | None = None
    """MAIL FROM's RET (RFC 3461 4.3): ``FULL`` or ``HDRS``."""


class Deliver(Protocol):
    """Decides one recipient: return its reply; raising defers it (4.3.0)."""

    def __call__(
        self, mail_from: str, rcpt: str, raw: bytes, transaction: Transaction
    ) -> Awaitable[Reply]: ...


class Finish(Protocol):
    """After every recipient is decided and before the replies go out: may change them
    (e.g. defer what it could not finish); raising defers every 2xx (4.3.0)."""

    def __call__(self, transaction: Transaction, decided: list[Reply]
                 ) -> Awaitable[list[Reply]]: ...


_XTEXT = re.compile(r"\+([0-9A-Fa-f]{2})")
_PRINTABLE = re.compile(r"[ -~]*")


def xtext(value: str) -> str | None:
    """RFC 3461 4: ``+XX`` is the octet XX; everything else stands for itself. None
    unless the value decodes to printable US-ASCII (ENVID 4.4, ORCPT 4.2): a CR or LF
    in it would write header lines of its own into the DSN that quotes it."""
    decoded = _XTEXT.sub(lambda m: chr(int(m[1], 16)), value)
    return decoded if _PRINTABLE.fullmatch(decoded) else None


class DsnEnvelope(Envelope):
    """aiosmtpd's envelope with the DSN parameters of RFC 3461."""

    def __init__(self) -> None:
        super().__init__()
        self.envid: str | None = None
        self.ret: str | None = None
        self.rcpt_dsn: list[RecipientDsn] = []


def take_params(arg: str, names: tuple[str, ...]) -> tuple[str, dict[str, str]] | None:
    """``arg`` without the parameters ``names`` (case kept: ENVID and ORCPT are
    case-sensitive xtext, which aiosmtpd would upper-case), and those parameters; None
    for a parameter given twice."""
    kept: list[str] = []
    found: dict[str, str] = {}
    for word in arg.split(" "):
        key, eq, value = word.partition("=")
        if eq and key.upper() in names:
            if key.upper() in found:
                return None
            found[key.upper()] = value
        else:
            kept.append(word)
    return " ".join(kept), found


def reply_line(reply: Reply) -> str:
    """One reply as a single wire line, whatever its text contains.

    The text is untrusted here (it may quote message content): CR or LF in it would split
    the reply and desynchronise Postfix, so every non-printable character becomes a space;
    and a reply line is at most 512 octets with its CRLF (RFC 5321 4.5.3.1.5; Postfix
    reads a longer one in pieces), so a longer text is cut, ending in "...".
    """
    text = "".join(c if " " <= c <= "~" else " " for c in reply.text)
    line = f"{reply.code} {reply.enhanced} {text}".rstrip()
    return line if len(line) <= MAX_REPLY_LINE else line[:MAX_REPLY_LINE - 3] + "..."


class LmtpHandler:
    """The aiosmtpd handler: asks ``deliver`` about each recipient after DATA."""

    def __init__(self, deliver: Deliver, finish: Finish | None = None) -> None:
        self._deliver = deliver
        self._finish = finish

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        """LHLO's reply with DSN (RFC 3461 3) before its last line."""
        session.host_name = hostname
        return [*responses[:-1], "250-DSN", responses[-1]]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        dsn = envelope if isinstance(envelope, DsnEnvelope) else None
        transaction = Transaction(
            # aiosmtpd keeps the null reverse-path as "<>" (RFC 5321 4.1.1.2).
            mail_from="" if envelope.mail_from in (None, "<>") else envelope.mail_from,
            recipients=tuple(envelope.rcpt_tos),
            mail_options=tuple(envelope.mail_options),
            raw=raw,
            dsn=tuple(dsn.rcpt_dsn) if dsn else (),
            envid=dsn.envid if dsn else None,
            ret=dsn.ret if dsn else None,
        )
        decided = [await self._decide(rcpt, transaction) for rcpt in transaction.recipients]
        if self._finish is not None and any(200 <= r.code < 300 for r in decided):
            try:
                finished = await self._finish(transaction, decided)
                if len(finished) != len(decided) or \
                        not all(isinstance(r, Reply) for r in finished):
                    raise TypeError(f"finish returned {finished!r}")
                decided = finished
            except Exception:
                log.exception("finishing the transaction failed; deferring its 2xx")
                decided = [replies.INTERNAL_ERROR if 200 <= r.code < 300 else r
                           for r in decided]
        return "\r\n".join(reply_line(reply) for reply in decided)

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's last resort, for an error outside ``deliver``: defer, never 5xx."""
        log.error("LMTP session failed: %r", error, exc_info=error)
        return reply_line(replies.INTERNAL_ERROR)

    async def _decide(self, rcpt: str, transaction: Transaction) -> Reply:
        try:
            reply = await self._deliver(transaction.mail_from, rcpt, transaction.raw, transaction)
        except Exception:
            log.exception("deliver failed for <%s>; deferring", rcpt)
            return replies.INTERNAL_ERROR
        if not isinstance(reply, Reply) or not 200 <= reply.code <= 599:
            log.error("deliver returned %r for <%s>; deferring", reply, rcpt)
            return replies.INTERNAL_ERROR
        return reply


class PerRecipientLMTP(LMTP):
    """aiosmtpd's LMTP, made to keep RFC 2033's one-reply-per-recipient rule everywhere.

    aiosmtpd answers some DATA outcomes itself with a single line (message too big, line
    too long, or a handler error). After DATA, Postfix reads one reply per recipient, so a
    single line for several recipients would leave it waiting for the rest. This repeats
    such a line once per recipient.
    """

    _pending_replies = 0

    def _create_envelope(self) -> Envelope:
        return DsnEnvelope()

    async def smtp_MAIL(self, arg: str | None) -> None:
        """MAIL FROM with ENVID and RET (RFC 3461 4.3, 4.4) taken off before aiosmtpd,
        which knows neither, reads the rest."""
        if not arg:
            await super().smtp_MAIL(arg)
            return
        parsed = take_params(arg, ("ENVID", "RET"))
        if parsed is None:
            await self.push("501 5.5.4 Syntax: a DSN parameter given twice (RFC 3461)")
            return
        rest, found = parsed
        ret = found.get("RET", "").upper() or None
        envid = xtext(found["ENVID"]) if "ENVID" in found else None
        if ret not in (None, "FULL", "HDRS") or ("ENVID" in found and not envid) or \
                len(envid or "") > 100:
            await self.push("501 5.5.4 Syntax: bad ENVID or RET (RFC 3461 4.3, 4.4)")
            return
        await super().smtp_MAIL(rest)
        envelope = self.envelope
        if isinstance(envelope, DsnEnvelope) and envelope.mail_from is not None:
            envelope.envid = envid
            envelope.ret = ret

    async def smtp_RCPT(self, arg: str | None) -> None:
        """RCPT TO with NOTIFY and ORCPT (RFC 3461 4.1, 4.2), kept for that recipient."""
        if not arg:
            await super().smtp_RCPT(arg)
            return
        parsed = take_params(arg, ("NOTIFY", "ORCPT"))
        if parsed is None:
            await self.push("501 5.5.4 Syntax: a DSN parameter given twice (RFC 3461)")
            return
        rest, found = parsed
        notify = tuple(found["NOTIFY"].upper().split(",")) if "NOTIFY" in found else ()
        orcpt = xtext(found["ORCPT"]) if "ORCPT" in found else None
        if any(n not in ("SUCCESS", "FAILURE", "DELAY", "NEVER") for n in notify) or \
                ("NEVER" in notify and len(notify) > 1) or \
                ("ORCPT" in found and (not orcpt or ";" not in orcpt)):
            await self.push("501 5.5.4 Syntax: bad NOTIFY or ORCPT (RFC 3461 4.1, 4.2)")
            return
        envelope = self.envelope
        before = len(envelope.rcpt_tos) if envelope is not None else 0
        await super().smtp_RCPT(rest)
        envelope = self.envelope
        if isinstance(envelope, DsnEnvelope) and len(envelope.rcpt_tos) > before:
            envelope.rcpt_dsn.append(RecipientDsn(notify, orcpt))

    async def smtp_DATA(self, arg: str) -> None:
        """DATA (RFC 5321 4.1.1.4) read into one buffer, dot-stuffing undone as it arrives
        (4.5.2); the size counted is the message's, as Postfix counts it, not the wire's.

        What aiosmtpd's own DATA does around the data is kept: the state checks and
        replies before the 354, the 552 for too much data and the 500 for a line over the
        stream's limit (each after draining the data), the handler's ``handle_DATA``, and
        a fresh envelope afterwards.
        """
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content = bytearray()
        limit = self.data_size_limit
        fault: str | None = None
        line_start = True
        while self.transport is not None:
            try:
                piece = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as overrun:
                piece = await self._reader.read(overrun.consumed)
                fault = fault or "500 Line too long (see RFC5321 4.5.3.1.6)"
            if line_start and piece == b".\r\n":
                break
            if fault is None:
                skip = 1 if line_start and piece[:1] == b"." else 0
                if limit and len(content) + len(piece) - skip > limit:
                    fault = "552 Error: Too much mail data"
                else:
                    content += memoryview(piece)[skip:]
            if fault is not None:
                content = bytearray()  # nothing of it is used: free it now
            line_start = piece.endswith(b"\r\n")
        else:
            return  # the connection is gone
        if fault is not None:
            self.envelope = self._create_envelope()
            await self.push(fault)
            return
        raw = bytes(content)
        del content
        self.envelope.original_content = raw
        self.envelope.content = raw
        status = await self._call_handler_hook("DATA")
        self.envelope = self._create_envelope()
        await self.push(status if isinstance(status, str) else "250 OK")

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, bytes):  # aiosmtpd pushes bytes only for AUTH, never here
            await super().push(status)
            return
        if status.startswith("354") and self.envelope is not None:
            self._pending_replies = len(self.envelope.rcpt_tos)
        elif self._pending_replies:
            count, self._pending_replies = self._pending_replies, 0
            given = status.split("\r\n")
            if len(given) != count:
                given = [given[0]] * count
            # On the handler's error path aiosmtpd skips its post-DATA reset, yet the
            # transaction is over either way (RFC 5321 4.1.1.4).
            self.envelope = self._create_envelope()
            await super().push("\r\n".join(given))
            return
        await super().push(status)


class LmtpServer:
    """The routing transport's LMTP listener on a unix socket.

    Use as ``async with LmtpServer(path, deliver): ...``, or ``start()`` and ``close()``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        deliver: Deliver,
        *,
        finish: Finish | None = None,
        hostname: str = "localhost",
        socket_mode: int = DEFAULT_SOCKET_MODE,
        data_size_limit: int = DEFAULT_DATA_SIZE_LIMIT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        sock: socket.socket | None = None,
    ) -> None:
        self.path = Path(path)
        # A listening socket bound at ``path`` by a parent process that shares it among
        # several worker processes (server.py, ``[transport] processes``): each accepts
        # on it; the parent alone created the path and removes it.
        self._sock = sock
        self.handler = LmtpHandler(deliver, finish)
        self._hostname = hostname
        self._socket_mode = socket_mode
        self._data_size_limit = data_size_limit
        self._idle_timeout = idle_timeout
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._sock is None:
            self._remove_stale_socket()

        def protocol() -> LMTP:
            return PerRecipientLMTP(
                self.handler,
                hostname=self._hostname,
                ident="Single Window LMTP",
                data_size_limit=self._data_size_limit,
                timeout=self._idle_timeout,
                loop=loop,
            )

        if self._sock is not None:
            self._server = await loop.create_unix_server(protocol, sock=self._sock)
        else:
            self._server = await loop.create_unix_server(protocol, str(self.path))
            self.path.chmod(self._socket_mode)
        log.info("LMTP listening on %s", self.path)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        if self._sock is None:
            self.path.unlink(missing_ok=True)

    async def __aenter__(self) -> LmtpServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _remove_stale_socket(self) -> None:
        """Remove the socket a previous run left behind; refuse to remove anything else."""
        try:
            mode = self.path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise FileExistsError(f"{self.path} exists and is not a socket")
        self.path.unlink()
