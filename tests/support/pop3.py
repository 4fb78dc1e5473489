"""POP3 clients that connect from a chosen loopback address (a party behind its tunnel)."""

from __future__ import annotations

import poplib
import socket
import ssl


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
