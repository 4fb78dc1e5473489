"""The maildrop hop's wire (issue 15): who may talk to sw-maildrop, TLS before MAIL, and
an edge that trusts only the deployment's CA and the backend's name. The backend runs
as its own process; its dovecot-lda is a stand-in that records what it was given (the
integration test ``test_maildrop_hop`` delivers with the real one into real maildrops)."""

from __future__ import annotations

import shutil
import smtplib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from singlewindow import health, replies
from singlewindow.config import Config, Maildrop, Paths, Tls, Transport
from singlewindow.transport import backend, hop
from tests.support.local import free_port, scratch_state_dir, short_state_dir
from tests.support.maildrop import Certificates, certificates
from tests.support.maildrop import backend as running_backend

MESSAGE = (b"From: <a@sw.test>\r\nTo: <b@sw.test>\r\nSubject: hop\r\n"
           b"Message-ID: <hop-unit@sw.test>\r\n\r\n.leading dot\r\nbody\r\n")


@pytest.fixture(scope="module")
def certs() -> Iterator[Certificates]:
    state = short_state_dir()
    try:
        yield certificates(state / "tls")
    finally:
        shutil.rmtree(state, ignore_errors=True)


def config_for(state: Path, certs: Certificates, port: int, *, rogue: bool = False,
               listen: str = "127.0.0.1") -> Config:
    """A backend's config with a stand-in dovecot-lda that saves what it gets."""
    saved = state / "saved"
    saved.mkdir(exist_ok=True)
    (state / "maildrops").mkdir(exist_ok=True)
    lda = state / "lda"
    lda.write_text(f"#!/bin/sh\ncat > '{saved}'/$$.eml\n")
    lda.chmod(0o755)
    return Config(
        paths=Paths(state_dir=state),
        tls=Tls(cert_file=certs.rogue_cert if rogue else certs.cert,
                key_file=certs.rogue_key if rogue else certs.key, ca_file=certs.ca),
        transport=Transport(dovecot_lda=lda),
        maildrop=Maildrop(listen=f"{listen}:{port}", clients=("127.0.0.1",), lock_wait=2.0))


@pytest.fixture
def state() -> Iterator[Path]:
    with scratch_state_dir() as path:
        yield path


def saved(state: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((state / "saved").iterdir())]


def edge(certs: Certificates, backend_at: str) -> Config:
    return Config(tls=Tls(ca_file=certs.ca), maildrop=Maildrop(backend=backend_at))


def test_delivery_over_the_hop_reaches_dovecot_lda_whole(state: Path,
                                                         certs: Certificates) -> None:
    port = free_port()
    with running_backend(config_for(state, certs, port), state):
        reply = hop.Hop(edge(certs, f"localhost:{port}")).deliver(
            "clerk", "a@sw.test", MESSAGE)
    assert reply.code == 250
    assert saved(state) == [MESSAGE]  # dot-stuffing undone, nothing added
    line = next(ln for ln in (state / "sw-maildrop.log").read_text().splitlines()
                if "event=maildrop" in ln)
    assert "action=deliver" in line and "login=clerk" in line
    assert "<hop-unit@sw.test>" in line and "leading dot" not in line


def test_lhlo_offers_starttls_and_xsince_and_mail_needs_tls(state: Path,
                                                            certs: Certificates) -> None:
    port = free_port()
    with running_backend(config_for(state, certs, port), state), \
            smtplib.LMTP("127.0.0.1", port, timeout=10) as client:
        code, _ = client.ehlo()
        assert code == 250
        assert client.has_extn("starttls") and client.has_extn("xsince")
        code, text = client.mail("a@sw.test")
        assert (code, text.decode()) == (530, "5.7.0 Must issue a STARTTLS command first")
        assert client.rcpt(backend.recipient("clerk"))[0] == 503
        client.starttls(context=hop.client_context(edge(certs, f"localhost:{port}")))
        client.ehlo()
        assert client.mail("a@sw.test", ["XSINCE=yesterday"])[0] == 501
        assert client.mail("a@sw.test", ["XSINCE=1764489600"])[0] == 250
        assert client.rcpt("clerk@sw.test") == (550, b"5.1.1 No such maildrop")
        assert client.rcpt("../etc@maildrop")[0] == 550
        assert client.rcpt(backend.recipient("clerk"))[0] == 250
    assert saved(state) == []


