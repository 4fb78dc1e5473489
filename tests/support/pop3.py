"""POP3 clients that connect from a chosen loopback address (a party behind its tunnel), and
sessions of a party on the running stack's Dovecot."""

from __future__ import annotations

import poplib
import socket
import ssl

from singlewindow.config import Config
from tests.support.clients import tls_context
from tests.support.world import Party

# Dovecot counts a connection from its own address as secured (no TLS needed), so a
# client plays a company from another loopback address, as it would come over its tunnel.
REMOTE = "127.0.0.2"


class POP3From(poplib.POP3):
    """poplib.POP3 with a chosen source address (poplib has no such argument)."""

    def __init__(self, host: str, port: int, source: str, timeout: float = 10) -> None:
        self.source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))


class POP3SFrom(POP3From):
    """POP3S (implicit TLS) from a chosen source address."""

    def __init__(self, host: str, port: int, source: str, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(host, port, source)

    def _create_socket(self, timeout: float) -> socket.socket:
        raw = super()._create_socket(timeout)
        return self.context.wrap_socket(raw, server_hostname=None)


def pop3(config: Config, source: str = REMOTE) -> POP3From:
    return POP3From(config.listeners.bind, config.listeners.pop3_port, source)


def logged_in(config: Config, client: Party) -> POP3From:
    """A party's session in the TRANSACTION state (after STLS, USER and PASS)."""
    # Dovecot waits up to 10 s for a held session lock before it answers [IN-USE].
    session = POP3From(config.listeners.bind, config.listeners.pop3_port, REMOTE, timeout=30)
    session.stls(tls_context(config))
    session.user(client.login)
    session.pass_(client.password)
    return session


def pop3s(config: Config, source: str = REMOTE) -> POP3SFrom:
    return POP3SFrom(config.listeners.bind, config.listeners.pop3s_port, source,
                     tls_context(config))


def maildrop_messages(config: Config, client: Party) -> list[bytes]:
    session = logged_in(config, client)
    try:
        count, _ = session.stat()
        return [b"\r\n".join(session.retr(i + 1)[1]) for i in range(count)]
    finally:
        session.quit()
