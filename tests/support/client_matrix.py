"""Which mail client works with which SASL mechanism on which listener (issue 14 item 7).

One table, three uses: ``test_clients.py`` runs every cell marked ``works`` or ``fails``
against the real stack with the client configured from :data:`SNIPPETS` (and fails when
the client does otherwise); ``scripts/client-table`` renders the table and the snippets
into the README; ``tests/unit/test_client_table.py`` checks that the README holds exactly
that rendering. So the README says what the tests prove, whatever order they run in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Outcome(Enum):
    WORKS = "works"  # tested: the mail went through / the maildrop was fetched
    FAILS = "fails"  # tested: the client cannot authenticate this way (note says why)
    NO_OPTION = "no option"  # the client cannot be told to use it: not tested


#: Listeners a client authenticates on: key, title in the table.
LISTENERS: dict[str, str] = {
    "msa": "MSA 465 (4465), implicit TLS",
    "pop3s": "POP3S 995 (1995)",
    "pop3": "POP3 110 (1110) + STLS",
}

#: Mechanisms per kind of listener, in table order. POP3's USER/PASS is no SASL
#: mechanism but a login all the same (RFC 1939); Dovecot logs it as PLAIN.
SMTP_MECHANISMS = ("DIGEST-MD5", "PLAIN", "LOGIN")
POP3_MECHANISMS = ("DIGEST-MD5", "PLAIN", "LOGIN", "USER")


@dataclass(frozen=True)
class Client:
    name: str
    #: The Debian 12 version tested (``test_client_version`` checks the installed one).
    version: str
    #: The command whose output names the version.
    version_command: tuple[str, ...]


CLIENTS: dict[str, Client] = {c.name: c for c in (
    Client("msmtp", "1.8.23", ("msmtp", "--version")),
    Client("mutt", "2.2.12", ("mutt", "-v")),
    Client("swaks", "20201014.0", ("swaks", "--version")),
    Client("curl", "7.88.1", ("curl", "--version")),
    Client("fetchmail", "6.4.37", ("fetchmail", "--version")),
)}

CURL_DIGEST = (
    "curl 7.88 reads the challenge's `algorithm=\"md5-sess\"` up to the next comma, "
    "quotes included (Dovecot quotes it; RFC 2831 has it bare), finds no `md5-sess`, "
    "cancels the exchange (`*`) and exits 67, \"Authentication cancelled\" "
    "(`lib/vauth/digest.c`; curl 8.17 parses quoted values). Without `--login-options` "
    "it falls back to another one by itself (PLAIN); configure `AUTH=PLAIN`.")
CURL_USER = ("curl logs in with USER/PASS only when the server offers no SASL mechanism "
             "(`lib/pop3.c`); `AUTH=PLAIN` sends the same over the same TLS.")
FETCHMAIL_SASL = ("fetchmail's POP3 `auth` knows password (USER/PASS), CRAM-MD5, OTP, "
                  "NTLM, GSSAPI, Kerberos and MSN, not these three.")


@dataclass(frozen=True)
class Cell:
    client: str
    listener: str
    mechanism: str
    outcome: Outcome
    note: str = ""


def _cells() -> tuple[Cell, ...]:
    cells: list[Cell] = []
    for client in ("msmtp", "mutt", "swaks", "curl"):
        for mech in SMTP_MECHANISMS:
            if client == "curl" and mech == "DIGEST-MD5":
                cells.append(Cell(client, "msa", mech, Outcome.FAILS, CURL_DIGEST))
            else:
                cells.append(Cell(client, "msa", mech, Outcome.WORKS))
    for listener in ("pop3s", "pop3"):
        for mech in POP3_MECHANISMS:
            cells.append(Cell("mutt", listener, mech, Outcome.WORKS))
        for mech in POP3_MECHANISMS:
            if mech == "DIGEST-MD5":
                cells.append(Cell("curl", listener, mech, Outcome.FAILS, CURL_DIGEST))
            elif mech == "USER":
                cells.append(Cell("curl", listener, mech, Outcome.NO_OPTION, CURL_USER))
            else:
                cells.append(Cell("curl", listener, mech, Outcome.WORKS))
        for mech in POP3_MECHANISMS:
            if mech == "USER":
                cells.append(Cell("fetchmail", listener, mech, Outcome.WORKS))
            else:
                cells.append(Cell("fetchmail", listener, mech, Outcome.NO_OPTION,
                                  FETCHMAIL_SASL))
    return tuple(cells)


CELLS: tuple[Cell, ...] = _cells()


def tested() -> list[Cell]:
    """The cells a test runs."""
    return [c for c in CELLS if c.outcome is not Outcome.NO_OPTION]


# --- configuration snippets --------------------------------------------------------
#
# Each is what a company's administrator writes; the tests fill in the same text. Fields:
# host, msa_port, pop_url/pop_port/curl_url, ca (the hub's CA certificate), login, sender,
# password_file or password, mechanism in the client's own spelling, mda.

MSMTPRC = """\
# ~/.msmtprc (mode 0600)
account singlewindow
host {host}
port {msa_port}
tls on
tls_starttls off
tls_trust_file {ca}
auth {mechanism}
user {login}
passwordeval "cat {password_file}"
from {sender}
account default : singlewindow
"""

MUTTRC = """\
# ~/.muttrc (mode 0600)
set from = "{sender}"
set smtp_url = "smtps://{login}@{host}:{msa_port}/"
set smtp_pass = "{password}"
set smtp_authenticators = "{mechanism}"
set pop_host = "{pop_url}"
set pop_pass = "{password}"
set pop_authenticators = "{mechanism}"
set pop_auth_try_all = no
set pop_delete = yes
set ssl_force_tls = yes
set ssl_starttls = yes
set ssl_ca_certificates_file = "{ca}"
set folder = "{home}/Mail"
set spoolfile = "{home}/Mail/inbox"
set move = no
set quit = yes
"""

FETCHMAILRC = """\
# ~/.fetchmailrc (mode 0600)
poll {host} protocol pop3 port {pop_port} auth password
  user "{login}" there with password "{password}" is "{local_user}" here
  {tls} sslcertck sslcertfile "{ca}"
  fetchall
  mda "{mda}"
