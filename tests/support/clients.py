"""Clients of the running stack (real Postfix and Dovecot): a mail-client company's
credentials, the TLS context that verifies the stack, swaks, an MSA session, and the
demo company's MTA address."""

from __future__ import annotations

import os
import smtplib
import ssl
import subprocess
from dataclasses import dataclass

from singlewindow.config import Config

#: The demo company acme's MTA (stack.DEMO_PARTIES): not the hub's own 127.0.0.1 (issue 12).
ACME_PEER = "127.0.2.1"


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


def swaks(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run swaks (a real SMTP client with DIGEST-MD5, which smtplib lacks). The password
    goes through swaks' environment option, never the command line (ps shows argv)."""
    env = dict(os.environ)
    if password is not None:
        env["SWAKS_OPT_auth_password"] = password
    return subprocess.run(["swaks", "--timeout", "20", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def msa(config: Config, source: str = "127.0.0.1") -> smtplib.SMTP_SSL:
    client = smtplib.SMTP_SSL(config.listeners.bind, config.listeners.msa_port, timeout=20,
                              context=tls_context(config), source_address=(source, 0))
    client.ehlo("clerk.example")
    return client
