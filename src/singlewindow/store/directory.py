"""Parties, peer networks, addresses, accounts, links and routes: reads and writes.

Used by ``swctl`` (writes and reads). The daemons read the directory through an
in-memory copy with lookups of the same names (:mod:`singlewindow.store.snapshot`). Writers raise
:class:`StoreError` with one operator-readable line; the database constraints are the
authority, this module only names their violations.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors

from singlewindow.store import StoreError, console

Conn = psycopg.Connection[Any]

KINDS = ("company", "agency")
# RFC 5321 4.1.2 Mailbox, restricted to the dot-atom form Single Window routes on.
_ADDRESS = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                      r"@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


@dataclass(frozen=True, slots=True)
class Party:
    id: int
    name: str
    kind: str
    relay_host: str | None
    relay_port: int | None


@dataclass(frozen=True, slots=True)
class Address:
    id: int
    logical: str
    physical: str
    party: Party
    maildrop_login: str | None
    active: bool


def normalise_address(text: str) -> str:
    """Check mailbox syntax and lower-case it; raise StoreError naming the problem."""
    address = text.strip()
    if len(address) > 254 or not _ADDRESS.match(address):
        raise StoreError(f"invalid mail address: {text!r}")
    return address.lower()


def parse_network(text: str) -> str:
    """Check a CIDR (a bare address means a single host)."""
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as exc:
        raise StoreError(f"invalid network {text!r}: {exc}") from None


def refuse_hub_addresses(peers: Iterable[str], own: Iterable[str]) -> None:
    """Issue 12: no party's peer network may hold an address of the hub itself.

    A party is identified by its peer address (SPEC R1.3); if that could be the hub's
    own (loopback, Postfix's mynetworks, an address it listens on), every process on the
    hub would speak as that party. ``own``: those addresses or networks.
    """
    for peer in peers:
        network = ipaddress.ip_network(parse_network(peer))
        clash = hub_clash(network, own)
        if clash is not None:
            raise StoreError(
                f"peer network {network} holds the hub's own address {clash}: any process "
                "on the hub could submit as that party; give the party's own address")


def hub_clash(network: ipaddress.IPv4Network | ipaddress.IPv6Network,
              own: Iterable[str]) -> str | None:
    """The first of the hub's own addresses or networks ``own`` that ``network`` overlaps."""
    for text in own:
        hub = ipaddress.ip_network(text, strict=False)
        if hub.version == network.version and network.overlaps(hub):
            return str(hub)
    return None


def parse_relay(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) into its parts."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StoreError(f"invalid relay {text!r}: expected HOST:PORT")
    return host, int(port)


@contextmanager
def _named_violations(what: str) -> Iterator[None]:
    """Turn constraint violations into one line naming what was refused."""
    try:
        yield
    except errors.UniqueViolation as exc:
        raise StoreError(f"{what}: already exists ({_constraint(exc)})") from None
    except errors.ExclusionViolation:
        raise StoreError(f"{what}: network overlaps another party's peer network") from None
    except errors.ForeignKeyViolation as exc:
        raise StoreError(f"{what}: refers to something that does not exist "
                         f"or is still in use ({_constraint(exc)})") from None
    except errors.CheckViolation as exc:
        raise StoreError(f"{what}: value not allowed ({_constraint(exc)})") from None


def _constraint(exc: psycopg.Error) -> str:
    diag = exc.diag
    return diag.constraint_name or diag.message_primary or "constraint"


# --- parties -------------------------------------------------------------------------------

def _party(row: dict[str, Any]) -> Party:
    return Party(row["id"], row["name"], row["kind"], row["relay_host"], row["relay_port"])


def get_party(conn: Conn, name: str) -> Party:
    row = conn.execute("SELECT * FROM party WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise StoreError(f"unknown party {name!r}")
    return _party(row)


def add_party(conn: Conn, name: str, kind: str, peers: list[str], relay: str | None) -> Party:
    if kind not in KINDS:
        raise StoreError(f"invalid kind {kind!r}: expected company or agency")
    networks = [parse_network(p) for p in peers]
    host, port = parse_relay(relay) if relay else (None, None)
    with _named_violations(f"party {name!r}"), conn.transaction():
        row = conn.execute(
            "INSERT INTO party (name, kind, relay_host, relay_port) VALUES (%s, %s, %s, %s)"
            " RETURNING *", (name, kind, host, port)).fetchone()
        assert row is not None
        for network in networks:
            conn.execute("INSERT INTO peer_network (party_id, network) VALUES (%s, %s)",
                         (row["id"], network))
    return _party(row)


def remove_party(conn: Conn, name: str) -> None:
    """Remove a party with its peer networks, accounts, links and tunnel. Refused while
    it has logical addresses: they name it in mail on its way, in routes and in the
    other parties' address books (remove each with ``swctl address remove``). The
    message log keeps its messages (their party becomes unknown)."""
    party = get_party(conn, name)
    with _named_violations(f"party {name!r}"), conn.transaction():
        rows = conn.execute("SELECT logical FROM address WHERE party_id = %s"
                            " ORDER BY logical", (party.id,)).fetchall()
        if rows:
            shown = ", ".join(r["logical"] for r in rows[:3])
            more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
            raise StoreError(f"party {name!r} still has addresses ({shown}{more}): remove "
                             "them first with swctl address remove LOGICAL")
        conn.execute("DELETE FROM party WHERE id = %s", (party.id,))


def list_parties(conn: Conn) -> list[tuple[Party, list[str]]]:
    rows = conn.execute(
        "SELECT p.*, coalesce(array_agg(n.network::text ORDER BY n.network)"
        " FILTER (WHERE n.id IS NOT NULL), '{}') AS peers"
        " FROM party p LEFT JOIN peer_network n ON n.party_id = p.id"
        " GROUP BY p.id ORDER BY p.name").fetchall()
    return [(_party(r), list(r["peers"])) for r in rows]


def peer_networks(conn: Conn, name: str) -> list[str]:
    """The party's peer networks (SPEC R1.3), none for a mail-client company."""
    party = get_party(conn, name)
    rows = conn.execute("SELECT network::text AS n FROM peer_network WHERE party_id = %s"
                        " ORDER BY network", (party.id,)).fetchall()
    return [r["n"] for r in rows]


def party_by_peer(conn: Conn, client_address: str) -> Party | None:
    """SPEC R1.3: the party whose peer networks hold this IP (at most one: no overlaps)."""
    row = conn.execute(
        "SELECT p.* FROM peer_network n JOIN party p ON p.id = n.party_id"
        " WHERE n.network >>= %s::inet", (client_address,)).fetchone()
    return None if row is None else _party(row)


# --- addresses -----------------------------------------------------------------------------

_ADDRESS_SELECT = (
    "SELECT a.id, a.logical, a.physical, a.maildrop_login, a.active,"
    " p.id AS p_id, p.name, p.kind, p.relay_host, p.relay_port"
    " FROM address a JOIN party p ON p.id = a.party_id ")


def _address(row: dict[str, Any]) -> Address:
    party = Party(row["p_id"], row["name"], row["kind"], row["relay_host"], row["relay_port"])
    return Address(row["id"], row["logical"], row["physical"], party,
                   row["maildrop_login"], row["active"])


def add_address(conn: Conn, logical: str, party_name: str, physical: str,
                maildrop: str | None, domain: str, active: bool = True) -> Address:
    logical = normalise_address(logical)
    physical = normalise_address(physical)
    if logical.rpartition("@")[2] != domain:
        raise StoreError(f"logical address {logical!r} is not in the Single Window domain {domain}")
    if physical.rpartition("@")[2] == domain:
        raise StoreError(f"physical address {physical!r} may not be in the Single Window domain")
    party = get_party(conn, party_name)
    with _named_violations(f"address {logical!r}"), conn.transaction():
        if maildrop is not None:
            owner = conn.execute("SELECT party_id FROM account WHERE login = %s",
                                 (maildrop,)).fetchone()
            if owner is None:
                # The operator guide's order: the account first, then its address.
                raise StoreError(
                    f"unknown account {maildrop!r}: add it first with swctl account add "
                    f"{maildrop} --party {party.name} --password-stdin")
            if owner["party_id"] != party.id:
                raise StoreError(f"account {maildrop!r} belongs to another party")
        conn.execute(
            "INSERT INTO address (logical, physical, party_id, maildrop_login, active,"
            " activated_at) VALUES (%s, %s, %s, %s, %s, CASE WHEN %s THEN now() END)",
            (logical, physical, party.id, maildrop, active, active))
    found = find_logical(conn, logical)
    assert found is not None
    return found


def activate_address(conn: Conn, logical: str) -> Address:
    logical = normalise_address(logical)
    row = conn.execute(
        "UPDATE address SET active = true, activated_at = coalesce(activated_at, now())"
        " WHERE logical = %s RETURNING id", (logical,)).fetchone()
    if row is None:
        raise StoreError(f"unknown logical address {logical!r}")
    found = find_logical(conn, logical)
    assert found is not None
    return found


def remove_address(conn: Conn, logical: str) -> None:
    """Remove a logical address (and the routes from it). Refused while a route leads to
    it. In force in every daemon when its notification arrives (store.snapshot)."""
    logical = normalise_address(logical)
    with _named_violations(f"address {logical!r}"), conn.transaction():
        row = conn.execute("DELETE FROM address WHERE logical = %s RETURNING id",
                           (logical,)).fetchone()
    if row is None:
        raise StoreError(f"unknown logical address {logical!r}")


def find_logical(conn: Conn, logical: str) -> Address | None:
    row = conn.execute(_ADDRESS_SELECT + "WHERE a.logical = lower(%s)", (logical,)).fetchone()
    return None if row is None else _address(row)


def find_physical(conn: Conn, physical: str) -> Address | None:
    row = conn.execute(_ADDRESS_SELECT + "WHERE a.physical = lower(%s)", (physical,)).fetchone()
    return None if row is None else _address(row)


def known_addresses(conn: Conn, addresses: Iterable[str]) -> dict[str, Address]:
    """:func:`find_physical`, else :func:`find_logical`, for many addresses in one query:
    each known address (lower-cased) to the address it names; unknown ones are absent."""
    asked = sorted({a.lower() for a in addresses})
    if not asked:
        return {}
    rows = conn.execute(
        _ADDRESS_SELECT.replace("SELECT ", "SELECT q.asked, ", 1)
        + "JOIN unnest(%s::text[]) AS q(asked) ON q.asked IN (a.physical, a.logical)",
        (asked,)).fetchall()
    found: dict[str, Address] = {}
    for row in rows:
        address = _address(row)
        if row["asked"] not in found or address.physical == row["asked"]:
            found[row["asked"]] = address  # a physical match wins, as in the two look-ups
    return found


def list_addresses(conn: Conn) -> list[Address]:
    return [_address(r) for r in conn.execute(_ADDRESS_SELECT + "ORDER BY a.logical")]


# --- accounts ------------------------------------------------------------------------------

def add_account(conn: Conn, login: str, party_name: str,
                password_hash: str, digest_md5_hash: str) -> None:
    party = get_party(conn, party_name)
    with _named_violations(f"account {login!r}"), conn.transaction():
        conn.execute(
            "INSERT INTO account (login, party_id, password_hash, digest_md5_hash)"
            " VALUES (%s, %s, %s, %s)", (login, party.id, password_hash, digest_md5_hash))


def set_account_password(conn: Conn, login: str, password_hash: str,
                         digest_md5_hash: str) -> None:
    """An account's new hashes (both forms, so every mechanism takes the new password and
    none the old); every console session of that login ends. StoreError if there is no
    such account. The console's role may do this too (migration 0016)."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE account SET password_hash = %s, digest_md5_hash = %s WHERE login = %s"
            " RETURNING login", (password_hash, digest_md5_hash, login)).fetchone()
        if row is None:
            raise StoreError(f"unknown account {login!r}")
        console.end_sessions(conn, "company", login)


def party_by_login(conn: Conn, login: str) -> Party | None:
    row = conn.execute(
        "SELECT p.* FROM account a JOIN party p ON p.id = a.party_id WHERE a.login = %s",
        (login,)).fetchone()
    return None if row is None else _party(row)


def owns_physical(conn: Conn, party: Party, address: str) -> bool:
    """Is ``address`` one of ``party``'s physical addresses?"""
    row = conn.execute("SELECT 1 FROM address WHERE party_id = %s AND physical = lower(%s)",
                       (party.id, address)).fetchone()
    return row is not None


# --- links ---------------------------------------------------------------------------------

def _side(conn: Conn, text: str) -> tuple[int | None, str | None]:
    """A link side: a kind ('company', 'agency') or a party name."""
    if text in KINDS:
        return None, text
    return get_party(conn, text).id, None


def set_link(conn: Conn, sender: str, recipient: str, allowed: bool) -> None:
    s_party, s_kind = _side(conn, sender)
    r_party, r_kind = _side(conn, recipient)
    with _named_violations("link"), conn.transaction():
        conn.execute(
            "DELETE FROM link WHERE sender_party_id IS NOT DISTINCT FROM %s"
            " AND sender_kind IS NOT DISTINCT FROM %s"
            " AND recipient_party_id IS NOT DISTINCT FROM %s"
            " AND recipient_kind IS NOT DISTINCT FROM %s",
            (s_party, s_kind, r_party, r_kind))
        conn.execute(
            "INSERT INTO link (sender_party_id, sender_kind, recipient_party_id,"
            " recipient_kind, allowed) VALUES (%s, %s, %s, %s, %s)",
            (s_party, s_kind, r_party, r_kind, allowed))


def link_allowed(conn: Conn, sender: Party, recipient: Party) -> bool:
    """The most specific matching link decides; no matching link means denied.

    Specificity: party→party, party→kind, kind→party, kind→kind.
    """
    row = conn.execute(
        "SELECT allowed FROM link"
        " WHERE (sender_party_id = %(s)s OR sender_kind = %(sk)s)"
        "   AND (recipient_party_id = %(r)s OR recipient_kind = %(rk)s)"
        " ORDER BY (sender_party_id IS NOT NULL) DESC, (recipient_party_id IS NOT NULL) DESC"
        " LIMIT 1",
        {"s": sender.id, "sk": sender.kind, "r": recipient.id, "rk": recipient.kind},
    ).fetchone()
    return bool(row and row["allowed"])


# --- routes --------------------------------------------------------------------------------

def add_route(conn: Conn, logical: str, message_type: str, destinations: list[str]) -> None:
    source = find_logical(conn, logical)
    if source is None:
        raise StoreError(f"unknown logical address {logical!r}")
    targets = []
    for text in destinations:
        target = find_logical(conn, text)
        if target is None:
            raise StoreError(f"unknown logical address {text!r}")
        targets.append(target)
    with _named_violations("route"), conn.transaction():
        for target in targets:
            conn.execute(
                "INSERT INTO route (address_id, message_type, destination_id)"
                " VALUES (%s, %s, %s)", (source.id, message_type, target.id))


def routes_for(conn: Conn, logical: str, message_type: str) -> list[Address]:
    rows = conn.execute(
        _ADDRESS_SELECT + "JOIN route r ON r.destination_id = a.id"
        " JOIN address s ON s.id = r.address_id"
        " WHERE s.logical = lower(%s) AND r.message_type = %s ORDER BY a.logical",
        (logical, message_type)).fetchall()
    return [_address(r) for r in rows]
