"""The directory in memory: what the policy daemon, milter and transport look up per message.

Sits under policy (RCPT time), milter (message time) and transport (after the queue). A
:class:`Snapshot` is the whole directory (parties, peer networks, logins, addresses,
links, routes) read in one repeatable-read transaction and never changed afterwards;
its lookups answer as the :mod:`singlewindow.store.directory` functions of the same
name do over the tables, without a statement. A :class:`LiveDirectory` holds the
current snapshot of one process and replaces it when the directory changes:

- Every change to a directory table bumps ``directory_state.generation`` and NOTIFYs
  :data:`CHANNEL` at commit (migration 0009). A thread LISTENs there and reloads: a
  change is in force in every daemon a few milliseconds after ``swctl`` commits it.
- A lookup that would refuse (no such peer, login, address; a link that denies; an
  address not yet active) first asks, in one short statement, whether the directory has
  a newer generation, and reloads at once if so: a party added a moment ago is served
  even before its notification arrived. The cost of a miss is that statement, and one
  reload when something changed.
- A removal or revocation takes effect when the notification arrives. Should the LISTEN
  connection be lost, the thread reconnects (backoff up to :data:`MAX_BACKOFF_SECONDS`)
  and reloads, picking up what changed meanwhile; it also confirms the generation every
  :data:`CHECK_SECONDS`. A copy not confirmed for :data:`MAX_STALE_SECONDS` (the database
  unreachable) is not used: lookups try to reload and, failing that, raise
  ``psycopg.Error`` so the caller defers (4.3.0). So a removal is in force everywhere
  within milliseconds, and at worst within :data:`MAX_STALE_SECONDS`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import psycopg

from singlewindow import store
from singlewindow.config import Database
from singlewindow.store import StoreError
from singlewindow.store.directory import KINDS, Address, Party

log = logging.getLogger("sw-directory")

#: The LISTEN/NOTIFY channel of migration 0009.
CHANNEL = "sw_directory"
#: Seconds between two confirmations of the generation while no notification comes.
CHECK_SECONDS = 5.0
#: A copy older than this (unconfirmed: the database unreachable) is not answered from.
MAX_STALE_SECONDS = 30.0
#: Longest wait before reconnecting the LISTEN connection.
MAX_BACKOFF_SECONDS = 5.0

_GENERATION = "SELECT generation FROM directory_state"

#: A link side: ``("party", id)`` or ``("kind", 'company')``.
_Side = tuple[str, object]


def _key(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int, int]:
    bits = network.max_prefixlen
    return (network.version, network.prefixlen,
            int(network.network_address) >> (bits - network.prefixlen))


class Lookups(Protocol):
    """What the daemons ask the directory: a :class:`Snapshot` or a :class:`LiveDirectory`."""

    def get_party(self, name: str) -> Party: ...

    def party_by_peer(self, client_address: str) -> Party | None: ...

    def party_by_login(self, login: str) -> Party | None: ...

    def owns_physical(self, party: Party, address: str) -> bool: ...

    def find_logical(self, logical: str) -> Address | None: ...

    def find_physical(self, physical: str) -> Address | None: ...

    def known_addresses(self, addresses: Iterable[str]) -> dict[str, Address]: ...

    def link_allowed(self, sender: Party, recipient: Party) -> bool: ...

    def routes_for(self, logical: str, message_type: str) -> list[Address]: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The directory as of one generation. Build it with :func:`load`."""

    generation: int
    parties: Mapping[str, Party]
    #: (IP version, prefix length, network bits) → party; networks never overlap.
    peers: Mapping[tuple[int, int, int], Party]
    #: The (version, prefix length) pairs present, longest prefix first.
    prefixes: tuple[tuple[int, int], ...]
    logins: Mapping[str, Party]
    logical: Mapping[str, Address]
    physical: Mapping[str, Address]
    links: Mapping[tuple[_Side, _Side], bool]
    #: (source logical, message type) → destinations ordered by logical address.
    routes: Mapping[tuple[str, str], tuple[Address, ...]]

    # --- the lookups of store.directory ---------------------------------------------------

    def get_party(self, name: str) -> Party:
        party = self.parties.get(name)
        if party is None:
            raise StoreError(f"unknown party {name!r}")
        return party

    def party_by_peer(self, client_address: str) -> Party | None:
        """SPEC R1.3: the party whose peer networks hold this IP."""
        try:
            ip = ipaddress.ip_address(client_address)
        except ValueError:
            return None
        value, bits = int(ip), ip.max_prefixlen
        for version, length in self.prefixes:
            if version == ip.version:
                party = self.peers.get((version, length, value >> (bits - length)))
                if party is not None:
                    return party
        return None

    def party_by_login(self, login: str) -> Party | None:
        return self.logins.get(login)

    def owns_physical(self, party: Party, address: str) -> bool:
        found = self.physical.get(address.lower())
        return found is not None and found.party.id == party.id

    def find_logical(self, logical: str) -> Address | None:
        return self.logical.get(logical.lower())

    def find_physical(self, physical: str) -> Address | None:
        return self.physical.get(physical.lower())

    def known_addresses(self, addresses: Iterable[str]) -> dict[str, Address]:
        """A physical match wins over a logical one, as in the store's query."""
        found: dict[str, Address] = {}
        for address in {a.lower() for a in addresses}:
            hit = self.physical.get(address) or self.logical.get(address)
            if hit is not None:
                found[address] = hit
        return found

    def link_allowed(self, sender: Party, recipient: Party) -> bool:
        """The most specific link decides (party→party, party→kind, kind→party,
        kind→kind); none means denied."""
        for s in (("party", sender.id), ("kind", sender.kind)):
            for r in (("party", recipient.id), ("kind", recipient.kind)):
                allowed = self.links.get((s, r))
                if allowed is not None:
                    return allowed
        return False

    def routes_for(self, logical: str, message_type: str) -> list[Address]:
        return list(self.routes.get((logical.lower(), message_type), ()))

    # --- for Postfix's lookup tables (singlewindow.maps) ------------------------------------

    def addresses(self) -> list[Address]:
        return sorted(self.logical.values(), key=lambda a: a.logical)


