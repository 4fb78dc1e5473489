"""The verified-origin stamp: one header the milter writes and the transport trusts.

Message time (milter) → after the queue (transport). The milter removes every copy of
this header a client wrote and adds its own, so inside Single Window the header is the
authority on who submitted a message; the transport strips it from every copy it sends
out (it names the submitter's peer address). No I/O here.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

HEADER = "X-SingleWindow-Origin"

_FIELD = re.compile(r"\s*([a-z]+)=([^;\s]*)\s*(?:;|$)")
_LISTENERS = ("mta", "msa")


class OriginError(ValueError):
    """The header is not one the milter wrote."""


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
        return (f"id={self.message_id}; listener={self.listener}; party={self.party}; "
                f"peer={self.peer}; login={self.login or '-'}; queue={self.queue_id or '-'}")


def parse(value: str) -> Origin:
    fields: dict[str, str] = {}
    pos = 0
    text = " ".join(value.split())  # unfold
    while pos < len(text):
        match = _FIELD.match(text, pos)
        if match is None or match.end() == pos:
            raise OriginError(f"malformed {HEADER}: {value[:120]!r}")
        fields[match[1]] = match[2]
        pos = match.end()
    try:
        origin = Origin(
            message_id=fields["id"], listener=fields["listener"], party=fields["party"],
            peer=fields["peer"], login="" if fields["login"] == "-" else fields["login"],
            queue_id="" if fields["queue"] == "-" else fields["queue"])
    except KeyError as exc:
        raise OriginError(f"{HEADER} lacks {exc.args[0]}") from None
    if origin.listener not in _LISTENERS or not origin.message_id:
        raise OriginError(f"malformed {HEADER}: {value[:120]!r}")
    return origin


def new_message_id(now: float | None = None) -> str:
    """``SW`` + UTC time to the millisecond + 8 random hex digits: sortable and unique."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now if now is not None else time.time()))
    millis = int(((now if now is not None else time.time()) % 1) * 1000)
    return f"SW{stamp}{millis:03d}{secrets.token_hex(4).upper()}"
