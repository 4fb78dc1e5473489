"""The mail clients a company uses, against the real stack (issue 14 item 7).

Every tested cell of :mod:`tests.support.client_matrix` runs here: the client as
Debian 12 ships it, configured as an administrator would (its own configuration file in
a fresh HOME, from the matrix's snippet), forced to one mechanism with its own option,
trusting the hub's CA and connecting by host name (``localhost``, which the stack's
certificate names). A submission must reach the agency's MTA and Postfix must have logged
that mechanism for that login; a fetch must bring the maildrop's message and Dovecot must
have logged the login with that mechanism over TLS. A cell marked ``fails`` must fail the
way its note says, without a login.

The refusals (item 4) come from addresses of their own: Dovecot slows down logins from an
address that failed, and the test stack's MSA allows 3 AUTH commands a minute per address.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import poplib
import secrets
import shlex
import smtplib
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from singlewindow.config import Config
from tests.support import client_matrix as matrix
from tests.support import factory
from tests.support.client_matrix import Cell, Outcome
from tests.support.clients import swaks, tls_context
from tests.support.logs import lines, wait_for_lines
from tests.support.pop3 import POP3SFrom
from tests.support.world import Party, World, message, wait_until, world_fixture

world = world_fixture(("ag", "agency"))

#: The name clients connect to: the stack's certificate carries it (SPEC R2.2, R3.4:
#: clients verify the server before they send credentials).
HOST = "localhost"
OTHER_REALM = "other.test"
#: Source addresses for refused logins, one per test (see the module docstring).
_refusal_sources = (f"127.0.7.{n}" for n in itertools.count(10))

TIMEOUT = 90


@dataclass
class Home:
    """A fresh HOME for one client run: its configuration files live here, 0600."""

    path: Path

    def write(self, name: str, text: str) -> Path:
        target = self.path / name
        with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                       "w") as handle:
            handle.write(text)
        return target

    def run(self, argv: list[str], stdin: bytes | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        env = {"HOME": str(self.path), "PATH": os.environ["PATH"], "LANG": "C.UTF-8",
               "TERM": "vt100"}
        return subprocess.run(argv, input=stdin, capture_output=True, env=env,
                              timeout=TIMEOUT, check=False, cwd=self.path)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return Home(path)


def _values(config: Config, home: Home, client: Party, **more: str) -> dict[str, str]:
    password_file = home.write(".sw-password", client.password)
    return {"host": HOST, "msa_port": str(config.listeners.msa_port),
            "ca": str(config.ca_file), "login": client.login, "sender": client.physical,
            "password": client.password, "password_file": str(password_file),
            "home": str(home.path), "local_user": "root", **more}


def _pop_url(config: Config, client: Party, listener: str) -> tuple[str, int]:
    if listener == "pop3s":
        port = config.listeners.pop3s_port
        return f"pops://{client.login}@{HOST}:{port}", port
    port = config.listeners.pop3_port
    return f"pop://{client.login}@{HOST}:{port}", port


# --- submission: one function per client ----------------------------------------------

Send = Callable[[Config, Home, Party, str, str, bytes], subprocess.CompletedProcess[bytes]]


def send_msmtp(config: Config, home: Home, client: Party, mechanism: str, rcpt: str,
               data: bytes) -> subprocess.CompletedProcess[bytes]:
    home.write(".msmtprc", matrix.MSMTPRC.format(
        **_values(config, home, client, mechanism=mechanism.lower())))
    return home.run(["msmtp", rcpt], data)


def send_mutt(config: Config, home: Home, client: Party, mechanism: str, rcpt: str,
              data: bytes) -> subprocess.CompletedProcess[bytes]:
    pop_url, _ = _pop_url(config, client, "pop3s")
    home.write(".muttrc", matrix.MUTTRC.format(
        **_values(config, home, client, mechanism=mechanism.lower(), pop_url=pop_url)))
    headers, _, body = data.partition(b"\r\n\r\n")
    subject = headers.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
    # Batch mode (stdin not a terminal): mutt sends the body it reads and exits.
    return home.run(["mutt", "-e", "set content_type=application/xml", "-s", subject,
                     rcpt], body)


def send_swaks(config: Config, home: Home, client: Party, mechanism: str, rcpt: str,
               data: bytes) -> subprocess.CompletedProcess[bytes]:
    eml = home.write("message.eml", data.decode())
    result = swaks("--server", f"{HOST}:{config.listeners.msa_port}", "--tlsc",
                   "--tls-verify", "--tls-ca-path", str(config.ca_file),
                   "--auth", mechanism, "--auth-user", client.login,
                   "--from", client.physical, "--to", rcpt, "--data", str(eml),
                   password=client.password)
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.encode(), result.stderr.encode())


def send_curl(config: Config, home: Home, client: Party, mechanism: str, rcpt: str,
              data: bytes) -> subprocess.CompletedProcess[bytes]:
    values = _values(config, home, client, mechanism=mechanism, rcpt=rcpt,
                     message=str(home.write("message.eml", data.decode())))
    home.write(".netrc", matrix.NETRC.format(**values))
    return home.run(["curl", "-sS", *shlex.split(matrix.CURL_SEND.format(**values))[1:]])


SEND: dict[str, Send] = {"msmtp": send_msmtp, "mutt": send_mutt, "swaks": send_swaks,
                         "curl": send_curl}


# --- fetching: one function per client; returns the run and what it fetched ----------

Fetch = Callable[[Config, Home, Party, str, str],
                 tuple[subprocess.CompletedProcess[bytes], bytes]]


def fetch_mutt(config: Config, home: Home, client: Party, listener: str, mechanism: str
               ) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    pop_url, _ = _pop_url(config, client, listener)
    mech = "user" if mechanism == "USER" else mechanism.lower()
    home.write(".muttrc", matrix.MUTTRC.format(
        **_values(config, home, client, mechanism=mech, pop_url=pop_url)))
    inbox = home.path / "Mail" / "inbox"
    inbox.parent.mkdir()
    inbox.touch()
    # <fetch-mail> is a function of mutt's screen, which needs a terminal: script(1)
    # (util-linux, Essential) gives it one; the pushed keys fetch and quit.
    command = shlex.join(["mutt", "-e", "push <fetch-mail><quit>"])
    result = home.run(["script", "-qec", command, "/dev/null"], b"")
    return result, inbox.read_bytes()


def fetch_fetchmail(config: Config, home: Home, client: Party, listener: str,
                    mechanism: str) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    assert mechanism == "USER"
    _, port = _pop_url(config, client, listener)
    fetched = home.path / "fetched"
    home.write(".fetchmailrc", matrix.FETCHMAILRC.format(**_values(
        config, home, client, pop_port=str(port), mda=f"cat >> {fetched}",
        tls="ssl" if listener == "pop3s" else "sslproto tls1.2+")))
    result = home.run(["fetchmail", "--nosyslog"])
    return result, fetched.read_bytes() if fetched.exists() else b""


def fetch_curl(config: Config, home: Home, client: Party, listener: str, mechanism: str
               ) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    port = config.listeners.pop3s_port if listener == "pop3s" else config.listeners.pop3_port
    scheme = "pop3s" if listener == "pop3s" else "pop3"
    values = _values(config, home, client, mechanism=mechanism,
                     curl_url=f"{scheme}://{HOST}:{port}")
    home.write(".netrc", matrix.NETRC.format(**values))
    result = home.run(["curl", "-sS", *shlex.split(matrix.CURL_FETCH.format(**values))[1:]])
    return result, result.stdout


FETCH: dict[str, Fetch] = {"mutt": fetch_mutt, "fetchmail": fetch_fetchmail,
                           "curl": fetch_curl}


# --- what the servers logged ---------------------------------------------------------

def postfix_sasl(config: Config, login: str) -> list[str]:
    """The MSA's sasl_method for each message ``login`` submitted."""
    text = (config.paths.log_dir / "postfix.log").read_text(errors="replace")
    return [line.split("sasl_method=", 1)[1].split(",", 1)[0]
            for line in text.splitlines()
            if "sasl_method=" in line and line.endswith(f"sasl_username={login}")]


