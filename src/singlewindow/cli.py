"""``swctl``: the operator's command over the store and the local stack (SPEC §6).

Every form in SPEC §6 is fixed; errors are one line on stderr and exit status 1 (2 for
usage errors, from argparse). Passwords are read only from standard input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

import psycopg

from singlewindow import config as configmod
from singlewindow import deploy, ipsec, passwords, stack, trace
from singlewindow.store import (
    StoreError,
    connect,
    console,
    directory,
    messages,
    migrate,
    tunnels,
)

Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """Reported as ``swctl: error: ...`` with exit status 1."""


def _config(args: argparse.Namespace) -> configmod.Config:
    try:
        return configmod.locate(args.state_dir)
    except configmod.ConfigError as exc:
        raise CommandError(str(exc)) from None


@contextmanager
def _db(args: argparse.Namespace, role: str = configmod.ADMIN_ROLE,
        config: configmod.Config | None = None) -> Iterator[psycopg.Connection[Any]]:
    """A connection for an operator's command. swctl is the operator's tool, but not the
    schema's owner: its commands write the directory and read the log as the admin role
    (no DDL, no rewriting of the log); only ``db migrate`` logs in as the owner."""
    config = config or _config(args)
    try:
        conn = connect(config.database, autocommit=True, role=role)
    except psycopg.OperationalError as exc:
        # The message names host and reason; never the connection string (passwords).
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreachable"
        raise CommandError(f"cannot reach the database: {first}") from None
    with conn:
        yield conn


# --- db --------------------------------------------------------------------------------

def db_migrate(args: argparse.Namespace) -> int:
    with _db(args, configmod.OWNER_ROLE) as conn:
        applied = migrate.migrate(conn)
    for m in applied:
        print(f"applied {m.version:04d}_{m.name}")
    if not applied:
        print("schema is up to date")
    return 0


# --- party -----------------------------------------------------------------------------

def _hub_addresses(config: configmod.Config) -> list[str]:
    """The hub's own addresses: Postfix's mynetworks (main.cf: 127.0.0.1/32, where every
    local process connects from), the listeners' address, its IKE addresses and this
    host's interfaces."""
    own = ["127.0.0.1/32", *_interface_addresses(), *config.ipsec.local_addrs]
    if config.listeners.bind not in ("0.0.0.0", "::", ""):
        own.append(config.listeners.bind)
    return own


