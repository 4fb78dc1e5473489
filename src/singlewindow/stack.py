"""The local stack: private PostgreSQL, Postfix, Dovecot and the project's daemons.

``swctl stack up`` builds everything under one state directory and starts it on
127.0.0.1 (SPEC §6); ``down`` stops exactly what ``up`` started, by pid; ``status`` tells
what runs. The project's daemons run under :mod:`singlewindow.supervisor`, which starts
one again when it dies, as systemd does on a deployed node. The system's own Postfix,
Dovecot and PostgreSQL configuration and services are not touched: each server runs as a
private instance with its own configuration directory (``postfix -c``, ``dovecot -c``,
``pg_ctl -D``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from singlewindow import config as configmod
from singlewindow import maps, origin, passwords, render
from singlewindow.config import Config, Paths
from singlewindow.node import MAILDROP_USER, template_context
from singlewindow.notices import bounce
from singlewindow.services import DAEMONS, Daemon, alive, port_open, read_pid
from singlewindow.store import connect, directory, migrate, snapshot
from singlewindow.store import console as console_store

#: System users the stack needs (Debian packages create the first three, scripts/install
#: the last).
REQUIRED_USERS = ("postgres", "postfix", "dovecot", MAILDROP_USER)
#: The supervisor's module (singlewindow/supervisor.py; named here, not imported, since it
#: builds on this module).
SUPERVISOR = "singlewindow.supervisor"
START_TIMEOUT = 30.0

Say = Callable[[str], None]


class StackError(Exception):
    """The stack cannot be brought up or down; the text says what to do."""


# --- helpers ---------------------------------------------------------------------------

def pg_bin(tool: str) -> str:
    """A PostgreSQL server tool from the newest installed major version."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for directory_ in reversed(versions):
        if (directory_ / tool).exists():
            return str(directory_ / tool)
    found = shutil.which(tool)
    if found is None:
        raise StackError(f"PostgreSQL's {tool} is not installed: run scripts/install")
    return found


def run(cmd: list[str], *, user: str | None = None, input_: str | None = None,
        check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; output goes through a file, not a pipe, because a
    daemon that forks (dovecot) keeps its inherited descriptors open for its lifetime."""
    with tempfile.TemporaryFile("w+") as out:
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, text=True,
                                input=input_, user=user, group=user,
                                extra_groups=[] if user else None, cwd=cwd, check=False)
        out.seek(0)
        output = out.read()
    if check and result.returncode != 0:
        detail = output.strip().splitlines()[-5:]
        raise StackError(f"{' '.join(cmd[:3])} failed: " + " | ".join(detail))
    return subprocess.CompletedProcess(cmd, result.returncode, output, "")


def _chown(path: Path, user: str, mode: int) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, mode)


def _mkdir(path: Path, user: str = "root", mode: int = 0o755) -> None:
    path.mkdir(parents=True, exist_ok=True)
    _chown(path, user, mode)


def _wait(predicate: Callable[[], bool], what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    tail = ""
    if log is not None and log.exists():
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
    raise StackError(f"{what} did not come up within {START_TIMEOUT:.0f}s. {tail}")


def _smtp_greets(host: str, port: int) -> bool:
    """The listener answers with a 220 greeting (a broken smtpd accepts, then dies)."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=2) as s:
        return s.recv(512).startswith(b"220")
    return False


def preflight() -> None:
    if os.geteuid() != 0:
        raise StackError("the stack needs root (Postfix starts as root): run with sudo")
    for user in REQUIRED_USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise StackError(f"system user {user!r} is missing: run scripts/install") from None
    for tool in ("postfix", "dovecot", "doveconf", "openssl"):
        if shutil.which(tool) is None:
            raise StackError(f"{tool} is not installed: run scripts/install")


# --- configuration ---------------------------------------------------------------------

def init_config(state_dir: Path, base: Config | None = None) -> Config:
    """The stack's config: the file in ``state_dir`` if any (over the stack's own defaults,
    :func:`configmod.for_state_dir`), else one written from ``base``."""
    paths = Paths(state_dir)
    if paths.config_file.exists():
        return configmod.for_state_dir(state_dir)
    config = base or Config()
    # No role here: each part adds its own (Database.dsn).
    own = configmod.stack_defaults(state_dir)
    config = replace(config, paths=replace(config.paths, state_dir=state_dir),
                     database=replace(config.database, conninfo=own.database.conninfo))
    state_dir.mkdir(parents=True, exist_ok=True)
    render.write_atomic(paths.config_file, configmod.to_toml(config))
    return config


# --- components ------------------------------------------------------------------------

def _self_signed(cert: Path, key: Path, *options: str) -> None:
    """A self-signed certificate and its key (``openssl req -x509``, plus ``options``).

    The key is 0600 from the start (umask), never readable by others, not even for a
    moment; the certificate is public (0644).
    """
    cert.parent.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)
    try:
        run(["openssl", "req", "-x509", "-nodes", *options,
             "-keyout", str(key), "-out", str(cert)])
    finally:
        os.umask(old)
    os.chmod(key, 0o600)
    os.chmod(cert, 0o644)