def dovecot_logins(config: Config, login: str, expected: bool = False) -> list[str]:
    """Dovecot's POP3 logins of ``login``: its log line from ``method=`` on. ``expected``:
    wait for the first, which Dovecot's log process writes a moment after the login."""
    def match(line: str) -> bool:
        return f"Login: user=<{login}>, method=" in line

    found = (wait_for_lines(config.dovecot_log, match) if expected
             else [line for line in lines(config.dovecot_log) if match(line)])
    return [line.split("method=", 1)[1] for line in found]


def _output(result: subprocess.CompletedProcess[bytes]) -> str:
    return (result.stdout + result.stderr).decode(errors="replace")


def _cell_id(cell: Cell) -> str:
    return f"{cell.client}-{cell.listener}-{cell.mechanism}"


def _expect_curl_digest_failure(result: subprocess.CompletedProcess[bytes]) -> None:
    """curl 7.88 cancels DIGEST-MD5 after Dovecot's challenge (matrix.CURL_DIGEST)."""
    assert result.returncode == 67, _output(result)
    assert "Authentication cancelled" in _output(result)


# --- the cells ------------------------------------------------------------------------

@pytest.mark.parametrize("client", list(matrix.CLIENTS.values()), ids=lambda c: c.name)
def test_client_version(client: matrix.Client) -> None:
    """The table names the versions it was proved with: these must be the ones here."""
    result = subprocess.run(client.version_command, capture_output=True, text=True,
                            timeout=30, check=False)
    assert client.version in result.stdout + result.stderr


