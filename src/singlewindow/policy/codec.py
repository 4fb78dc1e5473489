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
    """Turns a byte stream into complete requests (dicts of attribute → value)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._attrs: dict[str, str] = {}
        self._size = 0

    def feed(self, data: bytes) -> list[dict[str, str]]:
        self._buffer += data
        requests: list[dict[str, str]] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if self._size + len(self._buffer) > MAX_REQUEST_BYTES:
                    raise ProtocolError("policy request too large")
                return requests
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._size += end + 1
            if self._size > MAX_REQUEST_BYTES:
                raise ProtocolError("policy request too large")
            if not line:
                requests.append(self._attrs)
                self._attrs, self._size = {}, 0
                continue
            name, sep, value = line.partition(b"=")
            if not sep or not name:
                raise ProtocolError(f"malformed attribute line {line[:80]!r}")
            # Postfix sends xtext-free UTF-8 (SMTPUTF8) or ASCII; never fail on bytes.
            self._attrs[name.decode("ascii", "replace")] = value.decode("utf-8", "replace")

    @property
    def pending(self) -> bool:
        """A request has started but not ended (the peer closed mid-request)."""
        return bool(self._buffer) or bool(self._attrs)


def encode_reply(action: str) -> bytes:
    """One reply; the action must be a single line (access(5) syntax)."""
    if "\n" in action or "\r" in action:
        raise ValueError("policy action must be one line")
    return b"action=" + action.encode("utf-8") + b"\n\n"
