"""The verified-origin stamp: one header the milter writes and the transport trusts.

Message time (milter) → after the queue (transport). The milter removes every copy of
this header a client wrote and adds its own, so inside Single Window the header is the
authority on who submitted a message; the transport strips it from every copy it sends
out (it names the submitter's peer address).

The stamp is authenticated (issue 12): its last field is an HMAC-SHA256 (RFC 2104) over
every other field, with a key only the daemons read (``[hub] stamp_key_file``). A
message that reached the transport by any way other than the milter — a local process
at a listener that skips the milter, a forged header the milter did not see — carries
no valid MAC and is refused. No I/O here except reading and creating the key file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from singlewindow.identity import LISTENERS

HEADER = "X-SingleWindow-Origin"

_FIELD = re.compile(r"\s*([a-z]+)=([^;\s]*)\s*(?:;|$)")
#: Domain separation: a MAC made for another purpose with the same key never verifies.
_MAC_CONTEXT = b"singlewindow origin stamp v1"
#: The key file holds this many random bytes, hex-encoded (HMAC-SHA256's block size
#: is 64 bytes; 32 are SHA-256's output size, RFC 2104 3 recommends at least that).
KEY_BYTES = 32


class OriginError(ValueError):
    """The header is not one the milter wrote."""


class StampKeyError(Exception):
    """The stamp key file is missing, unreadable or too short: the daemon cannot start."""


@dataclass(frozen=True, slots=True)
class Origin:
    #: The Single Window message id (see :func:`new_message_id`).
    message_id: str
    #: ``mta`` (I1) or ``msa`` (I2).
    listener: str
    #: The submitting party's name.
    party: str
    #: The client's IP address as Postfix saw it.
    peer: str
    #: SASL login on the MSA, empty on the MTA.
    login: str
    #: Postfix queue id of the inbound leg.
    queue_id: str

    def header_value(self) -> str:
        """The fields without the MAC (what :meth:`signed` authenticates)."""
        return (f"id={self.message_id}; listener={self.listener}; party={self.party}; "
                f"peer={self.peer}; login={self.login or '-'}; queue={self.queue_id or '-'}")

    def mac(self, key: bytes) -> str:
        fields = (self.message_id, self.listener, self.party, self.peer, self.login,
                  self.queue_id)
        # NUL cannot occur in a header field, so the fields cannot be shifted against
        # each other to forge another stamp with the same MAC.
        text = b"\0".join([_MAC_CONTEXT, *(f.encode("utf-8") for f in fields)])
        return hmac.new(key, text, hashlib.sha256).hexdigest()

    def signed(self, key: bytes) -> str:
        """The header value the milter writes: the fields and their MAC."""
        return f"{self.header_value()}; mac={self.mac(key)}"


def verify(value: str, key: bytes) -> Origin:
    """The stamp in ``value`` if its MAC is right; else :class:`OriginError` saying why."""
    stamp, mac = _parse(value)
    if mac is None:
        raise OriginError(f"{HEADER} has no MAC")
    # Constant time: a forger learns nothing from how long the comparison took.
    if not hmac.compare_digest(mac.encode("ascii", "replace"),
                               stamp.mac(key).encode("ascii")):
        raise OriginError(f"{HEADER} has a wrong MAC")
    return stamp


def parse(value: str) -> Origin:
    """The fields of a stamp, MAC unchecked (only for what it says it is about: which
    message a returned header names, never whom to trust)."""
    return _parse(value)[0]


def _parse(value: str) -> tuple[Origin, str | None]:
    fields: dict[str, str] = {}
    pos = 0
    text = " ".join(value.split())  # unfold
    while pos < len(text):
        match = _FIELD.match(text, pos)
        if match is None or match.end() == pos:
            raise OriginError(f"malformed {HEADER}: {value[:120]!r}")
        if match[1] in fields:
            raise OriginError(f"{HEADER} names {match[1]} twice")
        fields[match[1]] = match[2]
        pos = match.end()
    try:
        origin = Origin(
            message_id=fields["id"], listener=fields["listener"], party=fields["party"],
            peer=fields["peer"], login="" if fields["login"] == "-" else fields["login"],
            queue_id="" if fields["queue"] == "-" else fields["queue"])
    except KeyError as exc:
        raise OriginError(f"{HEADER} lacks {exc.args[0]}") from None
    if origin.listener not in LISTENERS or not origin.message_id:
        raise OriginError(f"malformed {HEADER}: {value[:120]!r}")
    return origin, fields.get("mac")


def load_key(path: Path) -> bytes:
    """The stamp key from its file (hex or any text of at least :data:`KEY_BYTES` bytes)."""
    try:
        text = path.read_bytes().strip()
    except OSError as exc:
        raise StampKeyError(f"cannot read the stamp key {path}: {exc.strerror}") from None
    if len(text) < KEY_BYTES:
        raise StampKeyError(f"the stamp key {path} is shorter than {KEY_BYTES} bytes")
    return text


def create_key(path: Path, mode: int = 0o600) -> bool:
    """Write a new random key to ``path`` unless one is there; True if it was written.

    Created with ``mode`` from the start (O_EXCL), so it is never readable by others,
    not even for a moment; an existing key is kept (stamps in the queue stay valid).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(KEY_BYTES) + "\n")
    return True


def new_message_id(now: float | None = None) -> str:
    """``SW`` + UTC time to the millisecond + 8 random hex digits: sortable and unique."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now if now is not None else time.time()))
    millis = int(((now if now is not None else time.time()) % 1) * 1000)
    return f"SW{stamp}{millis:03d}{secrets.token_hex(4).upper()}"