def test_matrix_has_every_mechanism_the_hub_offers(sw_stack: Config) -> None:
    """The table covers what the hub offers, no more and no less: a mechanism added to
    Dovecot's auth_mechanisms must get its row of clients."""
    context = tls_context(sw_stack)
    with smtplib.SMTP_SSL(HOST, sw_stack.listeners.msa_port, timeout=30,
                          context=context) as smtp:
        smtp.ehlo("clerk.example")
        assert set(smtp.esmtp_features["auth"].split()) == set(matrix.SMTP_MECHANISMS)
    session = POP3SFrom(HOST, sw_stack.listeners.pop3s_port, "127.0.0.1", context)
    try:
        capa = session.capa()
    finally:
        session.quit()
    assert set(capa["SASL"]) | ({"USER"} & set(capa)) == set(matrix.POP3_MECHANISMS)


@pytest.mark.parametrize("cell", [c for c in matrix.tested() if c.listener == "msa"],
                         ids=_cell_id)
def test_submission(world: World, home: Home, cell: Cell) -> None:
    config, ag = world.config, world["ag"]
    client = world.add_mail_client("mc")  # its own company: one message a minute each
    subject = f"{_cell_id(cell)} {secrets.token_hex(4)}"
    data = message(client, ag.logical, subject, factory.gendec())
    result = SEND[cell.client](config, home, client, cell.mechanism, ag.logical, data)
    if cell.outcome is Outcome.WORKS:
        assert result.returncode == 0, _output(result)
        assert ag.sink.wait_for(lambda r: f"Subject: {subject}".encode() in r.data), \
            "the copy never reached the agency"
        assert postfix_sasl(config, client.login) == [cell.mechanism]
    else:
        _expect_curl_digest_failure(result)
        assert postfix_sasl(config, client.login) == []