def _stack_names(config: Config) -> str:
    """subjectAltName of the stack's certificate: the hub's names, and ``localhost`` and
    the loopback addresses, where clients on this machine reach it by name (fetchmail
    and others check the name they connected to, and some cannot match an address)."""
    names = [f"DNS:{config.hub.hostname}", f"DNS:{config.hub.domain}", "DNS:localhost",
             "IP:127.0.0.1", "IP:::1"]
    if config.listeners.bind not in ("127.0.0.1", "::1", "0.0.0.0", "::"):
        names.append(f"IP:{config.listeners.bind}")
    return ",".join(names)


def _tls(config: Config, say: Say) -> None:
    """The MSA's and POP3's certificate, unless the operator configured one: issued by a
    CA of the stack's own (``DIR/tls/ca.pem``), which is what a mail client is told to
    trust. The CA's key signs this one certificate and is then deleted, so trusting
    ``ca.pem`` trusts nothing else. ``cert.pem`` holds the chain (server, then CA)."""
    have = config.cert_file.exists() and config.key_file.exists()
    # A certificate made before the stack had a CA (self-signed) is made again.
    if have and (config.tls.cert_file is not None or config.ca_file.exists()):
        return
    say(f"tls: generating a certificate for {config.hub.hostname}, localhost and a CA "
        f"for it ({config.ca_file})")
    tls_dir = config.cert_file.parent
    tls_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tls_dir) as tmp:
        ca_key, csr, ext = Path(tmp, "ca.key"), Path(tmp, "server.csr"), Path(tmp, "ext")
        _self_signed(config.ca_file, ca_key, "-newkey", "rsa:2048", "-days", "825",
                     "-subj", f"/CN=Single Window local stack CA {config.hub.hostname}",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        old = os.umask(0o077)
        try:
            run(["openssl", "req", "-new", "-nodes", "-newkey", "rsa:2048",
                 "-subj", f"/CN={config.hub.hostname}", "-keyout", str(config.key_file),
                 "-out", str(csr)])
        finally:
            os.umask(old)
        ext.write_text("basicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\n"
                       f"subjectAltName={_stack_names(config)}\n")
        server = Path(tmp, "server.pem")
        run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(config.ca_file),
             "-CAkey", str(ca_key), "-days", "825",
             "-extfile", str(ext), "-out", str(server)])
        render.write_atomic(config.cert_file,
                            server.read_text() + config.ca_file.read_text())
    os.chmod(config.key_file, 0o600)
    os.chmod(config.cert_file, 0o644)


