"""Postfix policy delegation wire format, with no I/O (SMTPD_POLICY_README, "Protocol").

A request is ``name=value`` lines, each ending in LF, closed by an empty line; the reply
is ``action=...`` then an empty line. Postfix keeps the connection open for further
requests, so the decoder is incremental: feed it whatever ``recv`` returned.
"""

from __future__ import annotations

#: A request far larger than any Postfix sends (certificates are the longest values) is
#: a broken or hostile peer; refuse rather than buffer without bound.
MAX_REQUEST_BYTES = 64 * 1024


class ProtocolError(ValueError):
    """The peer sent something that is not a policy request."""


class Decoder:
    """Turns a byte stream into complete requests (dicts of attribute → value).

    A request is cut out whole at its empty line and split once (issue 13: the policy
    daemon answers at hundreds of requests a second; one pass per line cost more)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[dict[str, str]]:
        buffer = self._buffer + data if self._buffer else data
        requests: list[dict[str, str]] = []
        while buffer:
            if buffer[:1] == b"\n":  # an empty request: its empty line alone
                requests.append({})
                buffer = buffer[1:]
                continue
            end = buffer.find(b"\n\n")
            if (end if end >= 0 else len(buffer)) > MAX_REQUEST_BYTES:
                raise ProtocolError("policy request too large")
            if end < 0:
                break
            requests.append(_attributes(buffer[:end]))
            buffer = buffer[end + 2:]
        self._buffer = buffer
        return requests

    @property
    def pending(self) -> bool:
        """A request has started but not ended (the peer closed mid-request)."""
        return bool(self._buffer)


def _attributes(block: bytes) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for line in block.split(b"\n"):
        name, sep, value = line.partition(b"=")
        if not sep or not name:
            raise ProtocolError(f"malformed attribute line {line[:80]!r}")
        # Postfix sends xtext-free UTF-8 (SMTPUTF8) or ASCII; never fail on bytes.
        attrs[name.decode("ascii", "replace")] = value.decode("utf-8", "replace")
    return attrs


def encode_reply(action: str) -> bytes:
    """One reply; the action must be a single line (access(5) syntax)."""
    if "\n" in action or "\r" in action:
        raise ValueError("policy action must be one line")
    return b"action=" + action.encode("utf-8") + b"\n\n"
