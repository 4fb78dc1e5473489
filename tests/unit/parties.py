"""The parties the store-backed unit tests share: an MTA company, a mail-client company
with an account, and an agency (the milter tests add a second agency)."""

from __future__ import annotations

from typing import Any

import psycopg

from singlewindow.store import directory

D = "sw.test"


def seed(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    directory.add_party(conn, "acme", "company", ["10.1.0.0/24"], "127.0.0.1:2601")
    directory.add_address(conn, f"acme@{D}", "acme", "edi@acme.example", None, D)
    directory.add_party(conn, "bright", "company", [], None)
    directory.add_account(conn, "bright", "bright", "{SHA512-CRYPT}$6$x", "{DIGEST-MD5}" + "0" * 32)
    directory.add_address(conn, f"bright@{D}", "bright", "clerk@bright.example", "bright", D)
    directory.add_party(conn, "customs", "agency", ["10.9.0.1/32"], "127.0.0.1:2602")
    directory.add_address(conn, f"customs@{D}", "customs", "in@customs.example", None, D)
    return conn


def seed_with_harbour(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """:func:`seed`, an inactive agency ``harbour`` with two peer networks, links of every
    form (party or kind on either side) and a route to two destinations."""
    seed(conn)
    directory.add_party(conn, "harbour", "agency", ["2001:db8::/48", "10.1.1.7/32"],
                        "127.0.0.1:2603")
    directory.add_address(conn, f"harbour@{D}", "harbour", "in@harbour.example", None, D,
                          active=False)
    directory.set_link(conn, "acme", "customs", False)      # party -> party
    directory.set_link(conn, "bright", "agency", False)     # party -> kind
    directory.set_link(conn, "company", "harbour", True)    # kind -> party
    directory.add_route(conn, f"acme@{D}", "PAXLST", [f"harbour@{D}", f"customs@{D}"])
    return conn
