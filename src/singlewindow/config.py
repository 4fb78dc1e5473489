"""The one configuration object of Single Window.

Every daemon and ``swctl`` load ``singlewindow.toml`` once into a frozen :class:`Config`.
Each option's default is defined, and documented, right here; a TOML file only names what
differs. Tests build the object directly with keyword arguments.

File layout::

    [hub]        domain, hostname, SASL realm
    [database]   how to reach PostgreSQL
    [listeners]  addresses, ports and per-client limits of the public listeners
    [policy]     the RCPT-time policy daemon
    [milter]     the message-time milter
    [paths]      where the stack keeps its state, sockets and logs
    [tls]        certificate and key of the MSA and POP3 listeners
    [metrics]    the Prometheus exporter (singlewindow.metrics)
    [health]     what ``swctl health`` and the health metrics call a problem; the watchdog
    [log]        the format of the daemons' log lines
    [maildrop]   the maildrop hop of a multi-node hub: edges deliver POP3 maildrops on the
                 backend over LMTP (singlewindow.transport.backend)
    [ipsec]      the IPsec tunnels of the MTA interface on a deployed edge (SPEC D11)
    [notices]    an operator's own wording of the notices the hub writes (DSNs, control
                 messages; singlewindow.notices, docs/notices.md)
    [console]    the web console for operators and companies (singlewindow.console)
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from singlewindow.ipsec import ESP_MODES, id_problem

#: Where ``swctl`` looks for the config file of a deployed system.
DEFAULT_CONFIG_FILE = Path("/etc/singlewindow/singlewindow.toml")
#: Name of the config file inside a local stack's state directory.
STATE_CONFIG_NAME = "singlewindow.toml"


#: The database roles (issue 12). Each part of the hub logs in as its own, with only the
#: rights migration 0007 grants it; ``swctl stack`` and the singlewindow_postgresql role
#: create them. Fixed names: the migrations name them.
#: Owns the database and the schema; only ``swctl db migrate`` logs in as it.
OWNER_ROLE = "sw"
#: ``swctl``'s other commands: write the directory (parties, addresses, accounts, links,
#: routes), read the message log (trace); no DDL, no rewriting of the log.
ADMIN_ROLE = "sw_admin"
#: The daemons (policy, milter, transport): read the directory (no password hashes),
#: write the message log; no DDL.
DAEMON_ROLE = "sw_daemon"
#: Postfix's pgsql lookup tables: SELECT on the columns they look up.
POSTFIX_ROLE = "sw_postfix"
#: Dovecot's passdb and userdb: SELECT on the accounts' login and hashes.
DOVECOT_ROLE = "sw_dovecot"
#: The web console (issue 18, :mod:`singlewindow.console`): reads the message log and the
#: directory, checks logins against operators' and accounts' strong hashes, keeps its own
#: sessions and failed logins; writes nothing else.
CONSOLE_ROLE = "sw_console"
ROLES = (OWNER_ROLE, ADMIN_ROLE, DAEMON_ROLE, POSTFIX_ROLE, DOVECOT_ROLE, CONSOLE_ROLE)

#: Bytes kept for a copy's header block within ``transport.copy_size_limit``.
COPY_HEADER_ROOM = 64 * 1024


class ConfigError(Exception):
    """The configuration file is missing, unreadable or names an unknown option."""


@dataclass(frozen=True, slots=True)
class Hub:
    #: The Single Window domain: every logical address lives here (SPEC §6: ``sw.test``).
    domain: str = "sw.test"
    #: This node's host name in SMTP greetings and Received headers.
    hostname: str = "mail.sw.test"
    #: The DIGEST-MD5 realm (RFC 2831); the ``{DIGEST-MD5}`` hashes are computed over it,
    #: so changing it invalidates every stored DIGEST-MD5 hash.
    sasl_realm: str = "sw.test"
    #: The From of control messages Single Window writes itself (their envelope sender is
    #: null, issue 12). No party's address: a reply to it is refused at RCPT (550 5.1.1,
    #: unknown recipient), so it reaches nobody and starts no loop.
    system_local_part: str = "single-window"
    #: The key of the origin stamp's MAC (issue 12): the milter signs the stamp with it,
    #: the transport refuses a stamp that does not verify. Only the daemons may read it
    #: (0600 for the local stack's root daemons, 0640 root:daemons' group when deployed);
    #: ``swctl stack up`` and the Ansible role create it once (state_dir/keys/ if empty).
    #: Never in the repository, never logged.
    stamp_key_file: Path | None = None

    @property
    def system_sender(self) -> str:
        return f"{self.system_local_part}@{self.domain}"


@dataclass(frozen=True, slots=True)
class Database:
    """Where PostgreSQL is, and which role each part of the hub logs in as (issue 12).

    Every part logs in as its own role (the ``*_ROLE`` names above). ``dsn`` adds the
    role, and its password file, to ``conninfo``.
    """

    #: libpq connection string naming the server and database, without a role (a ``user``
    #: in it is replaced by the role of whoever connects). The local stack points it at
    #: its private cluster's socket directory (peer authentication); a deployment at its
    #: PostgreSQL node, over TLS: a TCP ``host`` without ``sslmode`` gets
    #: ``sslmode=verify-full`` (give ``sslrootcert``, the deployment's CA).
    conninfo: str = "dbname=singlewindow"
    #: A directory with one libpq password file per role, named after the role, each
    #: readable only by the system user that logs in as it (a database on another node:
    #: SCRAM over TLS). Empty: no password (peer authentication over the unix socket).
    passfile_dir: Path | None = None
    #: Seconds a daemon waits for a connection before it defers (4.3.0) instead.
    connect_timeout: int = 5

    def dsn(self, role: str | None = None) -> str:
        """The libpq connection string for ``role`` (the daemons' role if None)."""
        role = role or DAEMON_ROLE
        params: dict[str, Any] = {"user": role}
        if self.passfile_dir is not None:
            params["passfile"] = str(self.passfile_dir / role)
        given = conninfo_to_dict(self.conninfo)
        host = str(given.get("host") or "")
        if host and not host.startswith("/") and "sslmode" not in given:
            params["sslmode"] = "verify-full"
        return make_conninfo(self.conninfo, **params)


@dataclass(frozen=True, slots=True)
class Listeners:
    #: Address every public listener binds to (SPEC §6: loopback for the local stack).
    bind: str = "127.0.0.1"
    #: I1, SMTP between MTAs: plain, peer IP identifies the party (SPEC R1.1, R1.3).
    mta_port: int = 2525
    #: I2, submission with implicit TLS and SASL (SPEC R2.2, R2.3).
    msa_port: int = 4465
    #: I3, POP3 with STLS (SPEC R3.4).
    pop3_port: int = 1110
    #: I3, POP3 with implicit TLS.
    pop3s_port: int = 1995
    #: Loopback-only listener for copies the transport re-injects (no policy, no milter):
    #: TLS with the transport's client certificate (``transport.reinject_cert_file``)
    #: is required before MAIL, so no other local process gets anything through it.
    reinject_port: int = 10025
    #: I2: AUTH commands one client address may send per minute (Postfix
    #: ``smtpd_client_auth_rate_limit``); past it Postfix answers 450 4.7.1 without asking
    #: Dovecot, so a password guesser gets a few tries a minute. 0: no limit.
    msa_auth_rate_limit: int = 30
    #: I2: connections one client address may open per minute (Postfix
    #: ``smtpd_client_connection_rate_limit``; each costs a TLS handshake). 0: no limit.
    msa_connection_rate_limit: int = 60


@dataclass(frozen=True, slots=True)
class Policy:
    #: SPEC R2.4: submissions per company allowed on the MSA within ``msa_window_seconds``.
    #: A message counts when it is accepted (the end-of-DATA policy request), not per RCPT.
    msa_rate_limit: int = 1
    #: Length of the MSA rate-limit window in seconds.
    msa_window_seconds: int = 60
    #: Worker threads answering policy queries (each holds at most one DB connection).
    workers: int = 8


@dataclass(frozen=True, slots=True)
class Transport:
    #: SPEC R5.3 #1: the media types a submission's one body part may have. Everything
    #: else is refused with "unsupported Content-Type".
    allowed_content_types: tuple[str, ...] = (
        "application/edifact", "application/xml", "text/xml", "text/plain")
    #: Worker threads deciding recipients (each holds at most one DB connection).
    workers: int = 8
    #: Worker processes serving the LMTP socket. With more than one, the transport's
    #: process binds the socket once and pre-forks this many workers that all accept on
    #: it, each with its own interpreter (one GIL each), PostgreSQL pool of ``workers``
    #: connections, re-injection connections and maildrop retry watcher; it starts a
    #: worker again when one dies and stops them all on SIGTERM. One core's worth of the
    #: transport's CPU per process: set it near the cores left after Postfix and
    #: PostgreSQL (bench/README.md, "Issue 13"). 1: the process serves the socket itself.
    processes: int = 1
    #: Postfix's mail log, read after a crash to learn whether a copy was already
    #: re-injected (SPEC D4); empty: the stack's own log under state_dir.
    postfix_maillog: Path | None = None
    #: Dovecot's configuration, for delivery into POP3 maildrops with dovecot-lda;
    #: empty: the stack's own under state_dir.
    dovecot_config: Path | None = None
    #: Dovecot's local delivery agent.
    dovecot_lda: Path = Path("/usr/lib/dovecot/dovecot-lda")
    #: Postfix's queue control command: once a POP3 session that held a maildrop ends,
    #: ``postqueue -i`` asks Postfix to retry the deliveries it deferred (SPEC D6).
    postqueue: Path = Path("/usr/sbin/postqueue")
    #: Postfix's configuration directory, for ``postqueue -c``; empty: the stack's own
    #: under state_dir (a deployed node sets Postfix's default, /etc/postfix).
    postfix_config: Path | None = None
    #: Seconds an attempt holds its claim on a copy (SPEC D4): no other attempt sends that
    #: copy meanwhile, and one that finds the claim taken defers. A copy whose sender died
    #: is looked up in Postfix's or dovecot-lda's log once the lease has run out, so this is
    #: also the longest a crash delays it. An attempt gives up before the end of DATA when
    #: half of it has passed, so it never commits a copy after its lease.
    claim_lease: float = 300.0
    #: The largest submission in bytes: Postfix's message_size_limit (main.cf, for the
    #: local stack and a deployed node alike), so a larger one is refused at the SMTP
    #: listener (552 5.3.4). The routing transport's LMTP server accepts a little more
    #: (:attr:`lmtp_size_limit`), so it never refuses what Postfix took.
    message_size_limit: int = 50 * 1024 * 1024
    #: The largest copy in bytes Single Window sends to a party after conversion (what the
    #: agencies' side accepts): the re-injection listener's message_size_limit
    #: (master.cf). The MIG stops converting once the XML could not fit in such a copy
    #: (:attr:`xml_size_limit`).
    copy_size_limit: int = 50 * 1024 * 1024
    #: The client certificate the transport presents to the re-injection listener
    #: (issue 12, "one way in"): that listener takes mail only over TLS from a client
    #: whose certificate is this one (Postfix's smtpd_tls_CAfile holds nothing else).
    #: Empty: state_dir/keys/reinject-cert.pem, created by ``swctl stack up``.
    reinject_cert_file: Path | None = None
    #: Its private key: readable only by the transport (the Ansible role: 0640, group of
    #: the daemons' user). Empty: state_dir/keys/reinject-key.pem.
    reinject_key_file: Path | None = None
    #: The most hops a submission may have made (its ``Received`` headers, the hub's own
    #: listener's included); one with more is refused with 554 5.4.6 "Routing loop
    #: detected". Every copy carries as many host-free ``Received`` lines as its
    #: submission had hops, so the count survives the hub, and a loop through a party
    #: that sends copies back grows it by three per round. Below Postfix's
    #: ``hopcount_limit`` (50), whose refusal is less precise, and far above a real path
    #: (a party's own relays, then the hub's listener and its re-injection).
    hop_limit: int = 30
    #: Seconds within which an answer to a copy counts as the same flow of mail: a
    #: submission whose In-Reply-To or References names a copy the hub sent less than this
    #: long ago has that copy's hops added to its own (issue 12). Two careless
    #: auto-responders that answer each other with new messages then reach ``hop_limit``
    #: as a loop does, while people, who do not answer thirty times within seconds, never
    #: do. 0: answers never count.
    reply_window: float = 120.0

    @property
    def lmtp_size_limit(self) -> int:
        """What the LMTP server advertises (SIZE) and accepts in DATA.

        Postfix counts a message as its lines plus two bytes each (the CRLF), without the
        dot-stuffing, as the LMTP server does; but it compares with the advertised SIZE
        its queue file's content size, which has a byte more for each line of 128 bytes
        or more (under 1/64 more), and the LMTP server also counts the Received and
        X-SingleWindow-Origin headers Postfix and the milter add (1 MiB is room enough).
        """
        return self.message_size_limit + self.message_size_limit // 64 + (1 << 20)

    @property
    def xml_size_limit(self) -> int:
        """The largest XML a copy can carry within :attr:`copy_size_limit`.

        A copy carries its XML base64-encoded (57 bytes to a 78-byte line with CRLF,
        RFC 2045 6.8) after its header block, for which 64 KiB are kept.
        """
        return max(0, (self.copy_size_limit - COPY_HEADER_ROOM) // 78 * 57)


#: Postfix time units (postconf(5), "time unit").
_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def postfix_seconds(value: str) -> float:
    """A Postfix time value (``5d``, ``300s``, ``40``: seconds) in seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", value)
    if match is None:
        raise ConfigError(f"not a Postfix time value: {value!r}")
    return float(match[1]) * _TIME_UNITS[match[2] or "s"]


@dataclass(frozen=True, slots=True)
class Queue:
    """Postfix's retry schedule (postconf(5)); the queue, not memory, holds waiting mail."""

    #: How long a message may wait (e.g. for an agency's MTA) before it fails and the
    #: submitter is told (maximal_queue_lifetime).
    lifetime: str = "5d"
    #: First retry after a deferral, e.g. a maildrop locked by a POP3 session
    #: (minimal_backoff_time); later retries back off up to ``maximal_backoff``.
    minimal_backoff: str = "300s"
    #: Longest wait between retries (maximal_backoff_time).
    maximal_backoff: str = "4000s"
    #: How often the queue manager scans the deferred queue (queue_run_delay).
    run_delay: str = "300s"

    @property
    def lifetime_seconds(self) -> float:
        """``lifetime`` in seconds (a Postfix time value: ``5d``, ``300s``, ``40``)."""
        return postfix_seconds(self.lifetime)


@dataclass(frozen=True, slots=True)
class MilterOptions:
    #: Database connections the milter holds at most. libmilter runs one thread per SMTP
    #: connection; a thread waits up to ``database.connect_timeout`` for a free one, then
    #: defers the message (451 4.3.0).
    connections: int = 8
    #: Seconds libmilter waits for Postfix to send the next milter command before it drops
    #: the connection (smfi_settimeout(3)); 0 keeps libmilter's default (7210).
    timeout: int = 0


@dataclass(frozen=True, slots=True)
class Paths:
    """The state directory and where each component keeps its files inside it: the one
    place that spells its layout out (the daemons, ``swctl stack``, the supervisor and a
    deployed node's defaults all ask here)."""

    #: The stack's state directory: config, databases, queues, maildrops, sockets, logs.
    #: Unix socket paths live under it and must stay below ~100 bytes, so keep it short.
    state_dir: Path = Path("/var/lib/singlewindow")

    @property
    def config_file(self) -> Path:
        """The local stack's configuration file (``swctl stack up`` writes it)."""
        return self.state_dir / STATE_CONFIG_NAME

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def tls_dir(self) -> Path:
        """The local stack's certificate, key and CA (``[tls]`` left empty)."""
        return self.state_dir / "tls"

    @property
    def keys_dir(self) -> Path:
        """The stamp key and the re-injection client certificate, when not configured."""
        return self.state_dir / "keys"

    @property
    def pg_data(self) -> Path:
        """The local stack's private PostgreSQL cluster's data directory."""
        return self.state_dir / "pg" / "data"

    @property
    def pg_socket_dir(self) -> Path:
        """The local stack's private PostgreSQL cluster's unix socket directory."""
        return self.run_dir / "pg"

    @property
    def postfix_conf(self) -> Path:
        """The private Postfix instance's ``config_directory``."""
        return self.state_dir / "postfix"

    @property
    def postfix_queue(self) -> Path:
        """The private Postfix instance's ``queue_directory``."""
        return self.state_dir / "spool"

    @property
    def postfix_data(self) -> Path:
        """The private Postfix instance's ``data_directory``."""
        return self.state_dir / "lib" / "postfix"

    @property
    def postfix_log(self) -> Path:
        """Where the private Postfix instance logs (its ``maillog_file``)."""
        return self.log_dir / "postfix.log"

    @property
    def dovecot_conf(self) -> Path:
        """The private Dovecot instance's configuration directory."""
        return self.state_dir / "dovecot"

    @property
    def dovecot_base(self) -> Path:
        """The private Dovecot instance's ``base_dir`` (its sockets, master.pid)."""
        return self.run_dir / "dovecot"

    @property
    def dovecot_state(self) -> Path:
        """The private Dovecot instance's ``state_dir``."""
        return self.state_dir / "lib" / "dovecot"

    @property
    def dovecot_log(self) -> Path:
        return self.log_dir / "dovecot.log"

    @property
    def policy_socket(self) -> Path:
        return self.run_dir / "policy.sock"

    @property
    def lmtp_socket(self) -> Path:
        return self.run_dir / "lmtp.sock"

    @property
    def milter_socket(self) -> Path:
        return self.run_dir / "milter.sock"

    @property
    def maildrop_dir(self) -> Path:
        return self.state_dir / "maildrops"

    @property
    def table_socket(self) -> Path:
        """The policy daemon's socketmap behind the generated tables (policy/socketmap.py)."""
        return self.run_dir / "tables.sock"

    @property
    def maps_dir(self) -> Path:
        """Postfix's lookup tables generated from the directory (singlewindow.maps)."""
        return self.state_dir / "maps"

    @property
    def demo_credentials(self) -> Path:
        """The demo mail client's login and password (``swctl stack up --demo``, 0600)."""
        return self.state_dir / "demo-credentials"

    @property
    def supervisor_socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    def pid_file(self, name: str) -> Path:
        """Where the pid of ``name`` (a daemon of the stack, or "supervisor") is kept."""
        return self.run_dir / f"{name}.pid"

    def notify_socket(self, name: str) -> Path:
        """Where the supervisor hears daemon ``name``'s sd_notify(3) messages (its
        ``NOTIFY_SOCKET``): READY=1, WATCHDOG=1."""
        return self.run_dir / f"{name}.notify"


@dataclass(frozen=True, slots=True)
class Tls:
    #: PEM certificate chain for the MSA and POP3 listeners; ``swctl stack up`` generates
    #: one at this place when it is missing (state_dir/tls/ if left empty), issued by a CA
    #: of the stack's own (``ca_file``, else state_dir/tls/ca.pem) for the hub's host
    #: name, ``localhost`` and the loopback addresses.
    cert_file: Path | None = None
    #: PEM private key matching ``cert_file``.
    key_file: Path | None = None
    #: The deployment's CA (multi-node): an edge's POP3 proxy verifies the backend's
    #: certificate and name against it. PostgreSQL's clients name it in
    #: ``database.conninfo`` (``sslrootcert``). Empty on a single node.
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Metrics:
    """The Prometheus exporter, ``python -m singlewindow.metrics`` (issue 14)."""

    #: ``HOST:PORT`` (``[ADDRESS]:PORT`` for IPv6) where ``/metrics`` is served over HTTP.
    #: The local stack keeps it on loopback; a deployed node sets its management address,
    #: which only the monitoring network reaches (the firewall role).
    listen: str = "127.0.0.1:9750"
    #: Where daemons keep the counters that live only in their memory (the policy
    #: daemon's decisions), one file per process in prometheus_client's multiprocess
    #: mode; the exporter adds them up. Files of exited processes stay, so the counts
    #: survive a daemon's restart. Empty: state_dir/run/metrics. It must be writable by
    #: the daemons' user; a daemon that cannot write there still runs, uncounted.
    multiprocess_dir: Path | None = None

    @property
    def address(self) -> tuple[str, int]:
        """``listen`` as (host, port)."""
        return host_port(self.listen, "metrics.listen")


@dataclass(frozen=True, slots=True)
class Health:
    """What ``swctl health`` (and the exporter's ``singlewindow_component_up`` and queue
    gauges, :mod:`singlewindow.health`) counts as a problem. A threshold of 0 is off."""

    #: The components this node runs and ``swctl health`` checks: a multi-node POP3
    #: backend runs only ``["dovecot", "maildrop"]`` (its POP3S listener and its maildrop
    #: service, ``sw-maildrop``; an edge's ``maildrop`` probe, of the backend it hands
    #: maildrop deliveries to, runs whenever ``[maildrop] backend`` is set).
    components: tuple[str, ...] = ("postgresql", "postfix", "dovecot", "policy", "milter",
                                   "transport", "console")
    #: Seconds each probe (a connection, a greeting, a query) may take before the
    #: component counts as not answering.
    timeout: float = 5.0
    #: Messages waiting in Postfix's incoming, active and deferred queues together: a
    #: warning from this many on, critical from ``queue_critical`` on.
    queue_warning: int = 100
    queue_critical: int = 1000
    #: Seconds since the oldest of those messages arrived: a warning from this age on
    #: (an agency not answering for an hour), critical from ``queue_age_critical`` on.
    #: Postfix gives up on a message after ``queue.lifetime``.
    queue_age_warning: int = 3600
    queue_age_critical: int = 4 * 3600
    #: Messages in the hold queue (put there by an operator, ``postsuper -h``): a
    #: warning from this many on, since nothing delivers them until released.
    hold_warning: int = 1
    #: Days before a certificate's notAfter (the listeners', the transport's
    #: re-injection client certificate, the deployment's CA): warning, then critical.
    certificate_warning_days: int = 21
    certificate_critical_days: int = 7
    #: Seconds a daemon (policy daemon, milter, transport) may go without telling its
    #: watchdog it is alive (sd_notify ``WATCHDOG=1``, sent every half of it from its
    #: event loop) before it is killed and restarted: systemd's ``WatchdogSec=`` on a
    #: deployed node (the Ansible role's units), the supervisor on the local stack.
    #: 0: no watchdog.
    watchdog_sec: float = 30.0


@dataclass(frozen=True, slots=True)
class Notices:
    """The notices the hub writes (:mod:`singlewindow.notices`, docs/notices.md)."""

    #: An operator's own wording: a template here replaces the package's template of the
    #: same name (``agency_failure.txt.j2``, ``bounce.cf.j2``, …), the rest stay the
    #: package's. A missing directory is none; the daemons' user must be able to read it
    #: (the transport renders from it). The transport refuses to start when a template
    #: here has a name no notice has or a syntax error; one that fails when rendered is
    #: logged as an ERROR and the package's is rendered instead, so no notice is lost.
    templates_dir: Path = Path("/etc/singlewindow/notices")


@dataclass(frozen=True, slots=True)
class Console:
    """The web console, ``python -m singlewindow.console.server`` (issue 18): operators
    search the message log, companies follow their own submissions. HTTPS only."""

    #: ``HOST:PORT`` (``[ADDRESS]:PORT`` for IPv6) where the console serves HTTPS. The
    #: local stack keeps it on loopback; a deployed node sets its management address
    #: (the Ansible roles), never a public listener's.
    listen: str = "127.0.0.1:8443"
    #: PEM certificate chain and key of the console; empty: the hub's ``[tls]`` ones.
    cert_file: Path | None = None
    key_file: Path | None = None
    #: A session ends after this many seconds without a request ...
    session_idle_seconds: int = 1800
    #: ... and this many seconds after the login, whatever happens.
    session_max_seconds: int = 12 * 3600
    #: Every failed login is answered only after this many seconds (slowed logins).
    login_delay: float = 1.0
    #: After this many failed logins for one login name, or from one client address,
    #: within ``login_window_seconds``, further attempts are refused (HTTP 429) until the
    #: window has passed, the right password included.
    login_attempts: int = 5
    login_window_seconds: int = 900

    @property
    def address(self) -> tuple[str, int]:
        """``listen`` as (host, port)."""
        return host_port(self.listen, "console.listen")


#: The formats of the daemons' log lines (``[log] format``).
LOG_FORMATS = ("keyvalue", "json", "journal")


@dataclass(frozen=True, slots=True)
class Log:
    """How the daemons write their log (:mod:`singlewindow.logs`). Every decision (policy,
    milter, the transport's per recipient, each copy and DSN) is one line carrying the
    Single Window id and the Postfix queue id, so log lines, ``swctl trace`` and the
    metrics join on them."""

    #: ``keyvalue``: one text line per record on standard error, a decision's fields as
    #: ``key=value`` (the local stack's ``DIR/log/NAME.log``); ``json``: one JSON object
    #: per line, the fields as its members; ``journal``: straight to systemd-journald's
    #: native socket, the fields as journal fields (``SW_ID=``, ``SW_QUEUE_ID=``, …, see
    #: ``journalctl -o verbose``), what the Ansible role's units use.
    format: str = "keyvalue"


def host_port(value: str, where: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[ADDRESS]:PORT`` for IPv6) as (host, port), or :class:`ConfigError`
    naming the option ``where``."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or \
            any(c.isspace() for c in host):
        raise ConfigError(f"{where} must be HOST:PORT ([ADDRESS]:PORT for IPv6), "
                          f"not {value!r}")
    return host, int(port)


def _parse_ip(text: object, where: str, *, network: bool) -> None:
    try:
        if not isinstance(text, str):
            raise ValueError
        if network:
            ipaddress.ip_network(text, strict=True)
        else:
            ipaddress.ip_address(text)
    except ValueError:
        what = "an IP network or address" if network else "a single IP address"
        raise ConfigError(f"{where}: {text!r} is not {what}") from None


@dataclass(frozen=True, slots=True)
class Maildrop:
    """The maildrop hop of a multi-node hub (issue 15): the POP3 maildrops live on one
    backend node; the edges' transports hand their maildrop deliveries to its maildrop
    service (``sw-maildrop``, :mod:`singlewindow.transport.backend`) over LMTP with
    STARTTLS, and it delivers them under the POP3 session lock as a single node does."""

    #: On an edge: ``HOST:PORT`` of the backend's maildrop service. HOST is the name (or
    #: address) in the backend's certificate, verified against ``[tls] ca_file``; the
    #: service's port is 24 when deployed. Empty (a single node, the local stack): the
    #: transport delivers into the maildrops itself with dovecot-lda.
    backend: str = ""
    #: On the backend: ``HOST:PORT`` where the maildrop service listens (deployed: the
    #: backend's own address, port 24). Its certificate is ``[tls] cert_file``.
    listen: str = "127.0.0.1:24"
    #: On the backend: the edges' addresses, single IP addresses (no networks); a
    #: connection from any other address is answered ``554 5.7.1`` and closed. Loopback
    #: is not implied.
    clients: tuple[str, ...] = ()
    #: Seconds the backend holds a delivery while a POP3 session holds the maildrop,
    #: delivering it as soon as the session ends; past this it answers ``451 4.2.1`` and
    #: the edge defers. An edge waits this long plus a margin for the backend's answer, so
    #: give edges and backend the same value, and keep it well under half of
    #: ``[transport] claim_lease`` (the copy's claim must outlast the wait).
    lock_wait: float = 60.0

    @property
    def backend_address(self) -> tuple[str, int]:
        return host_port(self.backend, "maildrop.backend")

    @property
    def listen_address(self) -> tuple[str, int]:
        return host_port(self.listen, "maildrop.listen")

    def check(self) -> None:
        """Refuse what cannot work, naming the option (:class:`ConfigError`)."""
        if self.backend:
            host_port(self.backend, "maildrop.backend")
        host_port(self.listen, "maildrop.listen")
        for client in self.clients:
            _parse_ip(client, "maildrop.clients", network=False)  # one per edge, no networks
        if isinstance(self.lock_wait, bool) or not isinstance(self.lock_wait, int | float) \
                or not self.lock_wait >= 0:
            raise ConfigError(f"maildrop.lock_wait must be 0 or more seconds, "
                              f"not {self.lock_wait!r}")


#: strongSwan time values (swanctl.conf(5), "TIME FORMATS"): seconds, or s, m, h, d.
_SWANCTL_TIME = re.compile(r"^[0-9]+[smhd]?$")
#: swanctl.conf proposals: algorithm keywords joined by dashes, proposals by commas.
_PROPOSALS = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*(,[a-z0-9]+(-[a-z0-9]+)*)*$")


@dataclass(frozen=True, slots=True)
class Ipsec:
    """The IPsec tunnels of the MTA interface (SPEC D11, issue 16; :mod:`singlewindow.ipsec`).

    On a deployed edge every MTA party reaches port 25 only through its own tunnel:
    ``swctl render --target ipsec`` writes one strongSwan connection per party with a
    tunnel (``swctl party add --ipsec-*``, ``swctl party tunnel``), ``--target tunnels``
    the firewall chain that takes the MTA port only through it. The local stack leaves
    this off: it runs on loopback, without IPsec.

    The cryptographic defaults are IKEv2 only, AES-256-GCM (AEAD, 16-byte ICV), PRF
    HMAC-SHA-384, ECDH over NIST P-384 or Curve25519, and a fresh key exchange for every
    CHILD_SA (PFS), in strongSwan 5.9's keywords (docs.strongswan.org, "Algorithm
    Proposals"). They follow the direction of BSI TR-02102-3 ("Use of IPsec and IKEv2",
    which asks for a 120-bit security level from 2023) and the NCSC-NL IPsec guidelines:
    IKEv2, AEAD, elliptic-curve groups of at least that strength, PFS. The lifetimes (IKE
    SA rekeyed every 4 h and reauthenticated daily, ESP keys every hour) stay well inside
    the limits such guidelines set for IKE and IPsec SAs. Neither text could be read word
    for word where these defaults were chosen: a network team checks them against the
    version it signs. Both sides must share a proposal; the party's gateway is set to match.
    """

    #: Render the tunnels and require one for every MTA party (``swctl party add`` with
    #: ``--peer`` but no tunnel is refused). false: the local stack, loopback, no IPsec.
    enabled: bool = False
    #: The hub's IKE address(es) (swanctl ``local_addrs``), single addresses. Empty: any
    #: address of the node.
    local_addrs: tuple[str, ...] = ()
    #: The hub's IKE identity (an address, FQDN or DN). With certificates it must be in
    #: the hub's certificate (``certificate``); with pre-shared keys the parties configure
    #: it as their remote identity. Required when enabled.
    local_id: str = ""
    #: The hub's side of every tunnel (swanctl ``local_ts``): the MTA listener's
    #: address(es), as networks or single addresses. Required when enabled.
    local_ts: tuple[str, ...] = ()
    #: The hub's certificate for parties that authenticate with certificates: a file in
    #: /etc/swanctl/x509 (the singlewindow_ipsec role copies the node's TLS certificate
    #: there, and its key to /etc/swanctl/private/). Each such party's CA is
    #: /etc/swanctl/x509ca/sw-NAME.pem.
    certificate: str = "singlewindow.pem"
    #: ``kernel``: the kernel's ESP (deployed nodes); ``libipsec``: strongSwan's userland
    #: ESP on the TUN device ``ipsec0``, UDP-encapsulated (test labs, kernels without
    #: ESP). The firewall rules differ: a tunnel's reqid, or the TUN device.
    esp: str = "kernel"
    #: IKE SA proposals (swanctl ``proposals``).
    ike_proposals: str = "aes256gcm16-prfsha384-ecp384,aes256gcm16-prfsha384-curve25519"
    #: CHILD_SA (ESP) proposals; the key exchange group makes every rekeying do a fresh
    #: Diffie-Hellman exchange (PFS).
    esp_proposals: str = "aes256gcm16-ecp384,aes256gcm16-curve25519"
    #: IKE SA rekeying (new keys, no new authentication): every 4 hours.
    rekey_time: str = "4h"
    #: IKE SA reauthentication (credentials checked again: an expired or revoked
    #: certificate, a changed pre-shared key ends the tunnel): every 24 hours. strongSwan
    #: 5.9 closes the old IKE SA before it makes the new one (unless charon's
    #: make_before_break is set): a moment without the tunnel, which SMTP's retries cover.
    reauth_time: str = "24h"
    #: CHILD_SA (ESP keys) rekeying, with PFS: every hour; the hard lifetime is 10% more.
    child_rekey_time: str = "1h"
    #: Dead peer detection: a liveness check after this long without traffic from the
    #: party; a dead tunnel is replaced by its trap policy (it comes back on demand).
    dpd_delay: str = "30s"

    def check(self) -> None:
        """Refuse what cannot work, naming the option (:class:`ConfigError`)."""
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"ipsec.enabled must be true or false, not {self.enabled!r}")
        if self.esp not in ESP_MODES:
            raise ConfigError(f"ipsec.esp must be one of {', '.join(ESP_MODES)}, "
                              f"not {self.esp!r}")
        for address in self.local_addrs:
            _parse_ip(address, "ipsec.local_addrs", network=False)
        for network in self.local_ts:
            _parse_ip(network, "ipsec.local_ts", network=True)
        for name in ("rekey_time", "reauth_time", "child_rekey_time", "dpd_delay"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _SWANCTL_TIME.match(value):
                raise ConfigError(f"ipsec.{name} must be a time such as \"30s\", \"4h\" "
                                  f"or \"1d\", not {value!r}")
        for name in ("ike_proposals", "esp_proposals"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _PROPOSALS.match(value):
                raise ConfigError(f"ipsec.{name} must be swanctl proposals (keywords joined "
                                  f"by '-', proposals by ','), not {value!r}")
        if not re.fullmatch(r"[A-Za-z0-9._/-]+", self.certificate):
            raise ConfigError(f"ipsec.certificate must be a file name, not "
                              f"{self.certificate!r}")
        if self.enabled:
            self._check_enabled()

    def _check_enabled(self) -> None:
        if not self.local_id:
            raise ConfigError("ipsec.local_id is required when ipsec.enabled is true: the "
                              "hub's IKE identity")
        problem = id_problem(self.local_id)
        if problem is not None:
            raise ConfigError(f"ipsec.local_id {problem}")
        if not self.local_ts:
            raise ConfigError("ipsec.local_ts is required when ipsec.enabled is true: the "
                              "address(es) of the MTA listener the tunnels carry")


@dataclass(frozen=True, slots=True)
class Config:
    hub: Hub = field(default_factory=Hub)
    database: Database = field(default_factory=Database)
    listeners: Listeners = field(default_factory=Listeners)
    policy: Policy = field(default_factory=Policy)
    transport: Transport = field(default_factory=Transport)
    milter: MilterOptions = field(default_factory=MilterOptions)
    queue: Queue = field(default_factory=Queue)
    paths: Paths = field(default_factory=Paths)
    tls: Tls = field(default_factory=Tls)
    metrics: Metrics = field(default_factory=Metrics)
    health: Health = field(default_factory=Health)
    log: Log = field(default_factory=Log)
    maildrop: Maildrop = field(default_factory=Maildrop)
    ipsec: Ipsec = field(default_factory=Ipsec)
    notices: Notices = field(default_factory=Notices)
    console: Console = field(default_factory=Console)

    @property
    def cert_file(self) -> Path:
        return self.tls.cert_file or self.paths.tls_dir / "cert.pem"

    @property
    def key_file(self) -> Path:
        return self.tls.key_file or self.paths.tls_dir / "key.pem"

    @property
    def console_cert_file(self) -> Path:
        return self.console.cert_file or self.cert_file

    @property
    def console_key_file(self) -> Path:
        return self.console.key_file or self.key_file

    @property
    def ca_file(self) -> Path:
        """The CA a mail client trusts for ``cert_file``: ``[tls] ca_file``, else the local
        stack's own CA, which ``swctl stack up`` makes beside its certificate."""
        return self.tls.ca_file or self.paths.tls_dir / "ca.pem"

    @property
    def stamp_key_file(self) -> Path:
        return self.hub.stamp_key_file or self.paths.keys_dir / "stamp.key"

    @property
    def reinject_cert_file(self) -> Path:
        return (self.transport.reinject_cert_file
                or self.paths.keys_dir / "reinject-cert.pem")

    @property
    def reinject_key_file(self) -> Path:
        return (self.transport.reinject_key_file
                or self.paths.keys_dir / "reinject-key.pem")

    @property
    def metrics_dir(self) -> Path:
        return self.metrics.multiprocess_dir or self.paths.run_dir / "metrics"

    @property
    def postfix_maillog(self) -> Path:
        return self.transport.postfix_maillog or self.paths.postfix_log

    @property
    def dovecot_log(self) -> Path:
        """Where Dovecot (and dovecot-lda) log: the templates set log_path to this."""
        return self.paths.dovecot_log

    @property
    def postfix_config(self) -> Path:
        return self.transport.postfix_config or self.paths.postfix_conf

    @property
    def dovecot_config(self) -> Path:
        return self.transport.dovecot_config or self.paths.dovecot_conf / "dovecot.conf"


def _build(cls: type[Any], data: dict[str, Any], where: str, base: Any = None) -> Any:
    """Make dataclass ``cls`` from a TOML table, refusing unknown keys by name; what the
    table does not set is ``base``'s (``cls()`` if None)."""
    base = cls() if base is None else base
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"unknown option {where}{key}")
        default = getattr(base, key)
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{key} must be a table")
            kwargs[key] = _build(type(default), value, f"{where}{key}.", default)
        elif isinstance(default, Path) or known[key].type in ("Path", "Path | None"):
            kwargs[key] = Path(value)
        elif isinstance(default, tuple):
            if not isinstance(value, list):
                raise ConfigError(f"{where}{key} must be a list")
            kwargs[key] = tuple(value)
        elif isinstance(default, float) and isinstance(value, int | float):
            kwargs[key] = float(value)
        else:
            kwargs[key] = value
    return replace(base, **kwargs)


def parse(text: str, base: Config | None = None) -> Config:
    """Build a :class:`Config` from TOML text; what it does not set is ``base``'s (the
    defaults if None)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from exc
    config: Config = _build(Config, data, "", base)
    if config.log.format not in LOG_FORMATS:
        raise ConfigError(f"log.format must be one of {', '.join(LOG_FORMATS)}, "
                          f"not {config.log.format!r}")
    config.maildrop.check()
    config.ipsec.check()
    config.console.address  # noqa: B018 (refuses a malformed listen now, not at start)
    return config


def load(path: Path, base: Config | None = None) -> Config:
    """Read the config file at ``path`` (over ``base``, as :func:`parse`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return parse(text, base)


def stack_defaults(state_dir: Path) -> Config:
    """The defaults of the local stack in ``state_dir``: its own paths, and its private
    PostgreSQL cluster's socket (``host=DIR/run/pg``) rather than the system's."""
    paths = Paths(state_dir=state_dir)
    return Config(paths=paths, database=Database(
        conninfo=f"host={paths.pg_socket_dir} dbname=singlewindow"))


def for_state_dir(state_dir: Path) -> Config:
    """The config of the local stack in ``state_dir``: its file, if present, over the
    stack's own defaults (:func:`stack_defaults`). A file written before ``swctl stack up``
    need only name what differs (issue 14: the ports), not repeat the stack's paths."""
    base = stack_defaults(state_dir)
    path = Paths(state_dir).config_file
    config = load(path, base) if path.exists() else base
    return replace(config, paths=replace(config.paths, state_dir=state_dir))


def locate(state_dir: str | None = None) -> Config:
    """Find the config ``swctl`` works with.

    Order: ``--state-dir``, then ``SW_STATE_DIR``, then ``SW_CONFIG`` or the deployed
    system's ``/etc/singlewindow/singlewindow.toml``.
    """
    chosen = state_dir or os.environ.get("SW_STATE_DIR")
    if chosen:
        return for_state_dir(Path(chosen).resolve())
    return load(Path(os.environ.get("SW_CONFIG", str(DEFAULT_CONFIG_FILE))))


def to_toml(config: Config) -> str:
    """Write ``config`` as TOML (only what differs from the defaults)."""
    lines = ["# Single Window configuration; singlewindow/config.py documents every option."]
    defaults = Config()
    for section in fields(Config):
        current, default = getattr(config, section.name), getattr(defaults, section.name)
        changed = [
            (f.name, getattr(current, f.name))
            for f in fields(current)
            if getattr(current, f.name) != getattr(default, f.name)
        ]
        if not changed:
            continue
        lines.append(f"\n[{section.name}]")
        for name, value in changed:
            lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
