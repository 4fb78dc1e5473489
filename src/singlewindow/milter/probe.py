"""Does the milter answer? What Postfix does first on every connection, then goodbye.

A connection to a listening socket succeeds from the kernel's backlog even while the
process behind it hangs; an answer to the milter protocol's option negotiation
(SMFIC_OPTNEG) needs libmilter's listener to accept and one of its threads to run our
negotiation. The milter's own watchdog (:mod:`singlewindow.milter.server`) and
``swctl health`` both ask this. No message, no log line.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

#: Milter protocol commands (libmilter's mfdef.h): option negotiation, and quit.
SMFIC_OPTNEG = b"O"
SMFIC_QUIT = b"Q"
#: The protocol version Postfix speaks (``milter_protocol = 6``, main.cf).
VERSION = 6
#: Every action a milter may ask for (SMFIF_ADDHDRS … SMFIF_SETSYMLIST), as Postfix
#: offers them: the milter refuses an MTA that lacks one it needs.
ALL_ACTIONS = 0x1FF
#: Every protocol step the milter may skip or leave unanswered (SMFIP_*), as offered.
ALL_STEPS = 0x1FFFFF


class ProbeError(Exception):
    """The milter did not answer the negotiation as a milter does."""


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ProbeError("the milter closed the connection")
        data += chunk
    return data


def _packet(command: bytes, data: bytes = b"") -> bytes:
    """length (32 bits, network order, command included), command, data."""
    return struct.pack("!I", len(command) + len(data)) + command + data


def negotiate(path: Path, timeout: float) -> None:
    """Open ``path``, negotiate options, quit; :class:`ProbeError` or OSError (a
    timeout among them) when the milter does not answer so within ``timeout``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(_packet(SMFIC_OPTNEG, struct.pack("!III", VERSION, ALL_ACTIONS,
                                                       ALL_STEPS)))
        (length,) = struct.unpack("!I", _read_exactly(sock, 4))
        if not 1 <= length <= 1 << 16:
            raise ProbeError(f"a reply of {length} bytes")
        reply = _read_exactly(sock, length)
        if reply[:1] != SMFIC_OPTNEG:
            raise ProbeError(f"reply {reply[:1]!r} to the option negotiation")
        sock.sendall(_packet(SMFIC_QUIT))