def test_curl_without_login_options_falls_back_from_digest_md5(world: World,
                                                              home: Home) -> None:
    """Note 1's last sentence: curl's own choice (DIGEST-MD5 first) is cancelled and it
    goes on with PLAIN, so an unconfigured curl works too."""
    config, ag = world.config, world["ag"]
    client = world.add_mail_client("mc")
    subject = f"curl-default {secrets.token_hex(4)}"
    values = _values(config, home, client, mechanism="*", rcpt=ag.logical,
                     message=str(home.write("message.eml", message(
                         client, ag.logical, subject, factory.gendec()).decode())))
    home.write(".netrc", matrix.NETRC.format(**values))
    argv = shlex.split(matrix.CURL_SEND.format(**values))
    argv.remove("--login-options")
    argv.remove("AUTH=*")
    # --verbose shows the exchange (AUTH PLAIN's line carries the password: not printed).
    result = home.run(["curl", "-sS", "--verbose", *argv[1:]])
    assert result.returncode == 0
    assert b"> AUTH DIGEST-MD5" in result.stderr and b"> *" in result.stderr
    assert ag.sink.wait_for(lambda r: f"Subject: {subject}".encode() in r.data)
    assert postfix_sasl(config, client.login) == ["PLAIN"]


def _respond(world: World, client: Party) -> str:
    """The agency answers ``client``: a message in its maildrop; returns the subject."""
    ag = world["ag"]
    subject = f"response {secrets.token_hex(6)}"
    assert world.submit(ag, [client.logical], message(
        ag, client.logical, subject, factory.declaration_response())) == {}
    new = world.config.paths.maildrop_dir / client.login / "Maildir" / "new"
    wait_until(lambda: new.is_dir() and any(new.iterdir()), timeout=60)
    return subject


@pytest.mark.parametrize("cell", [c for c in matrix.tested() if c.listener != "msa"],
                         ids=_cell_id)
def test_fetch(world: World, home: Home, cell: Cell) -> None:
    config = world.config
    client = world.add_mail_client("mc")
    subject = _respond(world, client)
    result, fetched = FETCH[cell.client](config, home, client, cell.listener,
                                         cell.mechanism)
    if cell.outcome is Outcome.WORKS:
        assert result.returncode == 0, _output(result)
        assert f"Subject: {subject}".encode() in fetched, _output(result)
        # Dovecot names USER/PASS "PLAIN" too; TLS: over POP3S, or after STLS.
        method = "PLAIN" if cell.mechanism == "USER" else cell.mechanism
        [login] = dovecot_logins(config, client.login, expected=True)
        assert login.startswith(f"{method}, ") and ", TLS, " in login, login
    else:
        _expect_curl_digest_failure(result)
        assert dovecot_logins(config, client.login) == []


# --- refusals: another realm, another authorization id (issue 14 item 4) ---------------

def _swaks_auth(config: Config, user: str, password: str, mechanism: str,
                *extra: str) -> str:
    result = swaks("--server", f"{HOST}:{config.listeners.msa_port}", "--tlsc",
                   "--tls-verify", "--tls-ca-path", str(config.ca_file),
                   "--auth", mechanism, "--auth-user", user, "--quit-after", "AUTH",
                   "--local-interface", next(_refusal_sources), *extra, password=password)
    return result.stdout


@pytest.mark.parametrize("mechanism", matrix.SMTP_MECHANISMS)
def test_submission_login_in_another_realm_refused(world: World, mechanism: str) -> None:
    client = world.add_mail_client("mc")
    out = _swaks_auth(world.config, f"{client.login}@{OTHER_REALM}", client.password,
                      mechanism)
    assert "535 5.7.8" in out, out


