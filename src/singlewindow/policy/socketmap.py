"""Postfix's lookup tables, live: the socketmap behind the generated hash files.

Postfix asks its tables in order and stops at the first that knows the key
(``relay_recipient_maps = hash:FILE, socketmap:unix:SOCKET:relay_recipients``). The hash
files (:mod:`singlewindow.maps`) answer every address the directory held when they were
written, without leaving the Postfix process; only a key they do not know (an unknown
address, or one added since: the files follow a change some tens of milliseconds later,
trivial-rewrite picks them up within seconds) reaches this socketmap, which answers from
the policy daemon's live directory, checking first for a newer one. So an address added
with ``swctl`` is accepted and routed at once, and valid mail costs no round trip.

Wire format: socketmap_table(5), netstrings (http://cr.yp.to/proto/netstrings.txt). A
request is ``NAME KEY``; a reply ``OK VALUE``, ``NOTFOUND `` or ``TEMP REASON``. This
module is the codec and the answers, with no I/O.
"""

from __future__ import annotations

from singlewindow import maps
from singlewindow.store.snapshot import Lookups

#: socketmap_table(5): Postfix refuses longer replies; no request comes near it.
MAX_NETSTRING = 100_000


class NetstringError(ValueError):
    """The peer sent something that is not a netstring."""


class Decoder:
    """Netstrings out of a byte stream, incrementally."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        found: list[bytes] = []
        while True:
            colon = self._buffer.find(b":")
            if colon < 0:
                if len(self._buffer) > 10:
                    raise NetstringError("netstring length too long")
                return found
            digits = bytes(self._buffer[:colon])
            if not digits.isdigit() or int(digits) > MAX_NETSTRING:
                raise NetstringError(f"bad netstring length {digits[:12]!r}")
            end = colon + 1 + int(digits)
            if len(self._buffer) < end + 1:
                return found
            if self._buffer[end:end + 1] != b",":
                raise NetstringError("netstring without its comma")
            found.append(bytes(self._buffer[colon + 1:end]))
            del self._buffer[:end + 1]


def encode(reply: str) -> bytes:
    data = reply.encode("utf-8")
    return str(len(data)).encode() + b":" + data + b","


def answer(request: bytes, where: Lookups, domain: str, lmtp: str) -> str:
    """The reply to one request. ``lmtp``: relay_transport's value, the transport of a
    logical address. May raise ``psycopg.Error`` (the caller answers TEMP)."""
    name, _, key = request.decode("utf-8", "replace").partition(" ")
    address = key.strip().lower()
    local, at, host = address.rpartition("@")
    if not at or not local:
        return "NOTFOUND "  # "@domain" and bare-domain forms: nothing is keyed on them
    if name == maps.RELAY_RECIPIENTS:
        if host == domain and where.find_logical(address) is not None:
            return "OK OK"
        return "NOTFOUND "
    if name == maps.TRANSPORT:
        if host == domain:
            return f"OK {lmtp}" if where.find_logical(address) is not None else "NOTFOUND "
        found = where.find_physical(address)
        if found is not None and found.party.relay_host is not None:
            return f"OK {maps.relay_of(found.party)}"
        return "NOTFOUND "
    return f"PERM unknown table {name[:40]!r}"
