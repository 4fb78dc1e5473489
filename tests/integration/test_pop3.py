"""I3, POP3 on the real Dovecot: STLS and POP3S, credentials only inside TLS."""

from __future__ import annotations

import poplib
import subprocess

import pytest

from singlewindow.config import Config
from tests.support.clients import MailClient, tls_context
from tests.support.pop3 import REMOTE, pop3, pop3s

# Dovecot slows down logins from an address that failed recently (auth penalty).
ATTACKER = "127.0.0.5"


def test_capa_before_login(sw_stack: Config) -> None:
    client = pop3(sw_stack)
    try:
        capa = client.capa()
    finally:
        client.quit()
    assert "STLS" in capa and "USER" not in capa  # USER only after STLS (R3.4)
    assert "UIDL" in capa


def test_user_pass_refused_before_stls(sw_stack: Config, mail_client: MailClient) -> None:
    client = pop3(sw_stack, ATTACKER)
    try:
        with pytest.raises(poplib.error_proto, match="Plaintext authentication disallowed"):
            client.user(mail_client.login)
    finally:
        client.quit()


def test_user_pass_after_stls(sw_stack: Config, mail_client: MailClient) -> None:
    client = pop3(sw_stack)
    client.stls(tls_context(sw_stack))
    assert "USER" in client.capa()
    client.user(mail_client.login)
    assert client.pass_(mail_client.password).startswith(b"+OK")
    assert client.stat() == (0, 0)
    client.quit()


def test_user_pass_over_pop3s(sw_stack: Config, mail_client: MailClient) -> None:
    client = pop3s(sw_stack)
    client.user(mail_client.login)
    assert client.pass_(mail_client.password).startswith(b"+OK")
    client.quit()


def test_wrong_password_over_pop3s(sw_stack: Config, mail_client: MailClient) -> None:
    client = pop3s(sw_stack, "127.0.0.6")
    client.user(mail_client.login)
    with pytest.raises(poplib.error_proto, match="-ERR"):
        client.pass_("not-the-password")
    client.quit()


def test_curl_pop3s_lists_maildrop(sw_stack: Config, mail_client: MailClient) -> None:
    # curl reads the password from a config on stdin: never on the command line.
    result = subprocess.run(
        ["curl", "-sS", "--cacert", str(sw_stack.cert_file), "--config", "-",
         "--interface", REMOTE,
         f"pop3s://127.0.0.1:{sw_stack.listeners.pop3s_port}/"],
        input=f'user = "{mail_client.login}:{mail_client.password}"\n',
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""  # empty maildrop: LIST returns no lines
