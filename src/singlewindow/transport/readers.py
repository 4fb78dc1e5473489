"""What a reader of the hub's mail may see (SPEC R4.4, issue 12): logical addresses only,
and message ids that thread under the reader's own messages.

Every copy a submission makes (:mod:`.submission`) and every piece of mail the hub
generated (:mod:`.generated`) is rewritten for the party that reads it:
:func:`message_ids` maps the ids its author named, :func:`reader` gathers the look-ups
:func:`.translate.generated` applies, and :func:`scrub` replaces other parties' physical
addresses in a DSN's text before that. The rewritten mail goes on to :mod:`.copies`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
from typing import Any

import psycopg

from singlewindow import addresses
from singlewindow.store import directory, messages
from singlewindow.store.snapshot import Lookups
from singlewindow.transport import translate
from singlewindow.transport.context import Context

Conn = psycopg.Connection[Any]


def message_ids(ctx: Context, conn: Conn, author: int | None, reader: int
                ) -> translate.IdMap:
    """How the message ids ``author``'s message names reach ``reader`` (issue 12):

    - an id Single Window issued (``<SW…@domain>``) stays, unless it stands for one of
      the reader's own: a copy of the reader's message, or an alias of the reader's
      id, maps back to the reader's id (a reply threads under the reader's original);
    - any other id is the author's words: kept when the reader is the author, else
      the copy the reader got of the author's message with that Message-ID, else a
      stable alias stored for the author (which maps back when the reader replies).
    """
    domain = ctx.config.hub.domain.lower()
    seen: dict[str, str] = {}

    def mapped(mid: str) -> str:
        if mid not in seen:
            seen[mid] = _message_id(conn, author, reader, mid, domain)
        return seen[mid]
    return mapped


def _message_id(conn: Conn, author: int | None, reader: int, mid: str, domain: str) -> str:
    local, _, right = mid[1:-1].rpartition("@")
    if right.lower() == domain and local.startswith("SW"):
        origin = messages.copy_origin(conn, mid)
        if origin is not None and origin[0] == reader and origin[1]:
            return origin[1]
        alias = messages.alias_origin(conn, mid)
        if alias is not None and alias[0] == reader:
            return alias[1]
        return mid
    if author is not None and author == reader:
        return mid
    if author is None:
        # Nobody to map it back to: a stable stand-in that names nothing.
        digest = hashlib.sha256(f"{domain}\0{mid}".encode()).hexdigest()[:24].upper()
        return f"<SWX{digest}@{domain}>"
    copy = messages.copy_for(conn, author, mid, reader)
    if copy is not None:
        return copy
    return messages.alias_for(conn, author, mid,
                              f"<SWR{secrets.token_hex(12).upper()}@{domain}>")


def reader(ctx: Context, conn: Conn, about: str | None, party: directory.Party,
           author: int | None = None) -> translate.Reader:
    """The lookups that rewrite generated mail for ``party`` (issue 12); ``author``,
    the party that submitted ``about``, when the caller knows it."""
    hub = ctx.config.hub
    if author is None and about:
        author = messages.party_of(conn, about)
    machine = socket.gethostname()
    internal = tuple(w for w in (machine, machine.split(".")[0])
                     if w and w.lower() not in (hub.hostname.lower(), hub.domain.lower()))

    def shown(address: str) -> str | None:
        found = ctx.where.known_addresses([address]).get(address.lower())
        if found is not None:
            return found.logical
        host = address.rpartition("@")[2].lower()
        return address if host in (hub.hostname.lower(), hub.domain.lower()) else None
    return translate.Reader(shown, message_ids(ctx, conn, author, party.id),
                            hub.hostname, hub.domain, internal, own=author == party.id)


def scrub(where: Lookups, raw: bytes, reader: directory.Party) -> bytes:
    """Replace every other party's physical address by its logical one (SPEC R4.4).

    Postfix's own DSNs about a forwarded copy name the destination's physical address
    (Final-Recipient, the diagnostic text); the reader must only ever see logical ones.
    Every address-like string is looked up, all of them in one query.
    """
    words = {m[0].decode("ascii", "replace").lower()
             for m in addresses.IN_BYTES.finditer(raw)}
    physical = {a: found for a, found in where.known_addresses(words).items()
                if found.physical == a and found.party.id != reader.id}

    def replace(match: re.Match[bytes]) -> bytes:
        found = physical.get(match[0].decode("ascii", "replace").lower())
        return match[0] if found is None else found.logical.encode()
    return addresses.IN_BYTES.sub(replace, raw)
