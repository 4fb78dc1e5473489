"""I2, submission with implicit TLS and SASL (DIGEST-MD5, PLAIN, LOGIN) on the real Postfix,
authenticated by the real Dovecot against the store."""

from __future__ import annotations

import smtplib

import pytest

from singlewindow.config import Config
from tests.support.clients import MailClient, msa, swaks

CUSTOMS = "customs@sw.test"


# Dovecot slows down every login from an address that failed recently (auth penalty), so
# wrong-password tests come from addresses of their own, as separate attackers would.
WRONG_SMTPLIB = {"PLAIN": "127.0.0.3", "LOGIN": "127.0.0.7"}
WRONG_SWAKS = "127.0.0.4"


def test_auth_mechanisms_offered(sw_stack: Config) -> None:
    with msa(sw_stack) as client:
        offered = set(client.esmtp_features["auth"].upper().split())
    assert {"DIGEST-MD5", "PLAIN", "LOGIN"} <= offered


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_plain_and_login(sw_stack: Config, mail_client: MailClient, mechanism: str) -> None:
    with msa(sw_stack) as client:
        client.user, client.password = mail_client.login, mail_client.password
        auth = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        code, _ = client.auth(mechanism, auth)
        assert code == 235


def test_auth_digest_md5_with_swaks(sw_stack: Config, mail_client: MailClient) -> None:
    result = swaks("--server", f"{sw_stack.listeners.bind}:{sw_stack.listeners.msa_port}",
                   "--tlsc", "--auth", "DIGEST-MD5", "--auth-user", mail_client.login,
                   "--from", mail_client.sender, "--to", CUSTOMS, "--quit-after", "RCPT",
                   password=mail_client.password)
    assert "235 2.7.0 Authentication successful" in result.stdout, result.stdout
    # The login reached the policy daemon as the bare login: its own sender is accepted.
    assert "250 2.1.5" in result.stdout, result.stdout


def test_auth_digest_md5_wrong_password(sw_stack: Config, mail_client: MailClient) -> None:
    result = swaks("--server", f"{sw_stack.listeners.bind}:{sw_stack.listeners.msa_port}",
                   "--tlsc", "--auth", "DIGEST-MD5", "--auth-user", mail_client.login,
                   "--quit-after", "AUTH", "--local-interface", WRONG_SWAKS,
                   password="wrong-password")
    assert "535 5.7.8" in result.stdout, result.stdout


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_wrong_password_fails(sw_stack: Config, mail_client: MailClient, mechanism: str) -> None:
    with msa(sw_stack, WRONG_SMTPLIB[mechanism]) as client:
        client.user, client.password = mail_client.login, "not-the-password"
        auth = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
            client.auth(mechanism, auth)
    assert failed.value.smtp_code == 535


def test_no_submission_without_login(sw_stack: Config) -> None:
    with msa(sw_stack) as client:
        client.mail("clerk@brightline.example")
        code, _ = client.rcpt(CUSTOMS)
    assert code == 554


def test_sender_must_be_the_logins_own(sw_stack: Config, mail_client: MailClient) -> None:
    with msa(sw_stack) as client:
        client.login(mail_client.login, mail_client.password)
        client.mail("edi@acme.example")
        code, text = client.rcpt(CUSTOMS)
    assert (code, text[:6]) == (553, b"5.7.1 ")


def test_second_message_within_a_minute_is_deferred(sw_stack: Config,
                                                   mail_client: MailClient) -> None:
    with msa(sw_stack) as client:
        client.login(mail_client.login, mail_client.password)
        client.mail(mail_client.sender)
        assert client.rcpt(CUSTOMS)[0] == 250
        # A second recipient of the same message does not count again.
        assert client.rcpt("coastguard@sw.test")[0] == 250
        code, _ = client.data(b"Subject: one\r\n\r\nfirst\r\n")
        assert code == 250
        client.mail(mail_client.sender)
        code, text = client.rcpt(CUSTOMS)
    assert (code, text[:6]) == (450, b"4.7.1 ")


def test_no_relay_for_authenticated_clients(sw_stack: Config, mail_client: MailClient) -> None:
    with msa(sw_stack) as client:
        client.login(mail_client.login, mail_client.password)
        client.mail(mail_client.sender)
        code, text = client.rcpt("someone@example.org")
    assert (code, text[:6]) == (554, b"5.7.1 ")


def test_no_plaintext_connection(sw_stack: Config) -> None:
    with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError, OSError)):
        client = smtplib.SMTP(sw_stack.listeners.bind, sw_stack.listeners.msa_port, timeout=2)
        client.ehlo()
