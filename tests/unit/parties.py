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