def load(conn: psycopg.Connection[Any]) -> Snapshot:
    """Read the whole directory in one repeatable-read transaction: seven statements."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute(_GENERATION).fetchone()
        generation = int(row["generation"]) if row else 0
        by_id = {r["id"]: Party(r["id"], r["name"], str(r["kind"]), r["relay_host"],
                                r["relay_port"])
                 for r in conn.execute("SELECT id, name, kind, relay_host, relay_port"
                                       " FROM party")}
        peers: dict[tuple[int, int, int], Party] = {}
        for r in conn.execute("SELECT party_id, network::text AS network FROM peer_network"):
            peers[_key(ipaddress.ip_network(r["network"]))] = by_id[r["party_id"]]
        logins = {r["login"]: by_id[r["party_id"]]
                  for r in conn.execute("SELECT login, party_id FROM account")}
        by_address_id: dict[int, Address] = {}
        for r in conn.execute("SELECT id, logical, physical, party_id, maildrop_login, active"
                              " FROM address"):
            by_address_id[r["id"]] = Address(r["id"], r["logical"], r["physical"],
                                             by_id[r["party_id"]], r["maildrop_login"],
                                             r["active"])
        links: dict[tuple[_Side, _Side], bool] = {}
        for r in conn.execute("SELECT sender_party_id, sender_kind, recipient_party_id,"
                              " recipient_kind, allowed FROM link"):
            s: _Side = (("party", r["sender_party_id"]) if r["sender_party_id"] is not None
                        else ("kind", str(r["sender_kind"])))
            t: _Side = (("party", r["recipient_party_id"])
                        if r["recipient_party_id"] is not None
                        else ("kind", str(r["recipient_kind"])))
            links[(s, t)] = r["allowed"]
        routes: dict[tuple[str, str], list[Address]] = {}
        for r in conn.execute("SELECT address_id, message_type, destination_id FROM route"):
            source = by_address_id[r["address_id"]].logical
            routes.setdefault((source, r["message_type"]), []).append(
                by_address_id[r["destination_id"]])
    return build(generation, by_id.values(), peers, logins, by_address_id.values(), links,
                 routes)


def build(generation: int, parties: Iterable[Party],
          peers: Mapping[tuple[int, int, int], Party], logins: Mapping[str, Party],
          addresses: Iterable[Address], links: Mapping[tuple[_Side, _Side], bool],
          routes: Mapping[tuple[str, str], Iterable[Address]]) -> Snapshot:
    """A snapshot from its parts (what :func:`load` read)."""
    addresses = list(addresses)
    assert all(side[0] in ("party", "kind") for pair in links for side in pair)
    assert all(side[1] in KINDS for pair in links for side in pair if side[0] == "kind")
    return Snapshot(
        generation=generation,
        parties=MappingProxyType({p.name: p for p in parties}),
        peers=MappingProxyType(dict(peers)),
        prefixes=tuple(sorted({(v, length) for v, length, _ in peers},
                              key=lambda p: (p[0], -p[1]))),
        logins=MappingProxyType(dict(logins)),
        logical=MappingProxyType({a.logical: a for a in addresses}),
        physical=MappingProxyType({a.physical: a for a in addresses}),
        links=MappingProxyType(dict(links)),
        routes=MappingProxyType({k: tuple(sorted(v, key=lambda a: a.logical))
                                 for k, v in routes.items()}))


class LiveDirectory:
    """The current :class:`Snapshot` of one process, kept current (module docstring).

    ``name`` names the process in the log and in PostgreSQL (``application_name``
    ``NAME-directory``). ``on_load`` runs in the listening thread after each new
    generation, e.g. to regenerate Postfix's lookup tables (:mod:`singlewindow.maps`).
    Lookups are safe from any thread.
    """

    def __init__(self, db: Database, name: str,
                 on_load: Callable[[Snapshot], None] | None = None) -> None:
        self.db = db
        self.name = name
        self.on_load = on_load
        self._snapshot: Snapshot | None = None
        self._confirmed = 0.0
        self._published = -1
        self._lock = threading.Lock()  # one load at a time on the query connection
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start listening (and loading) in the background; returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._listen, name=f"{self.name}-directory",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop listening. The thread (a daemon thread) ends at its next wake-up, at
        most :data:`CHECK_SECONDS` later; nothing waits for it."""
        self._stop.set()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- the current snapshot ---------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        """The current snapshot; loads one first if none is fresh enough (may raise
        ``psycopg.Error``: the caller defers)."""
        snapshot = self._snapshot
        if snapshot is None or time.monotonic() - self._confirmed > MAX_STALE_SECONDS:
            snapshot = self._query_refresh()
        return snapshot

    def _query_refresh(self) -> Snapshot:
        """:meth:`_refresh` on the query connection; a connection found dead (the server
        restarted, the backend was terminated) is replaced once."""
        with self._lock:
            while True:
                reused = self._conn is not None and not self._conn.closed
                try:
                    return self._refresh(self._query_conn(), force=False)
                except psycopg.OperationalError:
                    self._drop_query_conn()
                    if not reused:
                        raise
                except psycopg.Error:
                    self._drop_query_conn()
                    raise

    def fresh(self) -> Snapshot | None:
        """The current snapshot if it may be answered from, without any I/O; else None."""
        snapshot = self._snapshot
        if snapshot is None or time.monotonic() - self._confirmed > MAX_STALE_SECONDS:
            return None
        return snapshot

    def newer(self) -> Snapshot | None:
        """After a miss: the newer snapshot if the directory changed since, else None."""
        before = self._snapshot
        after = self._query_refresh()
        return after if before is None or after.generation != before.generation else None

    def _query_conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = store.connect(self.db, autocommit=True,
                                       application_name=f"{self.name}-directory")
        return self._conn

    def _drop_query_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _refresh(self, conn: psycopg.Connection[Any], *, force: bool) -> Snapshot:
        """Confirm the generation (one statement) and load when it moved."""
        current = self._snapshot
        if current is not None and not force:
            row = conn.execute(_GENERATION).fetchone()
            if row is not None and int(row["generation"]) == current.generation:
                self._confirmed = time.monotonic()
                return current
        fresh = load(conn)
        self._confirmed = time.monotonic()
        if current is None or fresh.generation != current.generation:
            self._snapshot = fresh
            log.info("%s: directory generation %d loaded (%d parties, %d addresses)",
                     self.name, fresh.generation, len(fresh.parties), len(fresh.logical))
            return fresh
        return current

    # --- the listening thread ---------------------------------------------------------------

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            connected = False
            try:
                with store.connect(self.db, autocommit=True,
                                   application_name=f"{self.name}-directory") as conn:
                    connected = True
                    conn.execute(f"LISTEN {CHANNEL}")
                    # After LISTEN: a change committed from here on is notified, one
                    # committed before is in this load.
                    with self._lock:
                        self._refresh(conn, force=True)
                    backoff = 0.1
                    while not self._stop.is_set():
                        self._publish()
                        for _ in conn.notifies(timeout=CHECK_SECONDS, stop_after=1):
                            pass
                        with self._lock:
                            self._refresh(conn, force=False)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    break
                # A lost connection is worth a warning; the attempts after it (the
                # database down, or not yet up at start) are not, each time.
                log.log(logging.WARNING if connected else logging.INFO,
                        "%s: directory connection %s (%s), retrying in %.1f s", self.name,
                        "lost" if connected else "failed", exc.__class__.__name__, backoff)
            except Exception:
                log.exception("%s: directory listener failed", self.name)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _publish(self) -> None:
        snapshot = self._snapshot
        if self.on_load is None or snapshot is None or snapshot.generation == self._published:
            return
        try:
            self.on_load(snapshot)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("%s: acting on directory generation %d failed, retrying: %s",
                        self.name, snapshot.generation, exc)
            return
        except Exception:
            # E.g. postmap failed: try again with the next change or confirmation.
            log.exception("%s: acting on directory generation %d failed", self.name,
                          snapshot.generation)
            return
        self._published = snapshot.generation

    # --- lookups: the snapshot's, with one check for a newer directory before a miss -------

    def get_party(self, name: str) -> Party:
        try:
            return self.snapshot.get_party(name)
        except StoreError:
            newer = self.newer()
            if newer is None:
                raise
            return newer.get_party(name)

    def party_by_peer(self, client_address: str) -> Party | None:
        found = self.snapshot.party_by_peer(client_address)
        if found is None and (newer := self.newer()) is not None:
            found = newer.party_by_peer(client_address)
        return found

    def party_by_login(self, login: str) -> Party | None:
        found = self.snapshot.party_by_login(login)
        if found is None and (newer := self.newer()) is not None:
            found = newer.party_by_login(login)
        return found

    def owns_physical(self, party: Party, address: str) -> bool:
        if self.snapshot.owns_physical(party, address):
            return True
        newer = self.newer()
        return newer is not None and newer.owns_physical(party, address)

    def find_physical(self, physical: str) -> Address | None:
        found = self.snapshot.find_physical(physical)
        if found is None and (newer := self.newer()) is not None:
            found = newer.find_physical(physical)
        return found

    def find_logical(self, logical: str) -> Address | None:
        """An inactive address counts as a miss: it may have been activated just now."""
        found = self.snapshot.find_logical(logical)
        if (found is None or not found.active) and (newer := self.newer()) is not None:
            found = newer.find_logical(logical)
        return found

    def link_allowed(self, sender: Party, recipient: Party) -> bool:
        if self.snapshot.link_allowed(sender, recipient):
            return True
        newer = self.newer()
        if newer is None:
            return False
        # The parties as the newer snapshot knows them (a kind cannot change, an id can't).
        return newer.link_allowed(sender, recipient)

    def known_addresses(self, addresses: Iterable[str]) -> dict[str, Address]:
        """No reload on a miss: most words asked about are nobody's address."""
        return self.snapshot.known_addresses(addresses)

    def routes_for(self, logical: str, message_type: str) -> list[Address]:
        """No reload on a miss: without a route the address's own party receives."""
        return self.snapshot.routes_for(logical, message_type)


_shared: dict[tuple[int, Database], LiveDirectory] = {}
_shared_lock = threading.Lock()


def shared(db: Database, name: str) -> LiveDirectory:
    """The process's one started :class:`LiveDirectory` for ``db`` (a forked worker gets
    its own: threads do not survive fork)."""
    key = (os.getpid(), db)
    live = _shared.get(key)
    if live is None:
        with _shared_lock:
            live = _shared.get(key)
            if live is None:
                live = _shared[key] = LiveDirectory(db, name)
                live.start()
    return live
