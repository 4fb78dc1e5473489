"""Migration 0012 and store.tunnels: a tunnel per MTA party, its reqid allocated once and
never moved or reused, its values refused by the database too; party removal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from singlewindow.config import ADMIN_ROLE, Config
from singlewindow.ipsec import Tunnel
from singlewindow.store import StoreError, connect, directory, tunnels

DN = "C=NL, O=Company A, CN=gw.a.example"


@pytest.fixture
def admin(database_config: Config, conn: psycopg.Connection[Any]
          ) -> Iterator[psycopg.Connection[Any]]:
    """swctl's role, on an emptied directory (``conn`` truncates it)."""
    with connect(database_config.database, autocommit=True, role=ADMIN_ROLE) as c:
        yield c


def mta(conn: psycopg.Connection[Any], name: str, *peers: str) -> None:
    directory.add_party(conn, name, "company", list(peers), None)


def test_a_tunnel_is_added_changed_and_removed_with_one_reqid(
        admin: psycopg.Connection[Any]) -> None:
    mta(admin, "acme", "10.1.0.0/24", "2001:db8:a::/48")
    assert tunnels.get_tunnel(admin, "acme") is None
    assert tunnels.set_tunnel(admin, "acme", "203.0.113.1", "gw.acme.example", "psk") == "added"
    first = tunnels.get_tunnel(admin, "acme")
    assert first == Tunnel("acme", 1000, "203.0.113.1", "gw.acme.example", "psk",
                           ("10.1.0.0/24", "2001:db8:a::/48"))
    # The same values again are no change; new values are, and keep the reqid.
    assert tunnels.set_tunnel(admin, "acme", "203.0.113.1", "gw.acme.example", "psk") is None
    assert tunnels.set_tunnel(admin, "acme", "2001:DB8::0:1", DN, "cert") == "changed"
    changed = tunnels.get_tunnel(admin, "acme")
    assert changed is not None and changed.reqid == 1000
    assert (changed.gateway, changed.remote_id, changed.auth) == ("2001:db8::1", DN, "cert")
    assert tunnels.set_tunnel(admin, "acme", "2001:db8::1", DN, "cert") is None
    assert tunnels.remove_tunnel(admin, "acme") == "removed"
    assert tunnels.remove_tunnel(admin, "acme") is None
    assert tunnels.get_tunnel(admin, "acme") is None


def test_reqids_count_up_from_1000_and_are_never_handed_out_again(
        admin: psycopg.Connection[Any]) -> None:
    mta(admin, "acme", "10.1.0.0/24")
    mta(admin, "beta", "10.2.0.0/24")
    tunnels.set_tunnel(admin, "acme", "203.0.113.1", "gw.acme.example", "psk")
    tunnels.set_tunnel(admin, "beta", "203.0.113.2", "gw.beta.example", "psk")
    tunnels.remove_tunnel(admin, "acme")
    tunnels.set_tunnel(admin, "acme", "203.0.113.1", "gw.acme.example", "psk")
    directory.remove_party(admin, "beta")
    mta(admin, "gamma", "10.3.0.0/24")
    tunnels.set_tunnel(admin, "gamma", "203.0.113.3", "gw.gamma.example", "cert")
    assert [(t.party, t.reqid) for t in tunnels.list_tunnels(admin)] == \
        [("acme", 1002), ("gamma", 1003)]


