"""The edge's end of the maildrop hop: a maildrop delivery handed to the POP3 backend.

After the queue, in the routing transport of an edge of a multi-node hub (issue 15):
when ``[maildrop] backend`` is set, every delivery into a company's POP3 maildrop goes
to the backend's maildrop service (:mod:`.backend`, which documents the wire) instead of
a local dovecot-lda. One LMTP connection per delivery (maildrop deliveries are the mail
clients' share, a few a minute): LHLO, STARTTLS with the backend's certificate verified
against ``[tls] ca_file`` and the name in ``[maildrop] backend``, LHLO again, then one
transaction with one recipient, ``LOGIN@maildrop``.

What :mod:`.copies` gets back, as :func:`.maildrop.deliver` gives it locally:

- ``250``: saved (``replies.MAILDROP_SAVED_BEFORE`` when the backend found an interrupted
  attempt's copy saved already);
- ``4xx 4.2.1``: a POP3 session held the maildrop for the backend's ``lock_wait``:
  ``replies.MAILDROP_LOCKED`` (:mod:`.copies` records the wait, the router retries on
  a timer);
- anything else — no connection, a TLS failure, any other reply, a time-out —
  ``replies.MAILDROP_HOP_FAILED`` (451 4.4.1), whose text names no host; the log has the
  detail. A failure after the end of DATA may still have saved the copy: the
  retry sends ``XSINCE`` and the backend, not the edge, looks that up.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator

from singlewindow import replies
from singlewindow.config import Config
from singlewindow.replies import Reply
from singlewindow.transport.backend import XSINCE, recipient
from singlewindow.transport.forward import stuffed
from singlewindow.transport.translate import Copy

log = logging.getLogger("sw-transport")

#: Seconds to connect and for each reply before the end of DATA.
CONNECT_TIMEOUT = 30.0
#: Seconds beyond ``[maildrop] lock_wait`` the edge waits for the answer to the end of
#: DATA: dovecot-lda's own time (its time-out is 60 s) and the network's.
REPLY_MARGIN = 90.0


class HopError(Exception):
    """The backend could not be reached, or refused the session (TLS, 554, …)."""


def client_context(config: Config) -> ssl.SSLContext:
    """TLS towards the backend: its certificate must chain to ``[tls] ca_file`` and name
    the host in ``[maildrop] backend``; TLS 1.2 at least."""
    context = ssl.create_default_context(cafile=str(config.ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def connect(config: Config, timeout: float = CONNECT_TIMEOUT) -> smtplib.LMTP:
    """An LMTP session with the backend, inside verified TLS, after the second LHLO."""
    host, port = config.maildrop.backend_address
    # Connects, and raises SMTPConnectError unless greeted 220 (a refused edge: 554).
    client = smtplib.LMTP(host, port, local_hostname=config.hub.hostname, timeout=timeout)
    try:
        if client.sock is not None:
            # The end of DATA goes out as written, not held back for the ACK of the data
            # (Nagle against the server's delayed ACK: 40 ms a delivery).
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.ehlo()
        if not client.has_extn("starttls"):
            raise HopError("the backend offers no STARTTLS")
        # smtplib verifies the certificate against the name it connected to (host).
        client.starttls(context=client_context(config))
        client.ehlo()
    except BaseException:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            client.close()
        raise
    return client


def _pieces(data: bytes | Copy) -> Iterator[bytes]:
    if isinstance(data, bytes):
        yield data
    else:
        yield from data.chunks()


class Hop:
    """Delivers into maildrops on the backend (see the module docstring)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.where = config.maildrop.backend

    def deliver(self, login: str, mail_from: str, data: bytes | Copy, *,
                since: float | None = None, deadline: float | None = None) -> Reply:
        """Hand ``data`` for ``login``'s maildrop to the backend. ``since``: the claim's
        first attempt began then (a retry: the backend looks for a saved copy first);
        ``deadline`` (``time.monotonic()``): the end of DATA is not sent after it."""
        try:
            client = connect(self.config)
        except (OSError, smtplib.SMTPException, ssl.SSLError, HopError) as exc:
            log.error("maildrop backend %s: no session for %s: %s", self.where, login,
                      _why(exc))
            return replies.MAILDROP_HOP_FAILED
        try:
            return self._transaction(client, login, mail_from, data, since, deadline)
        except (OSError, smtplib.SMTPException, HopError) as exc:
            log.error("maildrop backend %s: delivery for %s failed: %s", self.where, login,
                      _why(exc))
            return replies.MAILDROP_HOP_FAILED
        finally:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.close()

    def _transaction(self, client: smtplib.LMTP, login: str, mail_from: str,
                     data: bytes | Copy, since: float | None, deadline: float | None
                     ) -> Reply:
        options = []
        if client.has_extn("size"):
            options.append(f"SIZE={len(data) if isinstance(data, bytes) else data.size}")
        if since is not None:
            if not client.has_extn(XSINCE.lower()):
                # Sending again without it could save the copy twice.
                raise HopError("the backend offers no XSINCE for a retried delivery")
            options.append(f"{XSINCE}={int(since)}")
        _expect("MAIL", client.mail(mail_from, options), 250)
        _expect("RCPT", client.rcpt(recipient(login)), 250)
        client.putcmd("data")
        _expect("DATA", client.getreply(), 354)
        last = b""
        for piece in stuffed(_pieces(data)):
            client.send(piece)
            last = piece[-2:] if len(piece) >= 2 else last[-1:] + piece
        end = b".\r\n" if last == b"\r\n" else b"\r\n.\r\n"
        if deadline is not None and time.monotonic() > deadline:
            # Inside DATA only closing the connection ends the transaction: nothing saved.
            raise HopError("the copy's claim ran out before the end of DATA; dropped")
        client.send(end)
        if client.sock is not None:
            client.sock.settimeout(self.config.maildrop.lock_wait + REPLY_MARGIN)
        code, text = client.getreply()
        with contextlib.suppress(OSError, smtplib.SMTPException):
            client.quit()
        return _reply(login, code, text, self.where)


def _expect(stage: str, reply: tuple[int, bytes], code: int) -> None:
    if reply[0] != code:
        raise HopError(f"{stage}: {reply[0]} {reply[1].decode('utf-8', 'replace')}")


def _reply(login: str, code: int, text: bytes, where: str) -> Reply:
    """The backend's answer to the end of DATA as the router takes it."""
    shown = text.decode("utf-8", "replace")
    enhanced, _, sentence = shown.partition(" ")
    if code == 250:
        if sentence == replies.MAILDROP_SAVED_BEFORE.text:
            return replies.MAILDROP_SAVED_BEFORE
        return replies.DELIVERED.with_text("Delivered to the maildrop")
    if 400 <= code < 500 and enhanced == "4.2.1":
        return replies.MAILDROP_LOCKED
    log.error("maildrop backend %s: delivery for %s answered %d %s", where, login, code,
              shown)
    return replies.MAILDROP_HOP_FAILED


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}"
