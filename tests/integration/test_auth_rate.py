"""I2 against a password guesser and a connection flood: Postfix's per-client limits on the
MSA (``[listeners] msa_auth_rate_limit``, ``msa_connection_rate_limit``; small in the test
stack, see tests/conftest.py), on the real Postfix and Dovecot.

Each test comes from a loopback address of its own: the limits count per client address
for a minute, and 127.0.0.1 (the node itself) is exempt.
"""

from __future__ import annotations

import smtplib

import pytest

from singlewindow.config import Config
from tests.support.clients import MailClient, tls_context

GUESSER = "127.0.0.11"
NEIGHBOUR = "127.0.0.12"
FLOODER = "127.0.0.13"


def msa(config: Config, source: str) -> smtplib.SMTP_SSL:
    client = smtplib.SMTP_SSL(config.listeners.bind, config.listeners.msa_port, timeout=30,
                              context=tls_context(config), source_address=(source, 0))
    client.ehlo("clerk.example")
    return client


def auth_plain(config: Config, source: str, login: str, password: str) -> tuple[int, bytes]:
    """One AUTH PLAIN in a session of its own, as a guessing script would send it."""
    with msa(config, source) as client:
        client.user, client.password = login, password
        try:
            return client.auth("PLAIN", client.auth_plain)
        except smtplib.SMTPAuthenticationError as refused:
            return refused.smtp_code, refused.smtp_error


def test_password_guesser_is_cut_off_after_the_limit(sw_stack: Config,
                                                     mail_client: MailClient) -> None:
    """Wrong passwords from one address: each is refused until the per-minute
    limit, then Postfix refuses AUTH outright (450 4.7.1) without asking Dovecot, so even
    the right password gets nowhere from that address, while another address logs in."""
    limit = sw_stack.listeners.msa_auth_rate_limit
    assert 0 < limit <= 5, "the test stack keeps the limit small"
    answers = [auth_plain(sw_stack, GUESSER, mail_client.login, f"guess-{i}")
               for i in range(limit)]
    # 535; or 454 once Dovecot's own penalty for failed logins from the address delays
    # its answer past Postfix's patience. Neither lets the guesser in.
    assert all(code in (535, 454) for code, _ in answers), answers

    code, text = auth_plain(sw_stack, GUESSER, mail_client.login, "guess-again")
    assert code == 450, (code, text)
    assert text.startswith(b"4.7.1") and b"too many AUTH commands" in text, text
    code, text = auth_plain(sw_stack, GUESSER, mail_client.login, mail_client.password)
    assert code == 450, "the right password must not be checked once the limit is hit"

    assert auth_plain(sw_stack, NEIGHBOUR, mail_client.login,
                      mail_client.password)[0] == 235


def test_connection_flood_is_refused_after_the_limit(sw_stack: Config) -> None:
    """One address opening session after session: past the per-minute limit Postfix
    greets with 421 4.7.0 and closes, before any TLS work for a message is done."""
    limit = sw_stack.listeners.msa_connection_rate_limit
    assert 0 < limit <= 20, "the test stack keeps the limit small"
    for _ in range(limit):
        with msa(sw_stack, FLOODER) as client:
            assert client.noop()[0] == 250
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        msa(sw_stack, FLOODER)
    assert refused.value.smtp_code == 421
    assert b"4.7.0" in refused.value.smtp_error
    assert b"too many connections" in refused.value.smtp_error
