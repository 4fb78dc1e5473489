"""Fixtures for tests against the running stack (real Postfix, Dovecot, PostgreSQL); the
clients they use live in tests/support/clients.py."""

from __future__ import annotations

import secrets

import pytest

from singlewindow import passwords
from singlewindow.config import ADMIN_ROLE, Config
from singlewindow.store import connect, directory
from tests.support.clients import MailClient
from tests.support.world import client_password

pytestmark = pytest.mark.integration


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