def _keys(config: Config, say: Say) -> None:
    """The daemons' secrets (issue 12, "one way in"): the origin stamp's MAC key and the
    transport's client certificate for the re-injection listener. Made once and kept:
    stamps of mail still in the queue must verify after a restart. The daemons run as
    root here, so 0600; Postfix reads the certificate (public) before it drops
    privileges."""
    if origin.create_key(config.stamp_key_file, 0o600):
        say(f"keys: generated the origin stamp key {config.stamp_key_file}")
    cert, key = config.reinject_cert_file, config.reinject_key_file
    if cert.exists() and key.exists():
        return
    say("keys: generating the transport's re-injection client certificate")
    _self_signed(cert, key, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-days", "3650", "-subj", f"/CN=sw-transport {config.hub.hostname}",
                 "-addext", "extendedKeyUsage=clientAuth")


def _postgres(config: Config, paths: Paths, ctx: dict[str, Any], say: Say) -> None:
    data = paths.pg_data
    if not (data / "PG_VERSION").exists():
        say("postgresql: initdb")
        _mkdir(data.parent, "postgres", 0o700)
        _mkdir(data, "postgres", 0o700)
        run([pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
             "--locale=C", "--auth-local=peer", "--auth-host=reject", "--no-sync"],
            user="postgres", cwd=paths.state_dir)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude = 'singlewindow.conf'\n")
    _mkdir(paths.pg_socket_dir, "postgres", 0o755)
    settings = (
        "# Generated by swctl stack: the private cluster of the local stack.\n"
        "listen_addresses = ''\n"
        f"unix_socket_directories = '{paths.pg_socket_dir}'\n"
        "unix_socket_permissions = 0777\n"
    )
    for name, text in (("singlewindow.conf", settings),
                       ("pg_hba.conf", render.render("postgresql/pg_hba.conf.j2", ctx)),
                       ("pg_ident.conf", render.render("postgresql/pg_ident.conf.j2", ctx))):
        render.write_atomic(data / name, text, 0o600)
        _chown(data / name, "postgres", 0o600)
    log = paths.log_dir / "postgresql.log"
    if not log.exists():
        log.touch()
    _chown(log, "postgres", 0o640)
    ctl = [pg_bin("pg_ctl"), "-D", str(data)]
    if run([*ctl, "status"], user="postgres", check=False, cwd=paths.state_dir).returncode == 0:
        run([*ctl, "reload"], user="postgres", cwd=paths.state_dir)
    else:
        say("postgresql: starting")
        run([*ctl, "-l", str(log), "-w", "-t", "60", "start"], user="postgres", cwd=paths.state_dir)
    db, owner = ctx["database"]["dbname"], configmod.OWNER_ROLE
    # One login role per part of the hub (config.py); migration 0007 grants their rights.
    bootstrap = "".join(
        f"SELECT 'CREATE ROLE {role} LOGIN' WHERE NOT EXISTS "
        f"(SELECT FROM pg_roles WHERE rolname = '{role}') \\gexec\n"
        for role in configmod.ROLES) + (
        f"SELECT 'CREATE DATABASE {db} OWNER {owner}' WHERE NOT EXISTS "
        f"(SELECT FROM pg_database WHERE datname = '{db}') \\gexec\n"
    )
    run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(paths.pg_socket_dir),
         "-U", "postgres", "-d", "postgres", "-f", "-"], user="postgres",
        input_=bootstrap, cwd=paths.state_dir)
    with connect(config.database, autocommit=True, role=configmod.OWNER_ROLE) as conn:
        for migration in migrate.migrate(conn):
            say(f"postgresql: applied migration {migration.version:04d}_{migration.name}")


def _module(name: str) -> str:
    """The module run by ``name`` (a DAEMONS key, or "supervisor")."""
    return SUPERVISOR if name == "supervisor" else DAEMONS[name].module


def _daemon_pid(paths: Paths, name: str) -> int | None:
    pid = read_pid(paths.pid_file(name))
    return pid if pid is not None and alive(pid, _module(name)) else None