"""

NETRC = """\
# ~/.netrc (mode 0600), read by curl --netrc
machine {host}
login {login}
password {password}
"""

CURL_SEND = ("curl --netrc --cacert {ca} --login-options AUTH={mechanism} "
             "--mail-from {sender} --mail-rcpt {rcpt} --upload-file {message} "
             "smtps://{host}:{msa_port}/")
CURL_FETCH = ("curl --netrc --cacert {ca} --login-options AUTH={mechanism} "
              "--ssl-reqd {curl_url}/1")
SWAKS_SEND = ("SWAKS_OPT_auth_password=… swaks --server {host}:{msa_port} --tlsc "
              "--tls-verify --tls-ca-path {ca} --auth {mechanism} --auth-user {login} "
              "--from {sender} --to {rcpt} --data {message}")

#: Example values for the README (a deployed hub's ports).
README_VALUES: dict[str, str] = {
    "host": "mail.sw.test", "msa_port": "465", "pop_port": "995",
    "ca": "/etc/ssl/singlewindow-ca.pem", "pop_url": "pops://clerk@mail.sw.test:995",
    "curl_url": "pop3s://mail.sw.test:995", "login": "clerk",
    "sender": "clerk@company.example", "password_file": "~/.sw-password",
    "password": "…", "home": "~", "local_user": "clerk", "tls": "ssl",
    "mda": "/usr/bin/procmail -d %T", "rcpt": "customs@sw.test", "message": "gendec.eml",
}


def _mark(cell: Cell, notes: dict[str, int]) -> str:
    if cell.outcome is Outcome.WORKS:
        return "yes"
    number = notes.setdefault(cell.note, len(notes) + 1)
    return f"{'**no**' if cell.outcome is Outcome.FAILS else 'no option'} ({number})"


def render_table() -> str:
    """The Markdown table: one row per client and listener, one column per mechanism."""
    columns = ("DIGEST-MD5", "PLAIN", "LOGIN", "USER")
    lines = ["| client (Debian 12) | listener | " + " | ".join(
                 "USER/PASS" if m == "USER" else m for m in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    notes: dict[str, int] = {}
    for client in CLIENTS.values():
        for listener, title in LISTENERS.items():
            row = {c.mechanism: c for c in CELLS
                   if c.client == client.name and c.listener == listener}
            if not row:
                continue
            marks = [_mark(row[m], notes) if m in row else "—" for m in columns]
            lines.append(f"| {client.name} {client.version} | {title} | "
                         + " | ".join(marks) + " |")
    lines.append("")
    lines += [f"({number}) {note}" for note, number in notes.items()]
    return "\n".join(lines) + "\n"


def render_snippets() -> str:
    """Each client's configuration, with the README's example values."""
    values = dict(README_VALUES)
    parts = [
        ("msmtp", MSMTPRC.format(**{**values, "mechanism": "digest-md5"}),
         "`auth` is `digest-md5`, `plain` or `login`."),
        ("mutt", MUTTRC.format(**{**values, "mechanism": "digest-md5"}),
         "`smtp_authenticators`/`pop_authenticators`: `digest-md5`, `plain`, `login` "
         "(POP3 also `user`); `pop_host` `pop://…:110` for STLS. Send with "
         "`mutt -s SUBJECT customs@sw.test < FILE`; fetch with `<fetch-mail>` (key `G`), "
         "unattended `script -qec \"mutt -e 'push <fetch-mail><quit>'\" /dev/null` "
         "(the function needs mutt's screen, so a terminal)."),
        ("fetchmail", FETCHMAILRC.format(**values),
         "`ssl` for POP3S; for port 110 write `sslproto tls1.2+` instead, which makes "
         "STLS mandatory. fetchmail compares the certificate with the host name only, "
         "never with an address (`127.0.0.1`: \"hostname mismatch\"): poll by name."),
        ("curl", NETRC.format(**values) + "\n" + CURL_SEND.format(
            **{**values, "mechanism": "PLAIN"}) + "\n" + CURL_FETCH.format(
            **{**values, "mechanism": "PLAIN"}) + "\n",
         "`AUTH=PLAIN` or `AUTH=LOGIN`; `pop3://…:110` with `--ssl-reqd` for STLS "
         "(`/1` fetches message 1; without a number curl lists the maildrop)."),
        ("swaks", SWAKS_SEND.format(**{**values, "mechanism": "DIGEST-MD5"}) + "\n",
         "`--auth DIGEST-MD5`, `PLAIN` or `LOGIN`; the password from the environment. "
         "swaks reads a password that begins with `-` as an option, wherever it comes "
         "from: such a password cannot be given to it."),
    ]
    out: list[str] = []
    for name, text, hint in parts:
        out += [f"**{name}** — {hint}", "", "```", text.rstrip("\n"), "```", ""]
    return "\n".join(out)


BEGIN = "<!-- client-table: generated by scripts/client-table, do not edit -->"
END = "<!-- /client-table -->"


def render_section() -> str:
    """What stands between :data:`BEGIN` and :data:`END` in the README."""
    return f"{BEGIN}\n{render_table()}\n{render_snippets()}{END}"
