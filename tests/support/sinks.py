"""Local SMTP sinks that play a company's or an agency's own MTA, and what they received."""

from __future__ import annotations

import email
import email.message
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    rcpt_options: list[str]
    mail_options: list[str]
    data: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


@dataclass
class Sink:
    """An SMTP server on host:port (127.0.0.1 unless told) that stores every message (or
    refuses RCPT)."""

    port: int
    received: list[Received] = field(default_factory=list)
    refuse_rcpt: str | None = None  # e.g. "550 5.1.1 no such user"
    lock: threading.Lock = field(default_factory=threading.Lock)
    controller: Controller | None = None
    host: str = "127.0.0.1"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.received.append(Received(
                envelope.mail_from or "", list(envelope.rcpt_tos),
                list(envelope.rcpt_options), list(envelope.mail_options),
                envelope.original_content or b""))
        return "250 OK stored"

    def start(self) -> Sink:
        self.controller = Controller(self, hostname=self.host, port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 60.0,
                 count: int = 1) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [r for r in self.received if predicate(r)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


def dsn_about(received: Received, subject: str) -> bool:
    """Is this a DSN whose returned headers carry ``subject``?"""
    if received.mail_from not in ("", "<>"):
        return False
    if received.message.get_content_type() != "multipart/report":
        return False
    return f"Subject: {subject}".encode() in received.data


def delivery_status(received: Received) -> list[dict[str, str]]:
    """The per-recipient fields of a DSN's message/delivery-status part (RFC 3464)."""
    for part in received.message.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            assert isinstance(blocks, list)
            return [{k.lower(): str(v) for k, v in block.items()} for block in blocks[1:]]
    return []
