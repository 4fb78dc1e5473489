"""The running stack: Postfix, Dovecot and the daemons each log in to PostgreSQL as their
own role, and nothing of the mail flow as the owner of the schema (issue 12)."""

from __future__ import annotations

import smtplib

from singlewindow.config import (
    DAEMON_ROLE,
    DOVECOT_ROLE,
    OWNER_ROLE,
    POSTFIX_ROLE,
    Config,
)
from singlewindow.store import connect
from tests.support.clients import ACME_PEER, MailClient
from tests.support.pop3 import pop3s


def test_each_server_logs_in_as_its_own_role(sw_stack: Config, mail_client: MailClient) -> None:
    # Dovecot checks a POP3 password (passdb) and opens the maildrop (userdb).
    client = pop3s(sw_stack)
    client.user(mail_client.login)
    client.pass_(mail_client.password)
    client.stat()
    client.quit()
    # Postfix looks the recipient up (relay_recipient_maps, a file generated from the
    # directory), the policy daemon decides.
    domain = sw_stack.hub.domain
    with smtplib.SMTP(sw_stack.listeners.bind, sw_stack.listeners.mta_port,
                      source_address=(ACME_PEER, 0), timeout=30) as smtp:
        smtp.ehlo("mx.acme.example")
        smtp.mail("edi@acme.example")
        code, reply = smtp.rcpt(f"customs@{domain}")
        assert code == 250, reply
        smtp.rset()
    with connect(sw_stack.database, role=OWNER_ROLE) as conn:
        rows = conn.execute(
            "SELECT usename, count(*) AS n FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " GROUP BY usename").fetchall()
    logged_in = {r["usename"]: r["n"] for r in rows}
    # Each keeps its connections open (Dovecot's auth, the daemons' directory listeners
    # and pools). Postfix reads no table of the database any more (issue 13).
    assert {DOVECOT_ROLE, DAEMON_ROLE} <= set(logged_in), logged_in
    assert POSTFIX_ROLE not in logged_in, logged_in
    assert OWNER_ROLE not in logged_in, logged_in
