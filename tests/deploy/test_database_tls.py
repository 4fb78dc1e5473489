"""Between nodes the database's clients verify the server (issue 12: sslmode=verify-full),
against a real PostgreSQL with TLS on a test CA's certificate.

The server's pg_hba.conf is rendered from conf/postgresql (hostssl and SCRAM only), the
daemons' connection string by ``Database.dsn`` and Postfix's map by conf/postfix, as on a
multi-node hub. Written as a man in the middle would act: a certificate for another name
from the same CA, a certificate for the right name from another CA, and a client that
does not ask for TLS at all.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from singlewindow import render, stack
from singlewindow.config import DAEMON_ROLE, POSTFIX_ROLE, Database
from tests.support.local import free_port, short_state_dir
from tests.support.pki import issue, make_ca

NAME = "db.sw.test"  # the name the clients connect to; hostaddr says where it is
PASSWORD = "tls-test-only"


@dataclass
class Server:
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    def serve(self, cert: str, *, reload: bool = True) -> None:
        """Serve ``cert`` (and its key) from now on (PostgreSQL rereads them on reload)."""
        for ext in ("crt", "key"):
            target = self.data / f"server.{ext}"
            shutil.copy(self.root / "pki" / f"{cert}.{ext}", target)
            stack._chown(target, "postgres", 0o600)
        if reload:
            stack.run([stack.pg_bin("pg_ctl"), "-D", str(self.data), "reload"],
                      user="postgres", cwd=self.root)

    def psql(self, sql: str) -> None:
        stack.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.root),
                   "-p", str(self.port), "-U", "postgres", "-d", "singlewindow", "-c", sql],
                  user="postgres", cwd=self.root)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    root = short_state_dir()
    pki = root / "pki"
    pki.mkdir()
    for ca in ("ca", "rogue-ca"):
        make_ca(pki, ca)
    issue(pki, "ca", NAME, "good")
    issue(pki, "ca", "wrong.sw.test", "wrong-name")
    issue(pki, "rogue-ca", NAME, "rogue")
    stack._chown(root, "postgres", 0o755)
    server = Server(root, free_port())
    stack.run([stack.pg_bin("initdb"), "-D", str(server.data), "-U", "postgres",
               "--auth-local=peer", "--auth-host=reject", "--no-sync"],
              user="postgres", cwd=root)
    with (server.data / "postgresql.conf").open("a") as conf:
        conf.write(f"listen_addresses = '127.0.0.1'\nport = {server.port}\n"
                   f"unix_socket_directories = '{root}'\nssl = on\n"
                   "ssl_min_protocol_version = 'TLSv1.2'\n")
    # The database node's pg_hba.conf, from the template Ansible renders.
    hba = render.render("postgresql/pg_hba.conf.j2", {"database": {
        "dbname": "singlewindow", "roles": [DAEMON_ROLE, POSTFIX_ROLE], "peer_map": [],
        "tcp_clients": [["127.0.0.1", DAEMON_ROLE], ["127.0.0.1", POSTFIX_ROLE]]}})
    (server.data / "pg_hba.conf").write_text(hba)
    server.serve("good", reload=False)
    stack.run([stack.pg_bin("pg_ctl"), "-D", str(server.data), "-l", str(root / "log"), "-w",
               "start"], user="postgres", cwd=root)
    try:
        stack.run(["createdb", "-h", str(root), "-p", str(server.port), "-U", "postgres",
                   "singlewindow"], user="postgres", cwd=root)
        for role in (DAEMON_ROLE, POSTFIX_ROLE):
            server.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        server.psql("CREATE TABLE address (logical text, physical text, party_id bigint);"
                    "INSERT INTO address VALUES ('acme@sw.test', 'edi@acme.example', 1);"
                    f"GRANT SELECT (logical) ON address TO {POSTFIX_ROLE}")
        passfiles = root / "pgpass"
        passfiles.mkdir()
        for role in (DAEMON_ROLE, POSTFIX_ROLE):
            (passfiles / role).write_text(f"*:*:*:{role}:{PASSWORD}\n")
            (passfiles / role).chmod(0o600)
        yield server
    finally:
        stack.run([stack.pg_bin("pg_ctl"), "-D", str(server.data), "-m", "immediate", "stop"],
                  user="postgres", check=False, cwd=root)
        shutil.rmtree(root, ignore_errors=True)


def database(server: Server, **extra: str) -> Database:
    """[database] as the app role writes it for a multi-node hub (no sslmode: dsn adds
    verify-full), plus ``hostaddr`` so that the name needs no DNS."""
    conninfo = (f"host={NAME} hostaddr=127.0.0.1 port={server.port} dbname=singlewindow "
                f"sslrootcert={server.root / 'pki' / 'ca.pem'} connect_timeout=5 "
                + " ".join(f"{k}={v}" for k, v in extra.items()))
    return Database(conninfo=conninfo, passfile_dir=server.root / "pgpass")


def test_daemons_connect_over_verified_tls(server: Server) -> None:
    server.serve("good")
    with psycopg.connect(database(server).dsn()) as conn:
        row = conn.execute("SELECT current_user, ssl FROM pg_stat_ssl"
                           " WHERE pid = pg_backend_pid()").fetchone()
    assert row == (DAEMON_ROLE, True)


@pytest.mark.parametrize(("cert", "reason"), [
    ("wrong-name", f'does not match host name "{NAME}"'),
    ("rogue", "certificate verify failed"),
])
def test_a_server_with_another_certificate_is_refused(server: Server, cert: str,
                                                      reason: str) -> None:
    server.serve(cert)
    try:
        with pytest.raises(psycopg.OperationalError, match=reason):
            psycopg.connect(database(server).dsn())
    finally:
        server.serve("good")


def test_a_client_without_tls_is_refused(server: Server) -> None:
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(database(server, sslmode="disable").dsn())
