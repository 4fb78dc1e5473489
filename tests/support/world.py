"""Parties made for one test module, each with its own peer address and SMTP sink."""

from __future__ import annotations

import contextlib
import os
import secrets
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from singlewindow import passwords, services, supervisor
from singlewindow.config import ADMIN_ROLE, Config
from singlewindow.store import connect, directory
from tests.support.local import free_port
from tests.support.sinks import Sink

_next_peer = iter(range(10, 250))


def client_password() -> str:
    """A mail client's password. Never one that starts with '-': swaks reads such a value
    of --auth-password (from its environment or configuration file too) as an option."""
    return "pw" + secrets.token_urlsafe(12)


@dataclass
class Party:
    name: str
    logical: str
    physical: str
    peer: str
    sink: Sink
    login: str = ""
    password: str = ""


@dataclass
class World:
    config: Config
    parties: dict[str, Party] = field(default_factory=dict)

    def add(self, role: str, kind: str, active: bool = True, relay_port: int | None = None,
            refuse: str | None = None) -> Party:
        """A party with its own peer address and, unless ``relay_port`` names a port where
        nothing listens, a sink as its MTA (``refuse``: the sink's RCPT reply)."""
        tag = secrets.token_hex(3)
        name = f"{role}-{tag}"
        peer = f"127.0.4.{next(_next_peer)}"
        sink = Sink(relay_port or free_port(), refuse_rcpt=refuse)
        if relay_port is None:
            sink.start()
        domain = self.config.hub.domain
        party = Party(name, f"{name}@{domain}", f"edi@{name}.example", peer, sink)
        with connect(self.config.database, autocommit=True, role=ADMIN_ROLE) as conn:
            directory.add_party(conn, name, kind, [f"{peer}/32"], f"127.0.0.1:{sink.port}")
            directory.add_address(conn, party.logical, name, party.physical, None, domain,
                                  active=active)
        self.parties[role] = party
        return party

    def add_mail_client(self, role: str) -> Party:
        """A company with a login and a POP3 maildrop instead of an MTA (I2/I3)."""
        name = f"{role}-{secrets.token_hex(3)}"
        password = client_password()
        domain = self.config.hub.domain
        party = Party(name, f"{name}@{domain}", f"clerk@{name}.example", "", Sink(0),
                      login=name, password=password)
        with connect(self.config.database, autocommit=True, role=ADMIN_ROLE) as conn:
            directory.add_party(conn, name, "company", [], None)
            directory.add_account(conn, name, name, passwords.strong_hash(password),
                                  passwords.digest_md5_hash(name, self.config.hub.sasl_realm,
                                                            password))
            directory.add_address(conn, party.logical, name, party.physical, name, domain)
        self.parties[role] = party
        return party

    def __getitem__(self, role: str) -> Party:
        return self.parties[role]

    def stop(self) -> None:
        for party in self.parties.values():
            party.sink.stop()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def submit(self, sender: Party, rcpts: list[str], data: bytes,
               rcpt_options: list[str] | None = None) -> dict[str, tuple[int, bytes]]:
        """Send as ``sender``'s MTA from its peer address; returns refused recipients."""
        with smtplib.SMTP(self.config.listeners.bind, self.config.listeners.mta_port,
                          timeout=30, source_address=(sender.peer, 0)) as smtp:
            refused: dict[str, tuple[int, bytes]] = smtp.sendmail(
                sender.physical, rcpts, data, rcpt_options=rcpt_options or [])
        return refused

    def flush(self) -> None:
        """Ask Postfix to retry deferred mail now (postqueue -f)."""
        subprocess.run(["postqueue", "-c", str(self.config.paths.state_dir / "postfix"), "-f"],
                       check=True, capture_output=True)


def world_fixture(*parties: tuple[str, str]) -> object:
    """A module-scoped ``world`` fixture holding ``parties``, each a (role, kind) given to
    :meth:`World.add`: ``world = world_fixture(("co", "company"), ("ag", "agency"))``."""

    @pytest.fixture(scope="module")
    def world(sw_stack: Config) -> Iterator[World]:
        with World(sw_stack) as world:
            for role, kind in parties:
                world.add(role, kind)
            yield world

    return world


def message(sender: Party, to: str, subject: str, body: bytes,
            headers: list[str] | None = None,
            content_type: str = "application/xml; charset=utf-8",
            cte: str | None = None) -> bytes:
    lines = [f"From: <{sender.physical}>", f"To: <{to}>", f"Subject: {subject}",
             f"Message-ID: <{secrets.token_hex(8)}@{sender.name}.example>",
             "Date: Sat, 28 Nov 2026 12:00:00 +0000", "MIME-Version: 1.0"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    if cte:
        lines.append(f"Content-Transfer-Encoding: {cte}")
    lines += headers or []
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def message_id(data: bytes) -> str:
    """The Message-ID :func:`message` gave ``data``."""
    return data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


@contextlib.contextmanager
def faulty_transport(config: Config, fault: str) -> Iterator[subprocess.Popen[bytes]]:
    """The stack's transport replaced by one that kills itself at ``fault`` (SPEC D4 crash
    tests, ``SW_TRANSPORT_FAULT``). The supervisor holds the normal transport meanwhile, so
    it does not start one beside the faulty one nor after its fault; on exit the faulty
    one is gone and the normal one is running again, its LMTP socket answering."""
    with replaced_transport(config, ["--state-dir", str(config.paths.state_dir)],
                            {"SW_TRANSPORT_FAULT": fault}, "transport-fault") as faulty:
        yield faulty


@contextlib.contextmanager
def replaced_transport(config: Config, args: list[str], env: dict[str, str], name: str
                       ) -> Iterator[subprocess.Popen[bytes]]:
    """The stack's transport held by the supervisor and replaced by one started with
    ``args`` and ``env`` (its output in ``DIR/log/NAME.log``) until the block ends."""
    socket_path = config.paths.lmtp_socket
    log_path = config.paths.log_dir / f"{name}.log"
    with supervisor.hold(config.paths.state_dir, "transport"):
        with log_path.open("ab") as log:
            replacement = subprocess.Popen(
                [sys.executable, "-m", "singlewindow.transport.server", *args],
                env={**os.environ, **env}, stdout=log, stderr=log)
        try:
            # The stopped transport's socket file is still there: wait for an answer.
            wait_until(lambda: replacement.poll() is not None or services.serving(socket_path))
            assert replacement.poll() is None, f"{name} exited: see {log_path}"
            yield replacement
        finally:
            if replacement.poll() is None:
                replacement.kill()
            replacement.wait()