def test_submission_digest_md5_realm_refused(world: World) -> None:
    """DIGEST-MD5 names the realm in a field of its own; Dovecot puts it after the login."""
    client = world.add_mail_client("mc")
    out = _swaks_auth(world.config, client.login, client.password, "DIGEST-MD5",
                      "--auth-extra", f"realm={OTHER_REALM}")
    assert "535 5.7.8" in out, out


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_submission_login_in_the_hubs_realm_accepted(world: World, mechanism: str) -> None:
    """login@realm is the same login (PLAIN, LOGIN: DIGEST-MD5 hashes the name as sent,
    so it takes the bare login and the realm in its own field)."""
    client = world.add_mail_client("mc")
    realm = world.config.hub.sasl_realm
    out = _swaks_auth(world.config, f"{client.login}@{realm}", client.password, mechanism)
    assert "235 2.7.0" in out, out


def digest_md5(user: str, realm: str, password: str, authzid: str | None,
               digest_uri: str) -> Callable[[bytes], str]:
    """An RFC 2831 client that sends the authzid it is given: none of the packaged clients
    lets a user set one different from the login, which is what must be refused."""
    def respond(challenge: bytes) -> str:
        if challenge.startswith(b"rspauth="):
            return ""  # the server proved it knows the password (RFC 2831 2.1.3)
        fields = dict(part.split("=", 1) for part in challenge.decode().split(","))
        nonce = fields["nonce"].strip('"')
        cnonce = secrets.token_hex(16)
        a1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).digest() \
            + f":{nonce}:{cnonce}".encode() + (f":{authzid}".encode() if authzid else b"")
        a2 = f"AUTHENTICATE:{digest_uri}"
        digest = hashlib.md5(
            f"{_hex(a1)}:{nonce}:00000001:{cnonce}:auth:{_hex(a2.encode())}".encode())
        answer = (f'username="{user}",realm="{realm}",nonce="{nonce}",cnonce="{cnonce}",'
                  f'nc=00000001,qop=auth,digest-uri="{digest_uri}",'
                  f"response={digest.hexdigest()}")
        return answer + (f',authzid="{authzid}"' if authzid else "")
    return respond


def _hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _smtp_digest(config: Config, client: Party, authzid: str | None) -> int:
    responder = digest_md5(client.login, config.hub.sasl_realm, client.password, authzid,
                           f"smtp/{HOST}")

    def authobject(challenge: bytes | None = None) -> str | None:
        return None if challenge is None else responder(challenge)

    context = tls_context(config)
    with smtplib.SMTP_SSL(HOST, config.listeners.msa_port, timeout=30, context=context,
                          source_address=(next(_refusal_sources), 0)) as smtp:
        smtp.ehlo("clerk.example")
        try:
            # typeshed wants an overloaded __call__ (None -> str | None, bytes -> str);
            # one function with a union does the same at run time.
            code, _ = smtp.auth("DIGEST-MD5", authobject)  # type: ignore[arg-type]
        except smtplib.SMTPAuthenticationError as refused:
            code = refused.smtp_code
    return code


def test_submission_digest_md5_authzid(world: World) -> None:
    """The authzid may be the login itself (mutt's GSASL sends it), nothing else: not
    another party's login, not the login in another realm."""
    client, other = world.add_mail_client("mc"), world.add_mail_client("mc")
    assert _smtp_digest(world.config, client, client.login) == 235
    assert _smtp_digest(world.config, client, other.login) == 535
    assert _smtp_digest(world.config, client, f"{client.login}@{OTHER_REALM}") == 535