def spawn(paths: Paths, module: str, name: str,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m module`` for the stack in ``paths`` in its own session, its
    output appended to ``DIR/log/NAME.log``, ``env`` added to its environment."""
    with (paths.log_dir / f"{name}.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, "--state-dir", str(paths.state_dir)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=paths.state_dir, env={**os.environ, **(env or {})})


def _supervise(config: Config, paths: Paths, say: Say) -> None:
    """Start the supervisor unless it runs, then wait until each daemon answers."""
    pid = _daemon_pid(paths, "supervisor")
    if pid is None:
        say("supervisor: starting")
        proc = spawn(paths, SUPERVISOR, "supervisor")
        render.write_atomic(paths.pid_file("supervisor"), f"{proc.pid}\n")

        def supervising() -> bool:
            # Just after exec its /proc cmdline can read empty for a moment: ask Popen.
            return proc.poll() is None
    else:
        def supervising() -> bool:
            return alive(pid, SUPERVISOR)

        if any(_daemon_pid(paths, name) is None for name in DAEMONS):
            os.kill(pid, signal.SIGHUP)  # start again what it gave up on
    for name, daemon in DAEMONS.items():

        def ready(name: str = name, daemon: Daemon = daemon) -> bool:
            if not supervising():
                raise StackError("the supervisor exited: see "
                                 f"{paths.log_dir / 'supervisor.log'}")
            return _daemon_pid(paths, name) is not None and daemon.ready(config)

        _wait(ready, name, paths.log_dir / f"{name}.log")


def _postfix_config(config: Config, paths: Paths, ctx: dict[str, Any]) -> None:
    """Postfix's configuration and its lookup tables, before any daemon starts (the
    policy daemon rewrites the tables after each change, with postmap, which reads
    main.cf)."""
    _mkdir(paths.postfix_conf)
    _mkdir(paths.postfix_queue)
    _mkdir(paths.postfix_data, "postfix", 0o700)
    for name in ("main.cf", "master.cf", "command-filter"):
        render.render_to(f"postfix/{name}.j2", paths.postfix_conf / name, ctx)
    render.write_atomic(paths.postfix_conf / bounce.FILE,
                        bounce.text(ctx, config.notices.templates_dir))
    with connect(config.database, autocommit=True, role=configmod.ADMIN_ROLE) as conn:
        maps.write(snapshot.load(conn), config, paths.postfix_conf)


def _postfix(paths: Paths, say: Say) -> None:
    postfix = ["postfix", "-c", str(paths.postfix_conf)]
    log = paths.postfix_log
    try:
        run([*postfix, "check"])
    except StackError as exc:
        raise StackError(f"{exc} (see {log})") from None
    if run([*postfix, "status"], check=False).returncode == 0:
        run([*postfix, "reload"])
    else:
        say("postfix: starting")
        run([*postfix, "start"])


def _dovecot(config: Config, paths: Paths, ctx: dict[str, Any], say: Say) -> None:
    _mkdir(paths.dovecot_conf)
    _mkdir(paths.dovecot_base)
    _mkdir(paths.dovecot_state)
    _mkdir(config.paths.maildrop_dir, MAILDROP_USER, 0o700)
    for name in ("dovecot.conf", "sql-strong.conf.ext", "sql-digest-md5.conf.ext",
                 "sql-userdb.conf.ext"):
        render.render_to(f"dovecot/{name}.j2", paths.dovecot_conf / name, ctx, 0o640)
    conf = str(paths.dovecot_conf / "dovecot.conf")
    run(["doveconf", "-c", conf, "-n"])
    pid = read_pid(paths.dovecot_base / "master.pid")
    if pid is not None and alive(pid, "dovecot"):
        run(["dovecot", "-c", conf, "reload"])
    else:
        say("dovecot: starting")
        run(["dovecot", "-c", conf])


def up(state_dir: Path, *, demo: bool = False, base: Config | None = None,
       say: Say = print, database_only: bool = False) -> Config:
    """Bring the whole stack up (idempotent: running parts are reloaded, not restarted).

    ``database_only`` starts just the private PostgreSQL (unit tests of the store).
    """
    preflight()
    state_dir = state_dir.resolve()
    config = init_config(state_dir, base)
    paths = config.paths
    os.chmod(state_dir, 0o755)  # Postfix, Dovecot and PostgreSQL users must traverse it
    _mkdir(paths.run_dir)
    _mkdir(paths.log_dir)
    ctx = template_context(config)
    _tls(config, say)
    _keys(config, say)
    _postgres(config, paths, ctx, say)
    if database_only:
        return config
    _postfix_config(config, paths, ctx)
    _supervise(config, paths, say)
    _postfix(paths, say)
    _dovecot(config, paths, ctx, say)
    listeners = config.listeners
    for port in (listeners.msa_port, listeners.pop3_port, listeners.pop3s_port):
        _wait(lambda p=port: port_open(listeners.bind, p), f"listener {port}")  # type: ignore[misc]
    _wait(lambda: _smtp_greets(listeners.bind, listeners.mta_port), "MTA listener",
          paths.postfix_log)
    if demo:
        seed_demo(config, say)
    say(f"stack up in {state_dir}: MTA {listeners.bind}:{listeners.mta_port}, "
        f"MSA {listeners.msa_port}, POP3 {listeners.pop3_port}, POP3S {listeners.pop3s_port}, "
        f"console {console_url(config)}")
    return config


def console_url(config: Config) -> str:
    """Where a browser on this machine opens the web console (``[console] listen``)."""
    host, port = config.console.address
    return f"https://{f'[{host}]' if ':' in host else host}:{port}/"


def urls(state_dir: Path) -> dict[str, str]:
    """Where the components a person opens are reached, by :func:`status`'s names: the
    web console's URL (with the stack's certificate, trusted through ``DIR/tls/ca.pem``)."""
    return {"console": console_url(configmod.for_state_dir(state_dir.resolve()))}


def _stop_pid(pid: int, marker: str, timeout: float = 10.0) -> None:
    if not alive(pid, marker):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid, marker):
        time.sleep(0.05)
    if alive(pid, marker):
        os.kill(pid, signal.SIGKILL)


def down(state_dir: Path, say: Say = print) -> None:
    """Stop what ``up`` started in ``state_dir``, each by its own pid."""
    paths = Paths(state_dir.resolve())
    postfix_status = ["postfix", "-c", str(paths.postfix_conf), "status"]
    if (paths.postfix_queue / "pid" / "master.pid").exists() and \
            run(postfix_status, check=False).returncode == 0:
        say("postfix: stopping")
        master = read_pid(paths.postfix_queue / "pid" / "master.pid")
        run(["postfix", "-c", str(paths.postfix_conf), "stop"], check=False)
        if master is not None:
            _wait(lambda: not alive(master, "master"), "postfix stop")
    pid = read_pid(paths.dovecot_base / "master.pid")
    if pid is not None and alive(pid, "dovecot"):
        say("dovecot: stopping")
        _stop_pid(pid, "dovecot")
    # The supervisor first, so that it does not start again the daemons stopped next.
    for name in ("supervisor", *DAEMONS):
        pid = _daemon_pid(paths, name)
        if pid is not None:
            say(f"{name}: stopping")
            _stop_pid(pid, _module(name))
        paths.pid_file(name).unlink(missing_ok=True)
    if (paths.pg_data / "postmaster.pid").exists():
        say("postgresql: stopping")
        run([pg_bin("pg_ctl"), "-D", str(paths.pg_data), "-m", "fast", "-w", "stop"],
            user="postgres", check=False, cwd=paths.state_dir)


def status(state_dir: Path) -> list[tuple[str, int | None]]:
    """Each component and the pid it runs under (None: not running)."""
    paths = Paths(state_dir.resolve())
    found: list[tuple[str, int | None]] = []
    pg = read_pid(paths.pg_data / "postmaster.pid")
    found.append(("postgresql", pg if pg is not None and alive(pg, "postgres") else None))
    master = read_pid(paths.postfix_queue / "pid" / "master.pid")
    found.append(("postfix", master if master is not None and alive(master, "master")
                  else None))
    dove = read_pid(paths.dovecot_base / "master.pid")
    found.append(("dovecot", dove if dove is not None and alive(dove, "dovecot") else None))
    for name in ("supervisor", *DAEMONS):
        found.append((name, _daemon_pid(paths, name)))
    return found


# --- demo data -------------------------------------------------------------------------

#: SPEC §6 --demo: one MTA company, one mail-client company with an account, two agencies.
#: Each MTA party has its own loopback peer address; relays are the sinks' ports.
DEMO_PARTIES: tuple[tuple[str, str, list[str], str | None, str, str], ...] = (
    ("acme", "company", ["127.0.2.1/32"], "127.0.0.1:2601", "acme", "edi@acme.example"),
    ("brightline", "company", [], None, "brightline", "clerk@brightline.example"),
    ("customs", "agency", ["127.0.1.1/32"], "127.0.0.1:2602", "customs",
     "declarations@customs.example"),
    ("coastguard", "agency", ["127.0.1.2/32"], "127.0.0.1:2603", "coastguard",
     "intake@coastguard.example"),
)
DEMO_LOGIN = "brightline"
#: The demo's console operator (issue 18): sees every message, party and the queue.
DEMO_OPERATOR = "operator"


def demo_password() -> str:
    """A new password for the demo's mail client: 128 random bits in hex, so it never
    starts with ``-`` (which swaks, and other tools' option parsers, take for an option)
    and needs no quoting in a shell or a client's configuration file."""
    return secrets.token_hex(16)


def _seed_parties(conn: Any, config: Config) -> str:
    """The demo parties, their addresses and the mail client's account; its password."""
    password = demo_password()
    for name, kind, peers, relay, local, physical in DEMO_PARTIES:
        directory.add_party(conn, name, kind, peers, relay)
        maildrop = None
        if name == DEMO_LOGIN:
            directory.add_account(
                conn, DEMO_LOGIN, name, passwords.strong_hash(password),
                passwords.digest_md5_hash(DEMO_LOGIN, config.hub.sasl_realm, password))
            maildrop = DEMO_LOGIN
        directory.add_address(conn, f"{local}@{config.hub.domain}", name, physical, maildrop,
                              config.hub.domain)
    return password


def _read_credentials(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return dict(line.split("=", 1) for line in text.split() if "=" in line)


def seed_demo(config: Config, say: Say = print) -> None:
    """Add the demo parties once, and the console's operator once (a stack seeded before
    the console gets it on its next ``up --demo``); the mail client's and the operator's
    passwords go to a 0600 file, ``login``/``password`` and ``operator``/
    ``operator_password``."""
    credentials = config.paths.demo_credentials
    fields = _read_credentials(credentials)
    with connect(config.database, autocommit=True, role=configmod.ADMIN_ROLE) as conn:
        seeded = directory.find_logical(conn, f"acme@{config.hub.domain}") is not None
        if not seeded:
            fields.update(login=DEMO_LOGIN, password=_seed_parties(conn, config))
        has_operator = DEMO_OPERATOR in console_store.list_operators(conn)
        if not has_operator:
            password = demo_password()
            console_store.add_operator(conn, DEMO_OPERATOR, passwords.strong_hash(password))
            fields.update(operator=DEMO_OPERATOR, operator_password=password)
    if seeded and has_operator:
        return
    fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file left by an older stack keeps no wider mode
    with os.fdopen(fd, "w") as out:
        out.write("".join(f"{key}={value}\n" for key, value in fields.items()))
    say(f"demo: 2 companies, 2 agencies; mail-client login {DEMO_LOGIN!r}, console "
        f"operator {DEMO_OPERATOR!r} at {console_url(config)}, passwords in {credentials}")
