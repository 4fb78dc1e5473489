"""I1, SMTP between MTAs on the real Postfix: the peer IP decides who you are."""

from __future__ import annotations

import smtplib

from singlewindow.config import Config
from tests.support.clients import ACME_PEER

CUSTOMS = "customs@sw.test"


def mta(config: Config, source: str = ACME_PEER) -> smtplib.SMTP:
    client = smtplib.SMTP(config.listeners.bind, config.listeners.mta_port, timeout=20,
                          source_address=(source, 0))
    client.ehlo("mta.acme.example")
    return client


def test_registered_peer_is_accepted_at_rcpt(sw_stack: Config) -> None:
    with mta(sw_stack) as client:
        assert client.mail("edi@acme.example")[0] == 250
        code, text = client.rcpt(CUSTOMS)
        assert code == 250, text
        client.rset()


def test_unregistered_peer_is_refused(sw_stack: Config) -> None:
    with mta(sw_stack, source="127.0.0.2") as client:
        client.mail("edi@acme.example")
        code, text = client.rcpt(CUSTOMS)
    assert code == 554
    assert text.startswith(b"5.7.1 ")
    assert b"not registered with Single Window" in text


def test_sender_of_another_party_is_refused(sw_stack: Config) -> None:
    with mta(sw_stack) as client:
        client.mail("declarations@customs.example")
        code, text = client.rcpt(CUSTOMS)
    assert (code, text[:6]) == (553, b"5.7.1 ")


def test_unknown_logical_recipient_is_refused(sw_stack: Config) -> None:
    with mta(sw_stack) as client:
        client.mail("edi@acme.example")
        code, text = client.rcpt("nobody@sw.test")
    assert (code, text[:6]) == (550, b"5.1.1 ")


def test_no_relay_to_other_domains(sw_stack: Config) -> None:
    with mta(sw_stack) as client:
        client.mail("edi@acme.example")
        code, text = client.rcpt("someone@example.org")
    assert (code, text[:6]) == (554, b"5.7.1 ")
    assert b"Relay access denied" in text


def test_no_auth_and_no_tls_offered(sw_stack: Config) -> None:
    with mta(sw_stack) as client:
        assert not client.has_extn("auth")
        assert not client.has_extn("starttls")
        code, _ = client.docmd("AUTH", "PLAIN AGJyaWdodGxpbmUAeA==")
    assert code in (502, 503)


def test_reinjection_listener_refuses_clients_without_the_transports_certificate(
        sw_stack: Config) -> None:
    """From any source, the hub's own 127.0.0.1 included (issue 12)."""
    for source in ("127.0.0.2", "127.0.0.1"):
        with smtplib.SMTP("127.0.0.1", sw_stack.listeners.reinject_port, timeout=20,
                          source_address=(source, 0)) as client:
            client.ehlo("x.example")
            assert client.mail("edi@acme.example")[0] == 530
            code, _ = client.rcpt("someone@example.org")
        assert code >= 500
