"""Helpers for tests against the running stack (real Postfix, Dovecot, PostgreSQL)."""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
from dataclasses import dataclass

import pytest

from singlewindow import passwords
from singlewindow.config import ADMIN_ROLE, Config
from singlewindow.store import connect, directory
from tests.support.world import client_password

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class MailClient:
    """A mail-client company (I2/I3) made for one test, so rate limits don't collide."""

    login: str
    password: str
    sender: str
    logical: str


def tls_context(config: Config) -> ssl.SSLContext:
    """Verify the stack's certificate against its CA: credentials only to the real server."""
    context = ssl.create_default_context(cafile=str(config.ca_file))
    context.check_hostname = False  # tests connect by IP; the chain is still verified
    return context


@pytest.fixture
def mail_client(sw_stack: Config) -> MailClient:
    name = "mc" + secrets.token_hex(4)
    password = client_password()
    domain = sw_stack.hub.domain
    with connect(sw_stack.database, autocommit=True, role=ADMIN_ROLE) as conn:
        directory.add_party(conn, name, "company", [], None)
        directory.add_account(conn, name, name, passwords.strong_hash(password),
                              passwords.digest_md5_hash(name, sw_stack.hub.sasl_realm, password))
        directory.add_address(conn, f"{name}@{domain}", name, f"clerk@{name}.example", name,
                              domain)
    return MailClient(name, password, f"clerk@{name}.example", f"{name}@{domain}")


def swaks(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run swaks (a real SMTP client with DIGEST-MD5, which smtplib lacks). The password
    goes through swaks' environment option, never the command line (ps shows argv)."""
    env = dict(os.environ)
    if password is not None:
        env["SWAKS_OPT_auth_password"] = password
    return subprocess.run(["swaks", "--timeout", "20", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
