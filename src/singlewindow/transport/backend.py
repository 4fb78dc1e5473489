"""The maildrop service of a POP3 backend (``sw-maildrop``): the far end of the maildrop hop.

Where this sits (issue 15): in a multi-node hub the mail-client companies' POP3
maildrops live on one backend node, and the edges' routing transports, after the queue,
hand every maildrop delivery (a copy, a DSN, a notice for a company with ``--maildrop``)
to this service instead of running dovecot-lda themselves (:mod:`.hop` is their client).
It delivers exactly as a single node's transport does: :func:`.maildrop.deliver`, the POP3
session lock by Dovecot's own rules, then dovecot-lda with the node's Dovecot
configuration. It needs no database.

**Why LMTP, and why not Dovecot's own LMTP server.** LMTP (RFC 2033) is the standard hop
for handing mail to a final delivery agent: one status per recipient after DATA, and no
queue of its own, so a message is either saved or the edge still holds it (Postfix's
queue keeps it). Dovecot ships an LMTP server, but its deliveries ignore
``pop3_lock_session`` exactly as dovecot-lda's do (see :mod:`.maildrop`): a copy would be
written into a maildrop while a POP3 session holds it, which SPEC R3.2 forbids. So this
service speaks LMTP and takes the session lock itself before it runs dovecot-lda; the
codec and the one-reply-per-recipient engine are the transport's own
(:mod:`.lmtp`), over TCP here.

**The wire.** The service listens on ``[maildrop] listen`` (the backend's address, port
24). A connection from an address not in ``[maildrop] clients`` (the edges) gets
``554 5.7.1`` instead of a greeting and is closed. LHLO offers STARTTLS, and MAIL before
it is refused ``530 5.7.0``; the certificate is ``[tls] cert_file``, TLS 1.2 at least;
the edges verify it against the deployment's CA and the name they connect to. One
recipient per maildrop: ``RCPT TO:<LOGIN@maildrop>``, the login of the account whose
maildrop it is at the fixed pseudo-domain ``maildrop`` (RFC 5321 wants a domain; the login
alone names the maildrop, :data:`RCPT_DOMAIN`); anything else is ``550 5.1.1`` at RCPT.

**A held maildrop waits here.** While a POP3 session holds the maildrop, the delivery is
held (the lock looked at every :data:`POLL` seconds) and saved as soon as the session
ends, within ``[maildrop] lock_wait`` seconds; past that the answer is ``451 4.2.1``
(the text of ``replies.MAILDROP_LOCKED``) and the edge defers, retrying on a timer.
One delivery per maildrop waits: another one for a maildrop that a delivery already
waits for is answered ``451 4.2.1`` at once. A waiting delivery keeps one of the edge
transport's worker threads and database connections busy, so a company that keeps its
session open while many copies arrive ties up one of them, not one per copy; the others
follow on the edge's timer (or Postfix's backoff) once the session has ended.

**Crash recovery without duplicates (SPEC D4).** The edge claims each copy before it
sends it; when an attempt was interrupted (the edge or this service died, the connection
broke after the end of DATA) the copy may be saved already, and only this node's
dovecot-lda log can tell. So LHLO offers the service extension ``XSINCE``, and on a
retried claim the edge adds ``XSINCE=<unix time>`` (when the claim's first attempt began)
to MAIL FROM. Then, holding the session lock, this service first looks for
dovecot-lda's ``msgid=<copy's Message-ID>: saved mail to`` in its log written since that
time (:func:`.evidence.maildrop_saved`, rotated logs included) and answers ``250`` without
saving when it is there. Under the lock, because an attempt still saving the same copy
holds that lock (the same process: deliveries serialise per maildrop) and has logged by
the time it lets go. A first attempt sends no XSINCE and costs no log read.

Each delivery is one decision line (``event=maildrop``: peer, login, Message-ID, size,
outcome, seconds waited); no message content, no credential. ``READY=1`` once it
listens and ``WATCHDOG=1`` from its event loop, as the other daemons.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import ssl
import time
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from singlewindow import daemon, logs, replies
from singlewindow.config import Config, ConfigError
from singlewindow.replies import Reply
from singlewindow.transport import evidence, maildrop, translate
from singlewindow.transport.lmtp import (
    LmtpHandler,
    PerRecipientLMTP,
    Transaction,
    reply_line,
    take_params,
)

log = logging.getLogger("sw-maildrop")

#: The pseudo-domain of a maildrop's recipient address: ``RCPT TO:<LOGIN@maildrop>``.
RCPT_DOMAIN = "maildrop"
#: A login as the store allows it (migration 0001's CHECK on account.login): no '@', no
#: '/', so it never names a path outside the maildrops.
_LOGIN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
#: The service extension for crash recovery, offered in LHLO and given at MAIL FROM.
XSINCE = "XSINCE"
_UNIX_TIME = re.compile(r"\d{1,12}(?:\.\d{1,6})?")
#: Seconds between two looks at a held maildrop's lock.
POLL = 0.2
#: Seconds an idle connection is kept (an edge opens one per delivery).
IDLE_TIMEOUT = 300.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def recipient(login: str) -> str:
    """The recipient address of ``login``'s maildrop on the hop."""
    return f"{login}@{RCPT_DOMAIN}"


