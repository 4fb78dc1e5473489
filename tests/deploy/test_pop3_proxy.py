"""The multi-node POP3 path with real Dovecot: an edge's proxy and the maildrop backend.

Two Dovecot instances rendered by :func:`singlewindow.deploy.template_context` from the
very templates the Ansible role renders, over one PostgreSQL with the schema: the edge
(``NodeRole.pop3_backend``) on 127.0.0.1, the backend (``NodeRole.pop3_proxies``) on
127.0.0.2, each with a certificate from a test CA. Only the instance paths differ from a
deployed node (private instances, as the local stack runs them).

What an operator must be able to trust: a client's login at the edge reaches the
maildrop on the backend, over TLS whose certificate and name the edge verifies (Dovecot
2.3's proxy: ``ssl_ca``); a backend presenting a certificate for another name gets no
password; the backend takes a login only on a connection from an edge
(``allow_real_nets``), whoever else reaches its port.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import poplib
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from singlewindow import deploy, node, passwords, render, stack
from singlewindow.config import ADMIN_ROLE, Config, Listeners, Paths, Tls
from singlewindow.store import connect, directory
from tests.support.local import free_port, short_state_dir
from tests.support.logs import lines, wait_for_lines

EDGE_IP, BACKEND_IP, STRANGER_IP = "127.0.0.1", "127.0.0.2", "127.0.0.3"
BACKEND_NAME = "pop1.sw.test"
DOVECOT_FILES = ("dovecot.conf", "sql-strong.conf.ext", "sql-digest-md5.conf.ext",
                 "sql-userdb.conf.ext")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue(pki: Path, name: str) -> None:
    """``name``.crt/.key for DNS name ``name``, signed by the test CA (ca.pem)."""
    (pki / f"{name}.ext").write_text(f"subjectAltName=DNS:{name}\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=pki)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
            "-out", f"{name}.crt", cwd=pki)


@dataclass
class Instance:
    """One Dovecot of the pair, its files under ``state``."""

    config: Config
    node: deploy.NodeRole

    @property
    def layout(self) -> Paths:
        return self.config.paths

    @property
    def conf(self) -> Path:
        return self.layout.dovecot_conf / "dovecot.conf"

    def context(self) -> dict[str, Any]:
        """The deployed node's context, but a private instance's directories."""
        ctx = deploy.template_context(self.config, self.node)
        private = node.template_context(self.config)["dovecot"]
        ctx["dovecot"] = {**ctx["dovecot"], **{
            key: private[key] for key in ("private_instance", "config_directory",
                                          "base_dir", "instance_name", "state_dir",
                                          "auth_socket")}}
        return ctx

    def start(self) -> None:
        layout = self.layout
        for path in (layout.dovecot_conf, layout.dovecot_base, layout.dovecot_state,
                     layout.log_dir):
            stack._mkdir(path)
        stack._mkdir(self.config.paths.maildrop_dir, node.MAILDROP_USER, 0o700)
        ctx = self.context()
        for name in DOVECOT_FILES:
            render.render_to(f"dovecot/{name}.j2", layout.dovecot_conf / name, ctx, 0o640)
        subprocess.run(["doveconf", "-c", str(self.conf), "-n"], check=True,
                       capture_output=True)
        # The master daemonizes and keeps its standard streams: never a pipe to wait on.
        subprocess.run(["dovecot", "-c", str(self.conf)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bind, port = self.config.listeners.bind, self.config.listeners.pop3s_port
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((bind, port), 1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, f"Dovecot does not listen on {bind}"
                time.sleep(0.1)

    def reload(self, ca: Path) -> None:
        """Reload, and return once new connections get the configured certificate."""
        subprocess.run(["dovecot", "-c", str(self.conf), "reload"], check=True,
                       capture_output=True)
        context = ssl.create_default_context(cafile=str(ca))
        context.check_hostname = False
        expected = self.config.cert_file.stem
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                    (self.config.listeners.bind, self.config.listeners.pop3s_port), 2) as raw, \
                    context.wrap_socket(raw) as tls:
                subject = dict(item[0] for item in tls.getpeercert()["subject"])
                if subject.get("commonName") == expected:
                    return
            assert time.monotonic() < deadline, f"{expected} is not served after reload"
            time.sleep(0.2)

    def stop(self) -> None:
        subprocess.run(["dovecot", "-c", str(self.conf), "stop"], check=False,
                       capture_output=True)

    def log(self) -> str:
        return "\n".join(lines(self.config.dovecot_log))

    def wait_for_line(self, *parts: str) -> str:
        """The last log line with all of ``parts`` (:mod:`tests.support.logs`)."""
        return wait_for_lines(self.config.dovecot_log,
                              lambda line: all(part in line for part in parts))[-1]


class POP3From(poplib.POP3_SSL):
    """POP3S from a chosen source address (the edge's, or a stranger's)."""

    def __init__(self, host: str, port: int, source: str,
                 context: ssl.SSLContext) -> None:
        self.source = source
        super().__init__(host, port, timeout=20, context=context)

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))
        return self.context.wrap_socket(sock, server_hostname=self.host)


def digest_md5_response(challenge: bytes, login: str, password: str, host: str) -> bytes:
    """The client's answer to a DIGEST-MD5 challenge (RFC 2831 2.1.2, qop=auth)."""
    fields = {key: quoted or bare for key, quoted, bare in
              re.findall(r'([\w-]+)=(?:"([^"]*)"|([^,]*))', challenge.decode())}
    realm, nonce = fields["realm"], fields["nonce"]
    cnonce, nc, uri = secrets.token_hex(8), "00000001", f"pop/{host}"

    def md5(data: bytes) -> bytes:
        return hashlib.md5(data).digest()

    a1 = md5(f"{login}:{realm}:{password}".encode()) + f":{nonce}:{cnonce}".encode()
    ha1, ha2 = md5(a1).hex(), md5(f"AUTHENTICATE:{uri}".encode()).hex()
    response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hex()
    return (f'username="{login}",realm="{realm}",nonce="{nonce}",cnonce="{cnonce}",'
            f'nc={nc},qop=auth,digest-uri="{uri}",response={response}').encode()