def _interface_addresses() -> list[str]:
    """Each interface's IPv4 address (Linux SIOCGIFADDR); none where it cannot ask."""
    import fcntl
    import socket
    import struct
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                answer = fcntl.ioctl(s.fileno(), 0x8915,  # SIOCGIFADDR, netdevice(7)
                                     struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue  # no IPv4 address on it
            found.append(socket.inet_ntoa(answer[20:24]))
    return found


def _print_ipsec(party: str, what: str | None) -> None:
    """The connection's change, for the operator or the singlewindow_ipsec role."""
    for line in ipsec.report(party, what):
        print(line)


def _refuse_without_tunnel(config: configmod.Config, peers: list[str], has_tunnel: bool,
                           advice: str) -> None:
    """SPEC D11: with [ipsec] enabled, an MTA party reaches port 25 only by its tunnel."""
    problem = ipsec.required_problem(config.ipsec.enabled, peers, has_tunnel)
    if problem is not None:
        raise CommandError(f"{problem}: {advice}")


def party_add(args: argparse.Namespace) -> int:
    given = [args.ipsec_gateway, args.ipsec_id, args.ipsec_auth]
    if any(v is not None for v in given) and None in given:
        raise CommandError("--ipsec-gateway, --ipsec-id and --ipsec-auth go together")
    tunnel = None not in given
    if tunnel and not args.peer:
        raise CommandError("a tunnel carries an MTA party's --peer networks: give --peer")
    config = _config(args)
    _refuse_without_tunnel(config, args.peer or [], tunnel, "give its tunnel with "
                           "--ipsec-gateway IP --ipsec-id ID --ipsec-auth psk|cert")
    hub = _hub_addresses(config)
    directory.refuse_hub_addresses(args.peer or [], hub)
    with _db(args, config=config) as conn, conn.transaction():
        party = directory.add_party(conn, args.name, args.kind, args.peer or [], args.relay)
        what = tunnels.set_tunnel(conn, party.name, args.ipsec_gateway, args.ipsec_id,
                                  args.ipsec_auth, hub) if tunnel else None
    print(f"party {party.name} ({party.kind}) added")
    _print_ipsec(party.name, what)
    return 0


def party_tunnel(args: argparse.Namespace) -> int:
    """Set, change or (``--remove``) drop an existing party's tunnel."""
    config = _config(args)
    if args.remove:
        if args.gateway or args.id or args.auth:
            raise CommandError("--remove takes no --gateway, --id or --auth")
        with _db(args, config=config) as conn, conn.transaction():
            _refuse_without_tunnel(config, directory.peer_networks(conn, args.name), False,
                                   f"party {args.name} still has peer networks, so its "
                                   "tunnel stays (remove the party instead)")
            what = tunnels.remove_tunnel(conn, args.name)
        print(f"party {args.name}: tunnel " + ("removed" if what else "none to remove"))
    else:
        if None in (args.gateway, args.id, args.auth):
            raise CommandError("give --gateway IP --id ID --auth psk|cert, or --remove")
        with _db(args, config=config) as conn:
            what = tunnels.set_tunnel(conn, args.name, args.gateway, args.id, args.auth,
                                      _hub_addresses(config))
        print(f"party {args.name}: tunnel " + (what or "unchanged"))
    _print_ipsec(args.name, what)
    return 0


def party_remove(args: argparse.Namespace) -> int:
    with _db(args) as conn, conn.transaction():
        before = tunnels.get_tunnel(conn, args.name)
        directory.remove_party(conn, args.name)
    print(f"party {args.name} removed")
    _print_ipsec(args.name, ipsec.change(before, None))
    return 0


def party_list(args: argparse.Namespace) -> int:
    with _db(args) as conn:
        by_party = {t.party: t for t in tunnels.list_tunnels(conn)}
        for party, peers in directory.list_parties(conn):
            relay = f"{party.relay_host}:{party.relay_port}" if party.relay_host else "-"
            t = by_party.get(party.name)
            # The identity last: a DN holds spaces and commas.
            tunnel = (f"tunnel={t.gateway} reqid={t.reqid} auth={t.auth} id={t.remote_id}"
                      if t else "tunnel=-")
            print(f"{party.name}\t{party.kind}\trelay={relay}\tpeers={','.join(peers) or '-'}"
                  f"\t{tunnel}")
    return 0


# --- address ---------------------------------------------------------------------------

def address_add(args: argparse.Namespace) -> int:
    domain = _config(args).hub.domain
    with _db(args) as conn:
        address = directory.add_address(conn, args.logical, args.party, args.physical,
                                        args.maildrop, domain, active=not args.inactive)
    state = "active" if address.active else "inactive"
    print(f"address {address.logical} -> {address.physical} ({state}) added")
    return 0


def address_activate(args: argparse.Namespace) -> int:
    with _db(args) as conn:
        address = directory.activate_address(conn, args.logical)
    print(f"address {address.logical} activated")
    return 0


def address_remove(args: argparse.Namespace) -> int:
    with _db(args) as conn:
        directory.remove_address(conn, args.logical)
    print(f"address {args.logical} removed")
    return 0


def address_list(args: argparse.Namespace) -> int:
    with _db(args) as conn:
        for a in directory.list_addresses(conn):
            where = f"maildrop:{a.maildrop_login}" if a.maildrop_login else a.physical
            state = "active" if a.active else "inactive"
            print(f"{a.logical}\t{a.party.name}\t{a.physical}\t{where}\t{state}")
    return 0


# --- account ---------------------------------------------------------------------------

def _new_password(args: argparse.Namespace) -> str:
    """A new (or changed) password: one line of standard input (``--password-stdin``, never
    the command line), as strong as :func:`passwords.check` asks."""
    if not args.password_stdin:
        raise CommandError("give the password on standard input with --password-stdin")
    line = sys.stdin.readline()
    password = line[:-1] if line.endswith("\n") else line
    try:
        passwords.check(password)
    except passwords.PasswordError as exc:
        raise CommandError(str(exc)) from None
    return password


def account_add(args: argparse.Namespace) -> int:
    password = _new_password(args)
    login = args.login
    realm = _config(args).hub.sasl_realm
    with _db(args) as conn:
        # One name, one kind of console login (issue 18): an operator's name is no login.
        if console.is_operator(conn, login):
            raise CommandError(f"account {login!r}: {login!r} is an operator's name; "
                               "choose another login")
        directory.add_account(conn, login, args.party, passwords.strong_hash(password),
                              passwords.digest_md5_hash(login, realm, password))
    print(f"account {login} added for party {args.party}")
    return 0


def account_passwd(args: argparse.Namespace) -> int:
    """An account's new password (both hashes); its console sessions end."""
    password = _new_password(args)
    login = args.login
    realm = _config(args).hub.sasl_realm
    with _db(args) as conn:
        directory.set_account_password(conn, login, passwords.strong_hash(password),
                                       passwords.digest_md5_hash(login, realm, password))
    print(f"account {login}: password changed (its console sessions ended)")
    return 0


class _RefusePassword(argparse.Action):
    """``--password X`` would put the secret in the process list and shell history."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object, **__: object) -> None:
        parser.exit(1, "swctl: error: passwords on the command line are refused; "
                       "use --password-stdin\n")


# --- operator (issue 18: the web console) ---------------------------------------------

def operator_add(args: argparse.Namespace) -> int:
    password = _new_password(args)
    with _db(args) as conn:
        console.add_operator(conn, args.name, passwords.strong_hash(password))
    print(f"operator {args.name} added")
    return 0


def operator_passwd(args: argparse.Namespace) -> int:
    password = _new_password(args)
    with _db(args) as conn:
        console.set_operator_password(conn, args.name, passwords.strong_hash(password))
    print(f"operator {args.name}: password changed (its console sessions ended)")
    return 0


def operator_remove(args: argparse.Namespace) -> int:
    with _db(args) as conn:
        console.remove_operator(conn, args.name)
    print(f"operator {args.name} removed (its console sessions ended)")
    return 0


def operator_list(args: argparse.Namespace) -> int:
    with _db(args) as conn:
        for name in console.list_operators(conn):
            print(name)
    return 0


def audit_cmd(args: argparse.Namespace) -> int:
    """The console's audit log (migration 0015): who looked at what, newest first. A
    detail (a search's criteria, an id as typed) is printed JSON-quoted: what a login
    typed cannot forge a line."""
    if args.limit < 1:
        raise CommandError("--limit: at least 1")
    try:
        since = console.when(args.since, "--since")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    with _db(args) as conn:
        rows = console.views(conn, login=args.login, message_id=args.message, since=since,
                             limit=args.limit)
    if args.json:
        print(_json(rows))
        return 0
    for row in rows:
        detail = f" {json.dumps(row['detail'])}" if row["detail"] is not None else ""
        print(f"{row['at'].astimezone(UTC):%Y-%m-%d %H:%M:%S}Z {row['kind']} {row['login']} "
              f"from {row['source']} {row['action']} {row['message_id'] or '-'}{detail}")
    return 0


# --- link, route -----------------------------------------------------------------------

def link_set(args: argparse.Namespace) -> int:
    with _db(args) as conn:
        directory.set_link(conn, args.sender, args.recipient, args.verb == "allow")
    print(f"link {args.sender} -> {args.recipient}: {args.verb}")
    return 0


def route_add(args: argparse.Namespace) -> int:
    """The type is checked against the MIG in force (SW_MIG_PATH as the transport has
    it): a message name (``PAXLST``) routes all its releases, a type one release."""
    from singlewindow import mig
    from singlewindow.mig.model import DataError
    try:
        registry = mig.registry()
    except DataError as exc:
        raise CommandError(f"cannot read the MIG: {exc}") from None
    message_type = registry.route_type(args.type)
    if message_type is None:
        raise CommandError(
            f"unknown message type {args.type!r}: give a message (all its releases) or one "
            f"release of it; the MIG has {registry.route_types}")
    with _db(args) as conn:
        directory.add_route(conn, args.logical, message_type, args.to)
    releases = ("" if message_type in registry.types else ", all releases")
    print(f"route {args.logical} [{message_type}{releases}] -> {', '.join(args.to)}")
    return 0


# --- log, trace ------------------------------------------------------------------------

def _json(value: Any) -> str:
    return json.dumps(value, default=str, indent=2, sort_keys=True)


def log_cmd(args: argparse.Namespace) -> int:
    with _db(args) as conn:
        rows = messages.recent(conn, args.limit)
    if args.json:
        print(_json(rows))
        return 0
    for row in rows:
        outcomes = ", ".join(f"{r['recipient']} {r['status']}" for r in row["recipients"])
        print(f"{row['received_at']:%Y-%m-%d %H:%M:%S} {row['id']} {row['listener']} "
              f"{row['party'] or '-'} <{row['envelope_from']}> "
              f"type={row['message_type'] or '-'} queue={row['queue_id'] or '-'} "
              f"[{outcomes or 'pending'}]")
    return 0


def _print_status(lines: list[dict[str, str]], indent: str = "    ") -> None:
    for line in trace.status_lines(lines):
        print(f"{indent}{line}")


def _print_event(e: dict[str, Any]) -> None:
    print(f"  {e['at']:%H:%M:%S.%f} {e['kind']} {json.dumps(e['detail'], sort_keys=True)}")


def trace_cmd(args: argparse.Namespace) -> int:
    config = _config(args)
    with _db(args) as conn:
        found = trace.find(conn, config, args.id)
    if found is None:
        raise CommandError(f"no message with id {args.id!r}")
    if args.json:
        print(_json(found))
        return 0
    if found["id"] is None:
        n = found["notice"]
        print(f"{trace.NOTICE_KINDS.get(n['kind'], n['kind'])} generated by Single Window at "
              f"{n['created_at']}, about no known message")
        print(f"  to {n['recipient']} ({trace.sent(n)}, Message-ID {n['copy_message_id']})")
        _print_status(n["postfix"])
        for e in n["events"]:
            _print_event(e)
        return 0
    print(f"message {found['id']} received {found['received_at']} on {found['listener']}")
    print(f"  from party {found['party'] or '-'} <{found['envelope_from']}> "
          f"login={found['sasl_login'] or '-'} peer={found['peer_address'] or '-'}")
    print(f"  queue id {found['queue_id'] or '-'}, Message-ID {found['header_message_id'] or '-'}"
          f", type {found['message_type'] or '-'}, sha256 {found['payload_sha256']}")
    for r in found["recipients"]:
        print(f"  recipient {r['recipient']}: {r['reason']}")
    inbound = found["postfix"]
    if inbound and (inbound["status"] or inbound["notifications"]):
        print(f"  in Postfix as {inbound['queue_id']}:")
        _print_status(inbound["status"])
        for n in inbound["notifications"]:
            print(f"    postfix: {n['what']}: {n['queue_id']}")
            _print_status(n["status"], "      ")
    for f in found["forwards"]:
        first = trace.FIRST_LEG.get(f["recipient"])
        what = (f"{first} to {f['physical']}, into Postfix" if first
                else f"copy to {f['destination']}")
        print(f"  {what} ({trace.sent(f)}, Message-ID {f['copy_message_id']})")
        _print_status(f["postfix"])
    for n in found["notices"]:
        print(f"  {trace.notice_label(n, found['envelope_from'])} ({trace.sent(n)}, Message-ID "
              f"{n['copy_message_id']})")
        _print_status(n["postfix"])
    for e in found["events"]:
        _print_event(e)
    for r in found["stamp_refusals"]:
        print(f"  {r['at']:%H:%M:%S.%f} a message with a forged stamp claiming this id was "
              f"refused: {r['message_id']} ({r['detail'].get('reason')})")
    return 0


# --- mig ---------------------------------------------------------------------------------

def mig_validate(args: argparse.Namespace) -> int:
    from singlewindow.mig import cli as migcli
    return migcli.validate_cmd(args.file, args.json)


def mig_convert(args: argparse.Namespace) -> int:
    from singlewindow.mig import cli as migcli
    return migcli.convert_cmd(args.file)


# --- stack -----------------------------------------------------------------------------

def _state_dir(args: argparse.Namespace) -> Path:
    chosen = args.state_dir or os.environ.get("SW_STATE_DIR")
    return Path(chosen) if chosen else configmod.Paths().state_dir


def demo_cmd(args: argparse.Namespace) -> int:
    from singlewindow import demo
    state = _state_dir(args)
    config = configmod.for_state_dir(state.resolve())
    credentials = config.paths.demo_credentials
    try:
        fields = dict(line.split("=", 1) for line in credentials.read_text().split())
    except OSError:
        raise CommandError(f"no demo data in {state}: run 'swctl stack up --demo'") from None
    demo.run(config, fields["password"])
    return 0


def stack_up(args: argparse.Namespace) -> int:
    stack.up(_state_dir(args), demo=args.demo)
    return 0


def stack_down(args: argparse.Namespace) -> int:
    stack.down(_state_dir(args))
    return 0


def stack_status(args: argparse.Namespace) -> int:
    states = stack.status(_state_dir(args))
    urls = stack.urls(_state_dir(args))
    for name, pid in states:
        where = f"\t{urls[name]}" if name in urls else ""
        print(f"{name}\t{'running pid ' + str(pid) if pid else 'stopped'}{where}")
    return 0 if all(pid for _, pid in states) else 3


# --- health --------------------------------------------------------------------------

def health_cmd(args: argparse.Namespace) -> int:
    """Nagios/Icinga plugin conventions: a status line, one line per problem, exit 0 (OK),
    1 (WARNING) or 2 (CRITICAL)."""
    from singlewindow import health
    report = health.check(_config(args))
    print("\n".join(report.lines()))
    return report.status


# --- render (deployment) ---------------------------------------------------------------

def render_cmd(args: argparse.Namespace) -> int:
    """Render conf/ for a deployed node; print each file that changed (Ansible reads it)."""
    from singlewindow import render

    config = configmod.load(Path(args.config)) if args.config else _config(args)
    node = deploy.NodeRole(pop3_backend=args.pop3_backend,
                           pop3_backend_address=args.pop3_backend_address,
                           pop3_proxies=tuple(args.pop3_proxy or ()))
    conf_dir = Path(args.conf_dir) if args.conf_dir else render.CONF_DIR
    found = None
    if args.target in deploy.TUNNEL_TARGETS and config.ipsec.enabled:
        with _db(args, config=config) as conn:
            found = tunnels.list_tunnels(conn)
    changed = deploy.render_target(config, args.target, Path(args.dest), node=node,
                                   conf_dir=conf_dir, check=args.check, tunnels=found)
    for path in changed:
        print(f"changed: {path}")
    return 0


# --- parser ----------------------------------------------------------------------------

#: ``--state-dir``'s help, the same before the command and after it.
STATE_DIR_HELP = "local stack state directory (or SW_STATE_DIR)"


def _command(group: Any, name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
    """One subcommand: its handler and its own ``--state-dir``."""
    p: argparse.ArgumentParser = group.add_parser(name, help=help_)
    p.set_defaults(handler=handler)
    # SUPPRESS: absent here, the value given before the command (or None) stays.
    p.add_argument("--state-dir", default=argparse.SUPPRESS, help=STATE_DIR_HELP)
    return p


def _group(sub: Any, name: str, help_: str, dest: str = "cmd") -> Any:
    """A command group (``swctl NAME ...``) whose subcommand is required."""
    return sub.add_parser(name, help=help_).add_subparsers(dest=dest, required=True)


def _party_commands(party: Any) -> None:
    """``swctl party ...``: add, tunnel, remove, list."""
    p = _command(party, "add", party_add, "add a party")
    p.add_argument("name")
    p.add_argument("--kind", required=True, choices=directory.KINDS)
    p.add_argument("--peer", action="append", metavar="CIDR", help="MTA source network")
    p.add_argument("--relay", metavar="HOST:PORT", help="next hop for the party's mail")
    p.add_argument("--ipsec-gateway", metavar="IP", help="the party's IKE endpoint")
    p.add_argument("--ipsec-id", metavar="ID", help="the IKE identity the party "
                   "authenticates with: an address, FQDN, email address or DN")
    p.add_argument("--ipsec-auth", choices=ipsec.AUTHS,
                   help="pre-shared key (in Ansible Vault) or certificate (the party's CA)")
    p = _command(party, "tunnel", party_tunnel, "set, change or remove a party's IPsec tunnel")
    p.add_argument("name")
    p.add_argument("--gateway", metavar="IP", help="the party's IKE endpoint")
    p.add_argument("--id", metavar="ID", help="the IKE identity the party authenticates with")
    p.add_argument("--auth", choices=ipsec.AUTHS)
    p.add_argument("--remove", action="store_true", help="drop the tunnel")
    p = _command(party, "remove", party_remove,
                 "remove a party (its addresses first) with its tunnel")
    p.add_argument("name")
    _command(party, "list", party_list, "list parties")


def _address_commands(address: Any) -> None:
    """``swctl address ...``: add, activate, remove, list."""
    p = _command(address, "add", address_add, "add a logical address")
    p.add_argument("logical")
    p.add_argument("--party", required=True)
    p.add_argument("--physical", required=True)
    p.add_argument("--maildrop", metavar="LOGIN", help="deliver into this POP3 maildrop")
    p.add_argument("--inactive", action="store_true", help="add it not yet activated")
    p = _command(address, "activate", address_activate, "activate a logical address")
    p.add_argument("logical")
    p = _command(address, "remove", address_remove, "remove a logical address")
    p.add_argument("logical")
    _command(address, "list", address_list, "list addresses")


def _account_commands(account: Any) -> None:
    """``swctl account add|passwd``."""
    p = _command(account, "add", account_add, "add a login; password on stdin")
    p.add_argument("login")
    p.add_argument("--party", required=True)
    _password_options(p)
    p = _command(account, "passwd", account_passwd,
                 "change a login's password (stdin), end its console sessions")
    p.add_argument("login")
    _password_options(p)


def _password_options(p: argparse.ArgumentParser) -> None:
    """A new or changed password: from standard input only."""
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--password", action=_RefusePassword, help=argparse.SUPPRESS)


def _operator_commands(operator: Any) -> None:
    """``swctl operator add|passwd|remove|list``: who logs in to the web console as the
    hub's operator (companies log in with their account)."""
    p = _command(operator, "add", operator_add, "add an operator; password on stdin")
    p.add_argument("name")
    _password_options(p)
    p = _command(operator, "passwd", operator_passwd,
                 "change an operator's password (stdin), end its sessions")
    p.add_argument("name")
    _password_options(p)
    p = _command(operator, "remove", operator_remove, "remove an operator, end its sessions")
    p.add_argument("name")
    _command(operator, "list", operator_list, "list operators")


def _audit_command(sub: Any) -> None:
    """``swctl audit``: what each web console login looked at."""
    p = _command(sub, "audit", audit_cmd,
                 "what each web console login looked at, newest first")
    p.add_argument("--login", metavar="LOGIN", help="an operator's name or an account's login")
    p.add_argument("--message", metavar="ID", help="a message's Single Window id")
    p.add_argument("--since", metavar="ISO", help="from this time on (UTC unless given)")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")


def _link_commands(link: Any) -> None:
    """``swctl link allow|deny SENDER RECIPIENT``."""
    for verb in ("allow", "deny"):
        p = _command(link, verb, link_set, f"{verb} SENDER -> RECIPIENT (party or kind)")
        p.add_argument("sender")
        p.add_argument("recipient")


def _route_commands(route: Any) -> None:
    """``swctl route add``."""
    p = _command(route, "add", route_add, "route a message type to destinations")
    p.add_argument("logical")
    p.add_argument("--type", required=True, metavar="MESSAGE_TYPE")
    p.add_argument("--to", required=True, action="append", metavar="LOGICAL")


def _message_log_commands(sub: Any) -> None:
    """``swctl log`` and ``swctl trace ID``."""
    p = _command(sub, "log", log_cmd, "recent messages with their outcomes")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=50)
    p = _command(sub, "trace", trace_cmd, "the whole path of one message")
    p.add_argument("id", metavar="ID", help="Single Window id, queue id or Message-ID")
    p.add_argument("--json", action="store_true")


def _mig_commands(mig_: Any) -> None:
    """``swctl mig ...``: validate, convert."""
    p = _command(mig_, "validate", mig_validate, "the errors a control message would carry")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p = _command(mig_, "convert", mig_convert, "EDIFACT in, XML out")
    p.add_argument("file")


def _render_command(sub: Any) -> None:
    """``swctl render``, run by the Ansible roles on a deployed node."""
    p = _command(sub, "render", render_cmd,
                 "render conf/ templates for a deployed node (used by the Ansible roles)")
    p.add_argument("--target", required=True,
                   choices=("postfix", "dovecot", "ipsec", "tunnels"),
                   help="ipsec, tunnels: an edge's IPsec connections and firewall chain, "
                        "from the tunnels in the database")
    p.add_argument("--dest", required=True, metavar="DIR", help="e.g. /etc/postfix")
    p.add_argument("--config", metavar="FILE",
                   help="config file (default: as every swctl command finds it)")
    p.add_argument("--conf-dir", metavar="DIR", help="the templates (default: conf/)")
    p.add_argument("--pop3-backend", metavar="NAME",
                   help="an edge: proxy POP3 logins over TLS to this Dovecot backend (the "
                        "name its certificate carries)")
    p.add_argument("--pop3-backend-address", metavar="IP",
                   help="an edge: the backend's address, if its name does not resolve")
    p.add_argument("--pop3-proxy", action="append", metavar="IP",
                   help="the backend: trust logins proxied from this edge (once per edge)")
    p.add_argument("--check", action="store_true", help="report what would change, write nothing")


def _stack_commands(stack_: Any) -> None:
    """``swctl stack ...``: up, down, status."""
    p = _command(stack_, "up", stack_up, "start PostgreSQL, Postfix, Dovecot and the daemons")
    p.add_argument("--demo", action="store_true", help="seed demo parties")
    _command(stack_, "down", stack_down, "stop what 'up' started")
    _command(stack_, "status", stack_status, "what runs")


def build_parser() -> argparse.ArgumentParser:
    """``--state-dir`` is accepted in the same places by every command: before it
    (``swctl --state-dir DIR party add ...``) and anywhere among its own arguments
    (``swctl party add ... --state-dir DIR``); the latter wins when both are given."""
    parser = argparse.ArgumentParser(prog="swctl", description="Single Window administration")
    parser.add_argument("--state-dir", help=STATE_DIR_HELP)
    sub = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    _command(_group(sub, "db", "database schema"), "migrate", db_migrate,
             "apply pending migrations (idempotent)")
    _party_commands(_group(sub, "party", "companies and agencies"))
    _address_commands(_group(sub, "address", "logical addresses"))
    _account_commands(_group(sub, "account", "MSA/POP3 logins"))
    _operator_commands(_group(sub, "operator", "web console operators"))
    _audit_command(sub)
    _link_commands(_group(sub, "link", "who may send to whom", dest="verb"))
    _route_commands(_group(sub, "route", "message routing"))
    _message_log_commands(sub)
    _mig_commands(_group(sub, "mig", "message rules, offline"))
    _command(sub, "demo", demo_cmd, "drive demo messages through the demo stack")
    _command(sub, "health", health_cmd,
             "does every component answer, is the queue healthy (exit 0/1/2, Nagios)")
    _render_command(sub)
    _stack_commands(_group(sub, "stack", "the local stack"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (CommandError, StoreError, stack.StackError, deploy.DeployError,
            configmod.ConfigError) as exc:
        print(f"swctl: error: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or ["database error"])[0]
        print(f"swctl: error: database: {first}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. swctl mig convert FILE | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
