"""The store's rules hold in the database: duplicates, overlaps and dangling names fail."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from singlewindow.store import StoreError, directory

D = "sw.test"


def company(conn: psycopg.Connection[Any], name: str = "acme", peer: str = "10.1.0.0/24") -> None:
    directory.add_party(conn, name, "company", [peer], "127.0.0.1:2601")
    directory.add_address(conn, f"{name}@{D}", name, f"edi@{name}.example", None, D)


def test_party_and_address_round_trip(conn: psycopg.Connection[Any]) -> None:
    company(conn)
    found = directory.find_logical(conn, "ACME@sw.test")
    assert found is not None
    assert (found.physical, found.party.name, found.active) == ("edi@acme.example", "acme", True)
    assert found.party.relay_host == "127.0.0.1" and found.party.relay_port == 2601
    assert directory.find_physical(conn, "EDI@acme.example") == found


def test_peer_lookup_and_overlap_refused(conn: psycopg.Connection[Any]) -> None:
    company(conn)
    party = directory.party_by_peer(conn, "10.1.0.77")
    assert party is not None and party.name == "acme"
    assert directory.party_by_peer(conn, "10.2.0.1") is None
    with pytest.raises(StoreError, match="overlaps"):
        directory.add_party(conn, "other", "company", ["10.1.0.128/25"], None)
    assert [p.name for p, _ in directory.list_parties(conn)] == ["acme"]


@pytest.mark.parametrize("bad", ["10.1.0.1/33", "10.1.0.1/24", "not-a-net"])
def test_bad_cidr(conn: psycopg.Connection[Any], bad: str) -> None:
    with pytest.raises(StoreError, match="invalid network"):
        directory.add_party(conn, "acme", "company", [bad], None)


def test_duplicates_refused(conn: psycopg.Connection[Any]) -> None:
    company(conn)
    with pytest.raises(StoreError, match="already exists"):
        directory.add_party(conn, "acme", "agency", [], None)
    directory.add_party(conn, "beta", "company", [], None)
    with pytest.raises(StoreError, match="already exists"):
        directory.add_address(conn, f"acme@{D}", "beta", "x@beta.example", None, D)
    with pytest.raises(StoreError, match="already exists"):
        directory.add_address(conn, f"beta@{D}", "beta", "EDI@acme.example", None, D)


@pytest.mark.parametrize("logical,physical,why", [
    ("acme@elsewhere.example", "edi@acme.example", "not in the Single Window domain"),
    ("acme@sw.test", "edi@sw.test", "may not be in the Single Window domain"),
    ("acme at sw.test", "edi@acme.example", "invalid mail address"),
    ("acme@sw.test", "edi@@acme.example", "invalid mail address"),
])
def test_address_syntax(conn: psycopg.Connection[Any], logical: str, physical: str,
                        why: str) -> None:
    directory.add_party(conn, "acme", "company", [], None)
    with pytest.raises(StoreError, match=why):
        directory.add_address(conn, logical, "acme", physical, None, D)


def test_unknown_party_and_reserved_names(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(StoreError, match="unknown party 'ghost'"):
        directory.add_address(conn, f"g@{D}", "ghost", "g@ghost.example", None, D)
    with pytest.raises(StoreError, match="value not allowed"):
        directory.add_party(conn, "agency", "company", [], None)


def test_maildrop_must_be_own_account(conn: psycopg.Connection[Any]) -> None:
    directory.add_party(conn, "acme", "company", [], None)
    directory.add_party(conn, "beta", "company", [], None)
    directory.add_account(conn, "beta", "beta", "{SHA512-CRYPT}$6$x", "{DIGEST-MD5}" + "0" * 32)
    with pytest.raises(StoreError, match="belongs to another party"):
        directory.add_address(conn, f"acme@{D}", "acme", "a@acme.example", "beta", D)
    with pytest.raises(StoreError, match="unknown account"):
        directory.add_address(conn, f"acme@{D}", "acme", "a@acme.example", "nobody", D)


def test_inactive_then_activated(conn: psycopg.Connection[Any]) -> None:
    directory.add_party(conn, "acme", "company", [], None)
    added = directory.add_address(conn, f"acme@{D}", "acme", "a@acme.example", None, D,
                                  active=False)
    assert not added.active
    assert directory.activate_address(conn, f"acme@{D}").active
    with pytest.raises(StoreError, match="unknown logical address"):
        directory.activate_address(conn, f"ghost@{D}")


def test_links_default_and_most_specific_wins(conn: psycopg.Connection[Any]) -> None:
    a = directory.add_party(conn, "acme", "company", [], None)
    b = directory.add_party(conn, "beta", "company", [], None)
    customs = directory.add_party(conn, "customs", "agency", [], None)
    coast = directory.add_party(conn, "coast", "agency", [], None)
    assert directory.link_allowed(conn, a, customs)
    assert directory.link_allowed(conn, customs, a)
    assert not directory.link_allowed(conn, a, b)
    assert not directory.link_allowed(conn, customs, coast)
    directory.set_link(conn, "acme", "customs", False)
    assert not directory.link_allowed(conn, a, customs)
    assert directory.link_allowed(conn, b, customs)
    directory.set_link(conn, "acme", "company", True)
    assert directory.link_allowed(conn, a, b)
    directory.set_link(conn, "acme", "customs", True)  # replaces the deny
    assert directory.link_allowed(conn, a, customs)


def test_routes(conn: psycopg.Connection[Any]) -> None:
    company(conn)
    for name in ("customs", "coast"):
        directory.add_party(conn, name, "agency", [], None)
        directory.add_address(conn, f"{name}@{D}", name, f"in@{name}.example", None, D)
    directory.add_route(conn, f"customs@{D}", "PAXLST", [f"customs@{D}", f"coast@{D}"])
    got = directory.routes_for(conn, f"customs@{D}", "PAXLST")
    assert [a.logical for a in got] == [f"coast@{D}", f"customs@{D}"]
    assert directory.routes_for(conn, f"customs@{D}", "IFTDGN") == []
    with pytest.raises(StoreError, match="already exists"):
        directory.add_route(conn, f"customs@{D}", "PAXLST", [f"coast@{D}"])
    with pytest.raises(StoreError, match="unknown logical address"):
        directory.add_route(conn, f"customs@{D}", "PAXLST", [f"ghost@{D}"])


def test_known_addresses_is_the_two_lookups_in_one_query(conn: psycopg.Connection[Any]) -> None:
    company(conn)
    company(conn, "beta", "10.2.0.0/24")
    asked = ["EDI@acme.example", "beta@SW.test", "nobody@sw.test", "edi@beta.example",
             "acme@sw.test", "edi@acme.example"]
    found = directory.known_addresses(conn, asked)
    for address in asked:
        one = directory.find_physical(conn, address) or directory.find_logical(conn, address)
        assert found.get(address.lower()) == one
    assert set(found) == {"edi@acme.example", "beta@sw.test", "edi@beta.example",
                          "acme@sw.test"}
    assert directory.known_addresses(conn, []) == {}


OLD, NEW = "{SHA512-CRYPT}$6$old", "{SHA512-CRYPT}$6$new"
OLD_MD5, NEW_MD5 = "{DIGEST-MD5}" + "0" * 32, "{DIGEST-MD5}" + "1" * 32


def test_an_accounts_password_is_changed_and_its_console_sessions_end(
        conn: psycopg.Connection[Any]) -> None:
    conn.execute("TRUNCATE console_session")
    directory.add_party(conn, "acme", "company", [], None)
    directory.add_account(conn, "clerk", "acme", OLD, OLD_MD5)
    directory.add_account(conn, "desk", "acme", OLD, OLD_MD5)
    acme = directory.get_party(conn, "acme").id
    for token, login in (("a", "clerk"), ("b", "desk")):
        conn.execute("INSERT INTO console_session (token_sha256, kind, login, party_id, csrf)"
                     " VALUES (%s, 'company', %s, %s, 'x')", (token * 64, login, acme))
    directory.set_account_password(conn, "clerk", NEW, NEW_MD5)
    assert conn.execute("SELECT login, password_hash, digest_md5_hash FROM account"
                        " ORDER BY login").fetchall() == [
        {"login": "clerk", "password_hash": NEW, "digest_md5_hash": NEW_MD5},
        {"login": "desk", "password_hash": OLD, "digest_md5_hash": OLD_MD5}]
    assert conn.execute("SELECT login FROM console_session").fetchall() == [{"login": "desk"}]
    with pytest.raises(StoreError, match="unknown account 'nobody'"):
        directory.set_account_password(conn, "nobody", NEW, NEW_MD5)