@dataclass
class Pair:
    edge: Instance
    backend: Instance
    pki: Path
    login: str
    password: str

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.pem"))
        context.check_hostname = False  # by address here; the chain is still verified
        return context

    def fetch(self, host: str, source: str) -> list[bytes]:
        """Log in at ``host`` from ``source`` and return the maildrop's messages; a
        refusal raises poplib.error_proto with Dovecot's answer."""
        port = self.edge.config.listeners.pop3s_port
        with contextlib.closing(POP3From(host, port, source, self.client_context())) as pop:
            pop.user(self.login)
            pop.pass_(self.password)
            count, _ = pop.stat()
            messages = [b"\n".join(pop.retr(i + 1)[1]) for i in range(count)]
            pop.quit()
            return messages

    def fetch_digest_md5(self, host: str, source: str) -> int:
        """Log in with POP3 AUTH DIGEST-MD5 and return the maildrop's message count."""
        port = self.edge.config.listeners.pop3s_port
        with contextlib.closing(POP3From(host, port, source, self.client_context())) as pop:
            challenge = pop._shortcmd("AUTH DIGEST-MD5")  # poplib has no SASL
            answer = digest_md5_response(base64.b64decode(challenge[2:]), self.login,
                                         self.password, host)
            pop._shortcmd(base64.b64encode(answer).decode())  # "+ rspauth=..."
            pop._shortcmd("")
            count: int = pop.stat()[0]
            pop.quit()
            return count