def _curl_auth(config: Config, home: Home, url: str, user: str, password: str,
               mechanism: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    home.write(".netrc", matrix.NETRC.format(host=HOST, login=user, password=password))
    return home.run(["curl", "-sS", "--netrc", "--cacert", str(config.ca_file),
                     "--login-options", f"AUTH={mechanism}", "--ssl-reqd",
                     "--interface", next(_refusal_sources), *extra, url])


def test_plain_authzid_of_another_login_refused(world: World, home: Home) -> None:
    """curl's --sasl-authzid (PLAIN only): another party's login, on both listeners."""
    config = world.config
    client, other = world.add_mail_client("mc"), world.add_mail_client("mc")
    pop3s = f"pop3s://{HOST}:{config.listeners.pop3s_port}/"
    smtps = f"smtps://{HOST}:{config.listeners.msa_port}/"
    for url, extra in ((pop3s, ()), (smtps, ("--mail-rcpt", "x@sw.test", "--upload-file",
                                             "/dev/null"))):
        refused = _curl_auth(config, home, url, client.login, client.password, "PLAIN",
                             "--sasl-authzid", other.login, *extra)
        assert refused.returncode == 67, _output(refused)  # CURLE_LOGIN_DENIED
    # The same with the authzid equal to the login logs in.
    accepted = _curl_auth(config, home, pop3s, client.login, client.password, "PLAIN",
                          "--sasl-authzid", client.login)
    assert accepted.returncode == 0, _output(accepted)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_pop3_login_in_another_realm_refused(world: World, home: Home,
                                             mechanism: str) -> None:
    config = world.config
    client = world.add_mail_client("mc")
    for port, scheme in ((config.listeners.pop3s_port, "pop3s"),
                         (config.listeners.pop3_port, "pop3")):
        refused = _curl_auth(config, home, f"{scheme}://{HOST}:{port}/",
                             f"{client.login}@{OTHER_REALM}", client.password, mechanism)
        assert refused.returncode == 67, _output(refused)
    assert dovecot_logins(config, client.login) == []


def _pop3s(config: Config) -> POP3SFrom:
    return POP3SFrom(HOST, config.listeners.pop3s_port, next(_refusal_sources),
                     tls_context(config))


def test_pop3_user_pass_in_another_realm_refused(world: World) -> None:
    client = world.add_mail_client("mc")
    session = _pop3s(world.config)
    try:
        session.user(f"{client.login}@{OTHER_REALM}")
        with pytest.raises(poplib.error_proto, match="-ERR"):
            session.pass_(client.password)
    finally:
        session.close()


def _pop3_line(session: POP3SFrom, line: str) -> bytes:
    """One line of a POP3 exchange and the server's answer (poplib has no AUTH)."""
    session.sock.sendall(line.encode() + b"\r\n")
    return session.file.readline().rstrip(b"\r\n")


def _pop3_digest(config: Config, user: str, realm: str, password: str,
                 authzid: str | None) -> bytes:
    """AUTH DIGEST-MD5 over POP3S (RFC 5034); Dovecot's last answer."""
    responder = digest_md5(user, realm, password, authzid, f"pop/{HOST}")
    session = _pop3s(config)
    try:
        answer = _pop3_line(session, "AUTH DIGEST-MD5")
        while answer.startswith(b"+ "):
            step = responder(base64.b64decode(answer[2:]))
            answer = _pop3_line(session, base64.b64encode(step.encode()).decode())
        return answer
    finally:
        session.close()


def test_pop3_digest_md5_realm_and_authzid(world: World) -> None:
    config = world.config
    client, other = world.add_mail_client("mc"), world.add_mail_client("mc")
    realm = config.hub.sasl_realm
    login, password = client.login, client.password
    assert _pop3_digest(config, login, realm, password, login).startswith(b"+OK")
    assert _pop3_digest(config, login, realm, password, other.login).startswith(b"-ERR")
    assert _pop3_digest(config, login, OTHER_REALM, password, None).startswith(b"-ERR")
    assert _pop3_digest(config, f"{login}@{OTHER_REALM}", realm, password,
                        None).startswith(b"-ERR")


def test_certificate_names_the_host(sw_stack: Config) -> None:
    """Clients verify the name they connect to against the hub's CA (fetchmail refused
    the old self-signed certificate when connecting by address)."""
    context = tls_context(sw_stack)
    context.check_hostname = True
    for name in (HOST, "127.0.0.1"):
        with socket.create_connection((name, sw_stack.listeners.pop3s_port), timeout=10) \
                as raw, context.wrap_socket(raw, server_hostname=name) as tls:
            assert tls.getpeercert()
