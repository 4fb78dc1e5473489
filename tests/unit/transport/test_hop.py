"""The edge's end of the maildrop hop (:class:`hop.Hop`) against a stand-in backend: an
LMTP server in a thread of this test, with STARTTLS on the test CA's certificate, that
answers as it is told. The real backend against this client: ``test_backend.py``."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from singlewindow import replies
from singlewindow.config import Config, Maildrop, Tls
from singlewindow.transport import hop
from singlewindow.transport.backend import XSINCE, recipient
from tests.support.local import scratch_state_dir
from tests.support.maildrop import Certificates, certificates

MESSAGE = b"Subject: hop\r\n\r\n.a line with a leading dot\r\nbody\r\n"


@pytest.fixture(scope="module")
def certs() -> Iterator[Certificates]:
    with scratch_state_dir() as state:
        yield certificates(state / "tls")


@dataclass
class Backend:
    """One LMTP session at a time on 127.0.0.1: what it offers, how it answers the end
    of DATA, and what it was sent."""
    certs: Certificates
    starttls: bool = True
    xsince: bool = True
    final: bytes = b"250 2.0.0 Saved"
    commands: list[str] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        with self.listener:
            while True:
                try:
                    conn, _ = self.listener.accept()
                except OSError:
                    return
                with conn:
                    self.session(conn)

    def session(self, conn: socket.socket) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certs.cert, self.certs.key)
        sock: socket.socket = conn
        reader = sock.makefile("rb")
        sock.sendall(b"220 backend LMTP\r\n")
        tls = False
        while raw := reader.readline():
            line = raw.decode().rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            self.commands.append(verb + line[len(verb):])  # smtplib writes "mail FROM:"
            if verb == "LHLO":
                offered = ["backend", "PIPELINING", "SIZE 10000000"]
                offered += ["STARTTLS"] if self.starttls and not tls else []
                offered += [XSINCE] if self.xsince else []
                sock.sendall("".join(f"250{'-' if n < len(offered) - 1 else ' '}{o}\r\n"
                                     for n, o in enumerate(offered)).encode())
            elif verb == "STARTTLS":
                sock.sendall(b"220 2.0.0 Ready to start TLS\r\n")
                # The reader of the plain socket holds nothing more: LHLO was answered.
                sock = context.wrap_socket(conn, server_side=True)
                reader, tls = sock.makefile("rb"), True
            elif verb in ("MAIL", "RCPT"):
                sock.sendall(b"250 2.1.0 Ok\r\n")
            elif verb == "DATA":
                sock.sendall(b"354 Go ahead\r\n")
                body = b""
                while (chunk := reader.readline()) != b".\r\n":
                    if not chunk:
                        return  # closed inside DATA: nothing saved
                    body += chunk
                self.data.append(body)
                sock.sendall(self.final + b"\r\n")
            elif verb == "QUIT":
                sock.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                sock.sendall(b"502 5.5.2 What\r\n")

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def backend(certs: Certificates) -> Iterator[Backend]:
    server = Backend(certs)
    yield server
    server.close()


def edge(certs: Certificates, port: int) -> Config:
    return Config(tls=Tls(ca_file=certs.ca), maildrop=Maildrop(backend=f"localhost:{port}"))


def test_one_transaction_inside_verified_tls(backend: Backend, certs: Certificates) -> None:
    reply = hop.Hop(edge(certs, backend.port)).deliver("clerk", "a@sw.test", MESSAGE)
    assert reply == replies.DELIVERED.with_text("Delivered to the maildrop")
    verbs = [c.split(" ", 1)[0].upper() for c in backend.commands]
    assert verbs == ["LHLO", "STARTTLS", "LHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert backend.commands[3] == f"MAIL FROM:<a@sw.test> SIZE={len(MESSAGE)}"
    assert backend.commands[4] == f"RCPT TO:<{recipient('clerk')}>"
    # Dot-stuffed on the wire (RFC 5321 4.5.2), nothing else changed.
    assert backend.data == [MESSAGE.replace(b"\r\n.a line", b"\r\n..a line")]


def test_a_message_without_a_final_line_break_still_ends_data(backend: Backend,
                                                              certs: Certificates) -> None:
    reply = hop.Hop(edge(certs, backend.port)).deliver("clerk", "", b"Subject: x\r\n\r\nno end")
    assert reply.code == 250
    assert backend.data == [b"Subject: x\r\n\r\nno end\r\n"]
    assert backend.commands[3].startswith("MAIL FROM:<> ")


def test_a_retry_asks_the_backend_to_look_for_a_saved_copy(backend: Backend,
                                                           certs: Certificates) -> None:
    backend.final = f"250 2.0.0 {replies.MAILDROP_SAVED_BEFORE.text}".encode()
    reply = hop.Hop(edge(certs, backend.port)).deliver("clerk", "a@sw.test", MESSAGE,
                                                       since=1764489600.75)
    assert reply == replies.MAILDROP_SAVED_BEFORE
    assert backend.commands[3].endswith(f" {XSINCE}=1764489600")


def test_a_retry_is_not_sent_to_a_backend_without_xsince(backend: Backend,
                                                         certs: Certificates) -> None:
    backend.xsince = False
    reply = hop.Hop(edge(certs, backend.port)).deliver("clerk", "a@sw.test", MESSAGE,
                                                       since=time.time())
    assert reply == replies.MAILDROP_HOP_FAILED
    assert not any(c.startswith("MAIL") for c in backend.commands) and backend.data == []


@pytest.mark.parametrize(("final", "expected"), [
    (b"451 4.2.1 Maildrop is in use", replies.MAILDROP_LOCKED),
    (b"450 4.2.1 Locked", replies.MAILDROP_LOCKED),
    (b"451 4.3.0 dovecot-lda failed", replies.MAILDROP_HOP_FAILED),
    (b"550 5.1.1 No such maildrop", replies.MAILDROP_HOP_FAILED),
    (b"250 2.0.0 Saved", replies.DELIVERED.with_text("Delivered to the maildrop")),
])
def test_the_answer_to_the_end_of_data_as_the_router_takes_it(
        backend: Backend, certs: Certificates, final: bytes, expected: replies.Reply) -> None:
    backend.final = final
    assert hop.Hop(edge(certs, backend.port)).deliver("clerk", "a@sw.test", MESSAGE) == \
        expected


def test_a_backend_without_starttls_gets_nothing(backend: Backend, certs: Certificates,
                                                caplog: pytest.LogCaptureFixture) -> None:
    backend.starttls = False
    with pytest.raises(hop.HopError, match="offers no STARTTLS"):
        hop.connect(edge(certs, backend.port))
    reply = hop.Hop(edge(certs, backend.port)).deliver("clerk", "a@sw.test", MESSAGE)
    assert reply == replies.MAILDROP_HOP_FAILED
    assert backend.data == [] and not any(c.startswith("MAIL") for c in backend.commands)
    assert f"maildrop backend localhost:{backend.port}: no session for clerk" in caplog.text


def test_past_the_deadline_the_end_of_data_is_not_sent(backend: Backend,
                                                       certs: Certificates) -> None:
    reply = hop.Hop(edge(certs, backend.port)).deliver("clerk", "a@sw.test", MESSAGE,
                                                       deadline=time.monotonic() - 1)
    assert reply == replies.MAILDROP_HOP_FAILED
    backend.thread.join(0.5)
    assert backend.data == []  # the connection closed inside DATA: nothing saved


def test_the_client_context_wants_tls_1_2_and_the_deployment_ca(certs: Certificates) -> None:
    context = hop.client_context(edge(certs, 1))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test hop CA"),),)]