@pytest.fixture(scope="module")
def pair(database_config: Config) -> Iterator[Pair]:
    pki = short_state_dir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=Single Window test CA", "-keyout", "ca.key", "-out", "ca.pem",
            cwd=pki)
    for name in (BACKEND_NAME, "edge1.sw.test", "other.sw.test"):
        issue(pki, name)
    port = free_port()  # the edge proxies to its own POP3S port on the backend

    def instance(ip: str, cert: str, node: deploy.NodeRole) -> Instance:
        state = short_state_dir()
        state.chmod(0o755)  # Dovecot's unprivileged processes reach their sockets
        config = replace(
            database_config, paths=Paths(state_dir=state),
            listeners=Listeners(bind=ip, pop3_port=free_port(), pop3s_port=port),
            tls=Tls(cert_file=pki / f"{cert}.crt", key_file=pki / f"{cert}.key",
                    ca_file=pki / "ca.pem"))
        return Instance(config, node)

    backend = instance(BACKEND_IP, BACKEND_NAME, deploy.NodeRole(pop3_proxies=(EDGE_IP,)))
    edge = instance(EDGE_IP, "edge1.sw.test", deploy.NodeRole(
        pop3_backend=BACKEND_NAME, pop3_backend_address=BACKEND_IP))
    login, password = "mc" + secrets.token_hex(4), secrets.token_hex(12)
    realm = database_config.hub.sasl_realm
    with connect(database_config.database, autocommit=True, role=ADMIN_ROLE) as conn:
        directory.add_party(conn, login, "company", [], None)
        directory.add_account(conn, login, login, passwords.strong_hash(password),
                              passwords.digest_md5_hash(login, realm, password))
    # A message in the backend's maildrop only: fetched at the edge, it was proxied.
    maildir = backend.config.paths.maildrop_dir / login / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1.backend").write_bytes(
        b"From: agency@sw.test\r\nSubject: held on the backend\r\n\r\nresponse\r\n")
    subprocess.run(["chown", "-R", f"{node.MAILDROP_USER}:{node.MAILDROP_USER}",
                    str(backend.config.paths.maildrop_dir)], check=True)
    the_pair = Pair(edge, backend, pki, login, password)
    try:
        backend.start()
        edge.start()
        yield the_pair
    finally:
        edge.stop()
        backend.stop()
        time.sleep(0.5)
        for path in (pki, edge.config.paths.state_dir, backend.config.paths.state_dir):
            shutil.rmtree(path, ignore_errors=True)


def test_login_at_the_edge_reaches_the_backends_maildrop_over_verified_tls(
        pair: Pair) -> None:
    try:
        [message] = pair.fetch(EDGE_IP, EDGE_IP)
    except poplib.error_proto as exc:
        raise AssertionError(f"{exc}\nedge:\n{pair.edge.log()[-3000:]}\n"
                             f"backend:\n{pair.backend.log()[-3000:]}") from None
    assert b"Subject: held on the backend" in message
    # The edge proxied the login to the backend by its certificate's name, over TLS.
    pair.edge.wait_for_line(f"proxy({pair.login},{BACKEND_IP}:", "Started proxying",
                            f"<{BACKEND_NAME}>")
    pair.backend.wait_for_line("pop3-login: Info: Login:", f"user=<{pair.login}>", "TLS")


def test_backend_refuses_a_login_from_anywhere_but_an_edge(pair: Pair) -> None:
    """The right password, straight to the backend's POP3S port: from the edge's address
    it counts (the proxy's own connection), from any other it is refused."""
    assert len(pair.fetch(BACKEND_IP, EDGE_IP)) == 1
    with pytest.raises(poplib.error_proto, match=r"-ERR"):
        pair.fetch(BACKEND_IP, STRANGER_IP)
    pair.backend.wait_for_line("allow_real_nets", pair.login, STRANGER_IP)


def test_edge_gives_no_password_to_a_backend_with_another_name(pair: Pair) -> None:
    """The same CA, another name: the edge's proxy refuses the handshake, so the client's
    USER/PASS never reach it."""
    backend = pair.backend
    good = backend.config
    backend.config = replace(good, tls=replace(
        good.tls, cert_file=pair.pki / "other.sw.test.crt",
        key_file=pair.pki / "other.sw.test.key"))
    try:
        render.render_to("dovecot/dovecot.conf.j2", backend.conf, backend.context(), 0o640)
        backend.reload(pair.pki / "ca.pem")
        with pytest.raises(poplib.error_proto, match=r"-ERR"):
            pair.fetch(EDGE_IP, EDGE_IP)
        pair.edge.wait_for_line(f"doesn't match expected host name {BACKEND_NAME}",
                                pair.login)
    finally:
        backend.config = good
        render.render_to("dovecot/dovecot.conf.j2", backend.conf, backend.context(), 0o640)
        backend.reload(pair.pki / "ca.pem")
    assert len(pair.fetch(EDGE_IP, EDGE_IP)) == 1


def test_edge_takes_no_pop3_login_it_cannot_proxy(pair: Pair) -> None:
    """DIGEST-MD5 never gives the edge the password the proxy logs in to the backend
    with; accepted at the edge it would open the edge's own, empty maildrop. The edge
    refuses it for POP3 (SMTP AUTH keeps it); the backend, from the edge, takes it."""
    with pytest.raises(poplib.error_proto, match=r"-ERR"):
        pair.fetch_digest_md5(EDGE_IP, EDGE_IP)
    assert pair.fetch_digest_md5(BACKEND_IP, EDGE_IP) == 1