def login_of(address: str) -> str | None:
    """The login a recipient address names, or None if it names no maildrop."""
    login, at, domain = address.strip("<>").rpartition("@")
    if not at or domain.lower() != RCPT_DOMAIN or not _LOGIN.fullmatch(login):
        return None
    return login


def since_of(options: tuple[str, ...] | list[str]) -> float | None:
    """The XSINCE time among MAIL FROM's parameters, or None."""
    for option in options:
        key, _, value = option.partition("=")
        if key.upper() == XSINCE:
            return float(value)
    return None


def address_of(peer: Any) -> IPAddress | None:
    """A connection's peer address (IPv4-mapped IPv6 as IPv4), None if it has none."""
    try:
        address = ipaddress.ip_address(peer[0].split("%", 1)[0])
    except (TypeError, IndexError, ValueError, AttributeError):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def clients(config: Config) -> frozenset[IPAddress]:
    return frozenset(ipaddress.ip_address(c) for c in config.maildrop.clients)


def server_context(config: Config) -> ssl.SSLContext:
    """The service's TLS: ``[tls] cert_file`` and ``key_file``, TLS 1.2 at least."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(config.cert_file), str(config.key_file))
    return context


class MaildropLMTP(PerRecipientLMTP):
    """The transport's LMTP engine with the hop's rules: only ``clients`` get a greeting,
    MAIL only inside TLS, and MAIL's ``XSINCE`` parameter kept in the transaction's
    ``mail_options``."""

    def __init__(self, handler: Any, *, clients: frozenset[IPAddress], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._clients = clients

    async def _handle_client(self) -> None:
        assert self.session is not None
        address = address_of(self.session.peer)
        if address is None or address not in self._clients:
            log.warning("refused a connection from %s: not in [maildrop] clients",
                        address or self.session.peer)
            await self.push(reply_line(replies.MAILDROP_CLIENT_REFUSED))
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    async def smtp_MAIL(self, arg: str | None) -> None:
        if self.session is None or self.session.ssl is None:
            await self.push(reply_line(replies.STARTTLS_FIRST))
            return
        parsed = take_params(arg or "", (XSINCE,))
        if parsed is None:
            await self.push("501 5.5.4 Syntax: XSINCE given twice")
            return
        rest, found = parsed
        since = found.get(XSINCE)
        if since is not None and not _UNIX_TIME.fullmatch(since):
            await self.push("501 5.5.4 Syntax: XSINCE=<unix time>")
            return
        await super().smtp_MAIL(rest if arg is not None else None)
        if since is not None and self.envelope is not None and \
                self.envelope.mail_from is not None:
            self.envelope.mail_options.append(f"{XSINCE}={since}")


class MaildropHandler(LmtpHandler):
    """LHLO with XSINCE (no DSN: the edge writes the DSNs), RCPT only for a maildrop."""

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], f"250-{XSINCE}", responses[-1]]

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if login_of(address) is None:
            return reply_line(replies.MAILDROP_NO_LOGIN)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"


class Deliverer:
    """The ``deliver`` callable: one maildrop delivery per recipient, waiting for a POP3
    session up to ``[maildrop] lock_wait``; see the module docstring."""

    def __init__(self, config: Config) -> None:
        self.config = config
        #: The Message-IDs being delivered now, each with the event its end sets.
        self._busy: dict[str, asyncio.Event] = {}
        #: The logins whose maildrop a delivery waits for (a POP3 session holds it).
        self._waiting: set[str] = set()

    async def __call__(self, mail_from: str, rcpt: str, raw: bytes,
                       transaction: Transaction) -> Reply:
        login = login_of(rcpt)
        if login is None:  # handle_RCPT let none through
            return replies.MAILDROP_NO_LOGIN
        fields, _ = translate.head(raw)
        message_id = translate.field_named(fields, "Message-ID")
        if not message_id:
            return await self.deliver(login, mail_from, raw, fields, None, transaction)
        # An edge that gave up waiting may send the same copy again (XSINCE) while the
        # first attempt still waits here for a POP3 session: the second goes after the
        # first has ended, and then finds its save in the log.
        while message_id in self._busy:
            await self._busy[message_id].wait()
        done = self._busy[message_id] = asyncio.Event()
        try:
            return await self.deliver(login, mail_from, raw, fields, message_id,
                                      transaction)
        finally:
            del self._busy[message_id]
            done.set()

    async def deliver(self, login: str, mail_from: str, raw: bytes,
                      fields: list[translate.Field], message_id: str | None,
                      transaction: Transaction) -> Reply:
        config = self.config
        since = since_of(transaction.mail_options)
        saved = None
        if since is not None:
            if message_id:
                saved = functools.partial(evidence.maildrop_saved, config.dovecot_log,
                                          message_id, since)
            else:
                log.warning("a retried delivery for %s has no Message-ID: its earlier "
                            "attempt cannot be looked up", login)
        lock = maildrop.lock_path(config.paths.maildrop_dir, login)
        started = time.monotonic()
        deadline = started + config.maildrop.lock_wait
        deliver = functools.partial(
            maildrop.deliver, config.transport.dovecot_lda, config.dovecot_config,
            config.paths.maildrop_dir, login, mail_from, raw, saved=saved)
        waiting = False
        try:
            while True:
                if maildrop.held(lock, ours=False):  # a POP3 session's
                    reply = replies.MAILDROP_LOCKED
                else:
                    reply = await asyncio.to_thread(deliver)
                if reply != replies.MAILDROP_LOCKED:
                    break
                if time.monotonic() >= deadline or \
                        (not waiting and login in self._waiting):
                    reply = replies.MAILDROP_BUSY
                    break
                if not waiting:
                    waiting = True
                    self._waiting.add(login)
                await asyncio.sleep(POLL)
        finally:
            if waiting:
                self._waiting.discard(login)
        action = ("duplicate" if reply == replies.MAILDROP_SAVED_BEFORE else
                  "deliver" if reply.code == 250 else "defer")
        logs.decision(log, "maildrop", sw_id=translate.field_named(
                          fields, "X-SingleWindow-Message"),
                      queue_id=None, level=logging.INFO if reply.code == 250 else
                      logging.WARNING, login=login, message_id=message_id,
                      size=len(raw), retry=since is not None, action=action,
                      waited=round(time.monotonic() - started, 1), reply=reply.line())
        return reply


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    """Serve the maildrop hop until SIGTERM."""
    try:
        host, port = config.maildrop.listen_address
        allowed = clients(config)
        context = server_context(config)
    except (ConfigError, ValueError, OSError, ssl.SSLError) as exc:
        raise SystemExit(f"configuration: {exc}") from None
    if not allowed:
        log.warning("[maildrop] clients is empty: every connection is refused")
    if not log.isEnabledFor(logging.DEBUG):
        # aiosmtpd logs every command at INFO; the decision line says what matters.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
    handler = MaildropHandler(Deliverer(config))
    loop = asyncio.get_running_loop()

    def protocol() -> MaildropLMTP:
        return MaildropLMTP(handler, clients=allowed, hostname=config.hub.hostname,
                            ident="Single Window maildrop LMTP", tls_context=context,
                            data_size_limit=config.transport.lmtp_size_limit,
                            timeout=IDLE_TIMEOUT, loop=loop)

    server = await loop.create_server(protocol, host, port)
    log.info("maildrop LMTP listening on %s for %s", config.maildrop.listen,
             " ".join(config.maildrop.clients) or "nobody")
    async with server:
        await daemon.serve_until_stopped(ready)


def main(argv: list[str] | None = None) -> None:
    daemon.run_asyncio("sw-maildrop", "Single Window maildrop service (LMTP, the maildrop "
                       "hop's backend)", serve, argv)


if __name__ == "__main__":
    main()
