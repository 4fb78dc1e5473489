"""What a reader of the hub's mail may see (:mod:`singlewindow.transport.readers`):
other parties' physical addresses scrubbed, message ids mapped for the reader."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from singlewindow.config import Config
from singlewindow.store import directory
from singlewindow.transport import readers
from singlewindow.transport.context import Context
from singlewindow.transport.forward import Injector

ACME = directory.Party(1, "acme", "company", None, None)
CUSTOMS = directory.Party(2, "customs", "agency", None, None)
KNOWN = {a.physical: a for a in (
    directory.Address(1, "acme@sw.test", "edi@acme.example", ACME, None, True),
    directory.Address(2, "customs@sw.test", "in@customs.example", CUSTOMS, None, True))}


class Lookups:
    """The directory's ``known_addresses``, remembering what it was asked."""

    def __init__(self) -> None:
        self.asked: list[set[str]] = []

    def known_addresses(self, addresses: Iterable[str]) -> dict[str, directory.Address]:
        words = set(addresses)
        self.asked.append(words)
        return {a: KNOWN[a] for a in words if a in KNOWN}


def test_scrub_replaces_other_parties_physical_addresses_in_one_query() -> None:
    where = Lookups()
    raw = (b"Final-Recipient: rfc822; In@Customs.example\r\n"
           b"Diagnostic-Code: smtp; 550 <in@customs.example>: no; ask edi@acme.example.\r\n"
           b"Someone: x@elsewhere.example\r\n")
    scrubbed = readers.scrub(where, raw, ACME)  # type: ignore[arg-type]  # the one method
    assert scrubbed == (b"Final-Recipient: rfc822; customs@sw.test\r\n"
                        b"Diagnostic-Code: smtp; 550 <customs@sw.test>: no; ask "
                        b"edi@acme.example.\r\n"  # the reader's own stays
                        b"Someone: x@elsewhere.example\r\n")
    assert where.asked == [{"in@customs.example", "edi@acme.example",
                            "x@elsewhere.example"}]


def context(config: Config) -> Context:
    return Context(config, Injector("127.0.0.1", 1, config.hub.hostname))


def test_message_ids_of_the_readers_own_or_nobodys_need_no_store(
        database_config: Config) -> None:
    ctx = context(database_config)
    domain = database_config.hub.domain
    conn: Any = None  # neither case asks the store
    own = readers.message_ids(ctx, conn, 7, 7)
    assert own("<m@acme.example>") == "<m@acme.example>"
    nobodys = readers.message_ids(ctx, conn, None, 7)
    stand_in = nobodys("<m@acme.example>")
    assert stand_in.startswith("<SWX") and stand_in.endswith(f"@{domain}>")
    assert readers.message_ids(ctx, conn, None, 8)("<m@acme.example>") == stand_in
    assert nobodys("<other@acme.example>") != stand_in


def test_a_hub_id_that_is_nobodys_copy_stays(database_config: Config,
                                             conn: psycopg.Connection[Any]) -> None:
    ctx = context(database_config)
    mid = f"<SW0123456789@{database_config.hub.domain}>"
    assert readers.message_ids(ctx, conn, 1, 2)(mid) == mid