def test_an_address_not_in_clients_is_refused_554_and_closed(state: Path,
                                                             certs: Certificates) -> None:
    port = free_port()
    config = config_for(state, certs, port, listen="0.0.0.0")
    with running_backend(config, state), \
            smtplib.LMTP(timeout=10, source_address=("127.0.0.3", 0)) as client:
        code, text = client.connect("127.0.0.1", port)
        assert (code, text.decode()) == (554, "5.7.1 " + replies.MAILDROP_CLIENT_REFUSED.text)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.ehlo()
    assert "refused a connection from 127.0.0.3" in (state / "sw-maildrop.log").read_text()
    # An edge whose address is not listed defers, naming no host.
    config = replace(config, maildrop=replace(config.maildrop, clients=("127.0.0.9",)))
    with running_backend(config, state):
        reply = hop.Hop(edge(certs, f"localhost:{port}")).deliver("clerk", "a@sw.test",
                                                                  MESSAGE)
    assert reply == replies.MAILDROP_HOP_FAILED
    assert "localhost" not in reply.line() and str(port) not in reply.line()
    assert saved(state) == []


@pytest.mark.parametrize("case", ["not-our-ca", "another-name"])
def test_the_edge_refuses_a_backend_it_cannot_verify(state: Path, certs: Certificates,
                                                     case: str) -> None:
    """A certificate no trusted CA issued, or one for another name than the edge
    connects to: no session, the delivery defers, nothing reaches dovecot-lda."""
    port = free_port()
    rogue = case == "not-our-ca"
    # 127.0.0.2 is not among the certificate's names (localhost, 127.0.0.1).
    target = f"localhost:{port}" if rogue else f"127.0.0.2:{port}"
    config = config_for(state, certs, port, rogue=rogue, listen="0.0.0.0")
    config = replace(config, maildrop=replace(config.maildrop,
                                              clients=("127.0.0.1", "127.0.0.2")))
    with running_backend(config, state):
        reply = hop.Hop(edge(certs, target)).deliver("clerk", "a@sw.test", MESSAGE)
        with pytest.raises(ssl.SSLCertVerificationError):
            hop.connect(edge(certs, target)).close()
    assert reply == replies.MAILDROP_HOP_FAILED
    assert saved(state) == []


def test_swctl_health_on_an_edge_probes_the_backend_with_verified_tls(
        state: Path, certs: Certificates) -> None:
    port = free_port()
    with running_backend(config_for(state, certs, port, listen="0.0.0.0"), state):
        assert health.maildrop(edge(certs, f"localhost:{port}")) == []
        (problem,) = health.maildrop(edge(certs, f"127.0.0.2:{port}"))
    assert problem.severity == health.CRITICAL and problem.component == "maildrop"
    assert problem.text.startswith(f"the maildrop backend 127.0.0.2:{port}: TLS: ")
    assert "CERTIFICATE_VERIFY_FAILED" in problem.text


def test_no_backend_listening_defers_naming_no_host(caplog: pytest.LogCaptureFixture,
                                                    certs: Certificates) -> None:
    port = free_port()  # nothing listens there
    reply = hop.Hop(edge(certs, f"localhost:{port}")).deliver("clerk", "a@sw.test", MESSAGE)
    assert reply == replies.MAILDROP_HOP_FAILED and reply.transient
    assert reply.line() == "451 4.4.1 The maildrop backend did not take the message, will retry"
    assert f"maildrop backend localhost:{port}: no session for clerk" in caplog.text


def test_ready_and_watchdog_through_notify_socket(state: Path, certs: Certificates) -> None:
    """As the other daemons (systemd's Type=notify and WatchdogSec=): READY=1 once it
    listens, WATCHDOG=1 every half of WATCHDOG_USEC, STOPPING=1 on SIGTERM."""
    path = state / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(path))
        notify.settimeout(10)
        port = free_port()
        with running_backend(config_for(state, certs, port), state,
                             env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}):
            said = [notify.recv(64) for _ in range(3)]
        assert said == [b"READY=1", b"WATCHDOG=1", b"WATCHDOG=1"]
        while (last := notify.recv(64)) == b"WATCHDOG=1":
            continue
        assert last == b"STOPPING=1"