def test_swctl_can_neither_choose_nor_move_a_reqid(admin: psycopg.Connection[Any]) -> None:
    mta(admin, "acme", "10.1.0.0/24")
    tunnels.set_tunnel(admin, "acme", "203.0.113.1", "gw.acme.example", "psk")
    for sql in ("UPDATE ipsec_tunnel SET reqid = 1001",
                "INSERT INTO ipsec_tunnel (party_id, reqid, gateway, remote_id, auth)"
                " SELECT id, 1000, '203.0.113.9', 'x', 'psk' FROM party",
                "SELECT setval('ipsec_tunnel_reqid', 1000)"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            admin.execute(sql)  # type: ignore[arg-type]


def test_the_daemons_read_tunnels_and_write_none(database_config: Config,
                                                 admin: psycopg.Connection[Any]) -> None:
    mta(admin, "acme", "10.1.0.0/24")
    tunnels.set_tunnel(admin, "acme", "203.0.113.1", "gw.acme.example", "psk")
    with connect(database_config.database, autocommit=True) as daemon:
        assert daemon.execute("SELECT reqid FROM ipsec_tunnel").fetchone() == {"reqid": 1000}
        for sql in ("UPDATE ipsec_tunnel SET gateway = '203.0.113.66'",
                    "DELETE FROM ipsec_tunnel",
                    "SELECT nextval('ipsec_tunnel_reqid')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                daemon.execute(sql)  # type: ignore[arg-type]


@pytest.mark.parametrize("gateway,remote_id,auth,message", [
    ("10.9.0.0/24", "gw", "psk", "invalid gateway '10.9.0.0/24': is not one IP address"),
    ("gw.acme.example", "gw", "psk", "is not one IP address"),
    ("127.0.0.1", "gw", "psk", "not a unicast address of another host"),
    ("198.51.100.10", "gw", "psk", "gateway 198.51.100.10 is the hub's own address"),
    ("203.0.113.1", "", "psk", "invalid IKE identity '': it is empty"),
    ("203.0.113.1", 'gw" }', "psk", "which a swanctl.conf value cannot hold"),
    ("203.0.113.1", "gw", "rsa", "invalid authentication 'rsa': expected psk or cert"),
])
def test_a_tunnel_that_cannot_work_is_refused(admin: psycopg.Connection[Any], gateway: str,
                                              remote_id: str, auth: str, message: str) -> None:
    mta(admin, "acme", "10.1.0.0/24")
    with pytest.raises(StoreError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tunnels.set_tunnel(admin, "acme", gateway, remote_id, auth, hub=["198.51.100.10"])
    assert tunnels.get_tunnel(admin, "acme") is None


def test_who_cannot_have_a_tunnel(admin: psycopg.Connection[Any]) -> None:
    directory.add_party(admin, "brightline", "company", [], None)
    with pytest.raises(StoreError, match="has no peer networks"):
        tunnels.set_tunnel(admin, "brightline", "203.0.113.1", "gw", "psk")
    mta(admin, "acme.nl", "10.1.0.0/24")
    with pytest.raises(StoreError, match="a swanctl connection name cannot hold"):
        tunnels.set_tunnel(admin, "acme.nl", "203.0.113.1", "gw", "psk")
    with pytest.raises(StoreError, match="unknown party 'ghost'"):
        tunnels.set_tunnel(admin, "ghost", "203.0.113.1", "gw", "psk")
    assert tunnels.list_tunnels(admin) == []


def test_one_identity_per_party(admin: psycopg.Connection[Any]) -> None:
    mta(admin, "acme", "10.1.0.0/24")
    mta(admin, "beta", "10.2.0.0/24")
    tunnels.set_tunnel(admin, "acme", "203.0.113.1", DN, "cert")
    with pytest.raises(StoreError, match="another party already authenticates with this"):
        tunnels.set_tunnel(admin, "beta", "203.0.113.1", DN, "cert")
    # One gateway may serve two parties (with two identities).
    assert tunnels.set_tunnel(admin, "beta", "203.0.113.1", "gw.beta.example", "cert") == "added"


@pytest.mark.parametrize("column,value", [
    ("gateway", "10.0.0.0/8"), ("remote_id", ""), ("remote_id", "a\nb"),
    ("remote_id", "a}b"), ("remote_id", ' x'), ("auth", "xauth")])
def test_the_database_refuses_what_the_checks_refuse(conn: psycopg.Connection[Any],
                                                     column: str, value: str) -> None:
    """Any writer, not only swctl, meets the same rules (the owner here, who may do all)."""
    mta(conn, "acme", "10.1.0.0/24")
    row = {"gateway": "203.0.113.1", "remote_id": "gw", "auth": "psk", column: value}
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO ipsec_tunnel (party_id, gateway, remote_id, auth)"
                     " SELECT id, %(gateway)s, %(remote_id)s, %(auth)s FROM party", row)
    conn.execute("INSERT INTO ipsec_tunnel (party_id, gateway, remote_id, auth)"
                 " SELECT id, '203.0.113.1', %s, 'psk' FROM party", (DN,))


def test_a_party_goes_with_its_tunnel_but_not_while_it_has_addresses(
        admin: psycopg.Connection[Any]) -> None:
    mta(admin, "acme", "10.1.0.0/24")
    tunnels.set_tunnel(admin, "acme", "203.0.113.1", "gw.acme.example", "psk")
    for n in range(4):
        directory.add_address(admin, f"acme{n}@sw.test", "acme", f"edi{n}@acme.example",
                              None, "sw.test")
    with pytest.raises(StoreError, match=r"party 'acme' still has addresses \(acme0@sw.test, "
                                         r"acme1@sw.test, acme2@sw.test and 1 more\): remove "
                                         r"them first with swctl address remove LOGICAL"):
        directory.remove_party(admin, "acme")
    assert tunnels.get_tunnel(admin, "acme") is not None
    for n in range(4):
        directory.remove_address(admin, f"acme{n}@sw.test")
    directory.remove_party(admin, "acme")
    assert directory.list_parties(admin) == [] and tunnels.list_tunnels(admin) == []
    assert admin.execute("SELECT count(*) AS n FROM peer_network").fetchone() == {"n": 0}
    with pytest.raises(StoreError, match="unknown party 'acme'"):
        directory.remove_party(admin, "acme")
