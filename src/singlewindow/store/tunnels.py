"""The IPsec tunnel of each MTA party (issue 16, SPEC D11): reads and writes.

Used by ``swctl`` (``party add --ipsec-*``, ``party tunnel``, ``party list``, ``render
--target ipsec|tunnels``); the daemons do not read it. What a valid tunnel is, and what a
change means for the connection, are plain functions in :mod:`singlewindow.ipsec`; the
database (migration 0012) holds the same rules and allocates each tunnel's reqid once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import errors

from singlewindow import ipsec
from singlewindow.ipsec import Tunnel
from singlewindow.store import StoreError
from singlewindow.store.directory import Conn, get_party, hub_clash, peer_networks

_SELECT = (
    "SELECT p.name, t.reqid, host(t.gateway) AS gateway, t.remote_id, t.auth,"
    " coalesce(array_agg(n.network::text ORDER BY n.network)"
    " FILTER (WHERE n.id IS NOT NULL), '{}') AS peers"
    " FROM ipsec_tunnel t JOIN party p ON p.id = t.party_id"
    " LEFT JOIN peer_network n ON n.party_id = p.id ")
_GROUP = " GROUP BY p.id, t.party_id ORDER BY p.name"


def _tunnel(row: dict[str, Any]) -> Tunnel:
    return Tunnel(row["name"], row["reqid"], row["gateway"], row["remote_id"], row["auth"],
                  tuple(row["peers"]))


def get_tunnel(conn: Conn, party_name: str) -> Tunnel | None:
    """The party's tunnel, or None (an unknown party is an error)."""
    get_party(conn, party_name)
    row = conn.execute(_SELECT + "WHERE p.name = %s" + _GROUP, (party_name,)).fetchone()
    return None if row is None else _tunnel(row)


def list_tunnels(conn: Conn) -> list[Tunnel]:
    """Every tunnel, with its party's peer networks (the remote traffic selectors)."""
    return [_tunnel(r) for r in conn.execute(_SELECT + _GROUP).fetchall()]


def check_tunnel(party_name: str, gateway: str, remote_id: str, auth: str,
                 hub: Iterable[str] = ()) -> str:
    """Refuse a tunnel that cannot work, naming why; return the gateway's address in its
    normal form. ``hub``: the hub's own addresses, which no gateway may be."""
    problem = ipsec.name_problem(party_name)
    if problem is not None:
        raise StoreError(problem)
    problem = ipsec.gateway_problem(gateway)
    if problem is not None:
        raise StoreError(f"invalid gateway {gateway!r}: {problem}")
    address = ipaddress.ip_address(gateway)
    clash = hub_clash(ipaddress.ip_network(address), hub)
    if clash is not None:
        raise StoreError(f"gateway {address} is the hub's own address ({clash}): give the "
                         "party's IKE endpoint")
    problem = ipsec.id_problem(remote_id)
    if problem is not None:
        raise StoreError(f"invalid IKE identity {remote_id!r}: it {problem}")
    if auth not in ipsec.AUTHS:
        raise StoreError(f"invalid authentication {auth!r}: expected psk or cert")
    return str(address)


def set_tunnel(conn: Conn, party_name: str, gateway: str, remote_id: str, auth: str,
               hub: Iterable[str] = ()) -> str | None:
    """Give the party a tunnel, or change it (its reqid stays). Returns what happened to
    the connection (:func:`singlewindow.ipsec.change`): ``added``, ``changed`` or None.

    A tunnel carries the party's peer networks, so a party without any gets none."""
    gateway = check_tunnel(party_name, gateway, remote_id, auth, hub)
    party = get_party(conn, party_name)
    with _identity_taken(party_name), conn.transaction():
        before = _locked(conn, party.id, party_name)
        if not peer_networks(conn, party_name):
            raise StoreError(f"party {party_name!r} has no peer networks: a tunnel carries "
                             "an MTA party's --peer networks")
        if before is None:
            conn.execute("INSERT INTO ipsec_tunnel (party_id, gateway, remote_id, auth)"
                         " VALUES (%s, %s, %s, %s)", (party.id, gateway, remote_id, auth))
        elif before.settings != (gateway, remote_id, auth):
            conn.execute("UPDATE ipsec_tunnel SET gateway = %s, remote_id = %s, auth = %s,"
                         " updated = now() WHERE party_id = %s",
                         (gateway, remote_id, auth, party.id))
    after = Tunnel(party_name, 0, gateway, remote_id, auth)
    return ipsec.change(before, after)


def remove_tunnel(conn: Conn, party_name: str) -> str | None:
    """Drop the party's tunnel: ``removed``, or None when it had none."""
    party = get_party(conn, party_name)
    with conn.transaction():
        before = _locked(conn, party.id, party_name)
        conn.execute("DELETE FROM ipsec_tunnel WHERE party_id = %s", (party.id,))
    return ipsec.change(before, None)


def _locked(conn: Conn, party_id: int, party_name: str) -> Tunnel | None:
    """The party's tunnel as it is, locked until the caller's transaction ends."""
    row = conn.execute("SELECT reqid, host(gateway) AS gateway, remote_id, auth"
                       " FROM ipsec_tunnel WHERE party_id = %s FOR UPDATE",
                       (party_id,)).fetchone()
    if row is None:
        return None
    return Tunnel(party_name, row["reqid"], row["gateway"], row["remote_id"], row["auth"])


@contextmanager
def _identity_taken(party_name: str) -> Iterator[None]:
    """The one constraint the checks above cannot foresee: another party's identity."""
    try:
        yield
    except errors.UniqueViolation as exc:
        if exc.diag.constraint_name == "ipsec_tunnel_remote_id_key":
            raise StoreError(f"tunnel of {party_name!r}: another party already "
                             "authenticates with this IKE identity") from None
        raise StoreError(f"tunnel of {party_name!r}: added by someone else meanwhile; "
                         "run the command again") from None
