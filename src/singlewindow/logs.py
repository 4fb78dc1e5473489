"""The daemons' log lines: one structured line per decision, in the format config asks.

Every decision the hub takes about a message — the policy daemon's at RCPT time, the
milter's at the end of the message, the transport's for each recipient, each copy it
hands on or sees refused, each DSN and notice it delivers — is logged by
:func:`decision` as one record whose fields name the Single Window id (``sw_id``) and the
Postfix queue id (``queue_id``), the keys ``swctl trace`` shows. So a log line, the trace
and the metrics (labelled by the same outcomes) join.

``[log] format`` (config.py) picks how a record is written:

* ``keyvalue`` — ``TIME NAME[PID] LEVEL event=policy sw_id=- queue_id=4Xyz action=accept …``
  on standard error (the local stack's ``DIR/log/NAME.log``);
* ``json`` — one JSON object per line, the fields as members;
* ``journal`` — one datagram per record to systemd-journald's native socket
  (``/run/systemd/journal/socket``, the protocol of systemd's "Native Journal Protocol"
  document), each field a journal field: ``MESSAGE=``, ``PRIORITY=``, ``SW_EVENT=``,
  ``SW_ID=``, ``SW_QUEUE_ID=``, ``SW_<KEY>=`` — ``journalctl SW_ID=SW2026…`` finds every
  line of one message. Without libsystemd.

No credential reaches a line: a field whose name says it holds one is written as
``[redacted]``, and ``key=value`` pairs in free text whose key names a password, secret or
token are masked the same way (:class:`Redact`, on every handler).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import re
import socket
import struct
import sys
import time
import traceback
from collections.abc import Mapping

#: The attribute of a :class:`logging.LogRecord` that carries a decision's fields.
FIELDS = "sw_fields"
#: journald's native protocol socket (systemd-journald.service(8)).
JOURNAL_SOCKET = "/run/systemd/journal/socket"
REDACTED = "[redacted]"
#: A field with such a name is never written (a decision never has one; a safeguard).
_SECRET_NAME = re.compile(r"pass|secret|token|credential|authorization|key$", re.I)
#: ``password=…``, ``secret: …`` in free text (e.g. a quoted connection string).
_SECRET_TEXT = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|auth_password)(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)")
#: syslog(3) priorities of the logging levels (journal ``PRIORITY=``).
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
             logging.DEBUG: 7}


def decision(logger: logging.Logger, event: str, *, sw_id: str | None,
             queue_id: str | None, level: int = logging.INFO,
             exc: BaseException | None = None, **fields: object) -> None:
    """Log one decision ``event`` (policy, milter, recipient, copy, dsn, notice) about the
    message ``sw_id`` (None before the milter gave it one) with Postfix queue id
    ``queue_id``; ``fields`` follow in the order given, None ones left out (numbers and
    booleans stay numbers and booleans in JSON); ``exc``, an exception whose traceback
    follows the line."""
    if not logger.isEnabledFor(level):
        return
    values: dict[str, object] = {"event": event, "sw_id": sw_id or "-",
                                 "queue_id": queue_id or "-"}
    for key, value in fields.items():
        if value is None:
            continue
        if _secret_name(key):
            value = REDACTED
        elif type(value) not in (str, bool, int, float):
            value = str(value)
        values[key] = value
    logger.log(level, "%s", _Line(values), extra={FIELDS: values}, exc_info=exc)


class _Line:
    """A decision's ``key=value`` text, made only when a handler asks for it."""

    __slots__ = ("values",)

    def __init__(self, values: dict[str, object]) -> None:
        self.values = values

    def __str__(self) -> str:
        return keyvalue(self.values)


_NEEDS_QUOTES = re.compile(r'[\s"=\\]')


@functools.lru_cache(maxsize=256)
def _secret_name(key: str) -> bool:
    return _SECRET_NAME.search(key) is not None


def _quoted(value: str) -> str:
    if value and not _NEEDS_QUOTES.search(value):
        return value
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def keyvalue(values: Mapping[str, object]) -> str:
    """``key=value`` pairs, a value with a space, quote, ``=`` or control quoted."""
    parts = []
    for key, value in values.items():
        text = value if type(value) is str else _text(value)
        if not text or _NEEDS_QUOTES.search(text):
            text = _quoted(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


_PAIR = re.compile(r'([A-Za-z0-9_]+)=("(?:\\.|[^"\\])*"|\S*)')
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t"}


def parse(line: str) -> dict[str, str]:
    """The ``key=value`` pairs of a line :func:`keyvalue` wrote (for tools and tests)."""
    found = {}
    for key, value in _PAIR.findall(line):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", lambda m: _UNESCAPE.get(m[1], m[1]), value[1:-1])
        found[key] = value
    return found


def mask(text: str) -> str:
    """``text`` with the value of each ``password=…``-like pair replaced."""
    return _SECRET_TEXT.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


class Redact(logging.Filter):
    """Masks credentials in a record's message before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, FIELDS, None) is None:
            message = record.getMessage()
            masked = mask(message)
            if masked != message:
                record.msg, record.args = masked, None
        return True


class KeyValueFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s")


def _fields(record: logging.LogRecord) -> dict[str, object] | None:
    values = getattr(record, FIELDS, None)
    return values if isinstance(values, dict) else None


def _exception(record: logging.LogRecord) -> str | None:
    if record.exc_info:
        return mask("".join(traceback.format_exception(*record.exc_info)).rstrip())
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, pid, then the decision's fields
    (or ``message`` for any other record) and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "pid": record.process}
        values = _fields(record)
        if values is None:
            line["message"] = record.getMessage()
        else:
            line.update(values)
        exception = _exception(record)
        if exception:
            line["exception"] = exception
        return json.dumps(line, ensure_ascii=False)


def journal_field_name(key: str) -> str:
    """A journal field name: upper case letters, digits and ``_``, not starting with
    ``_`` (those are journald's own) nor a digit, at most 64 characters."""
    name = re.sub(r"[^A-Z0-9_]", "_", key.upper()).lstrip("_")
    return ("SW_" + name)[:64] if name and not name.startswith("SW_") else (name or "SW")[:64]


def journal_datagram(fields: list[tuple[str, str]]) -> bytes:
    """The native protocol's encoding: ``NAME=value\\n``, or for a value with a newline
    ``NAME\\n`` + its length as 64-bit little endian + the value + ``\\n``."""
    out = bytearray()
    for name, value in fields:
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """Sends each record to journald's native socket; falls back to standard error (which
    systemd also hands to the journal) when the socket is not there."""

    def __init__(self, identifier: str, path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.identifier = identifier
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.fallback = logging.StreamHandler(sys.stderr)
        self.fallback.setFormatter(KeyValueFormatter())

    def fields(self, record: logging.LogRecord) -> list[tuple[str, str]]:
        values = _fields(record)
        message = record.getMessage()
        exception = _exception(record)
        if exception:
            message = f"{message}\n{exception}"
        out = [("MESSAGE", message), ("PRIORITY", str(_PRIORITY.get(record.levelno, 6))),
               ("SYSLOG_IDENTIFIER", self.identifier), ("SYSLOG_PID", str(record.process)),
               ("LOGGER", record.name), ("CODE_FILE", record.pathname),
               ("CODE_LINE", str(record.lineno)), ("CODE_FUNC", record.funcName)]
        for key, value in (values or {}).items():
            name = {"sw_id": "SW_ID", "queue_id": "SW_QUEUE_ID"}.get(key)
            out.append((name or journal_field_name(key), _text(value)))
        return out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = journal_datagram(self.fields(record))
            try:
                self.sock.sendto(data, self.path)
            except OSError as exc:
                if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                    raise
                self._send_large(data)
        except OSError:
            self.fallback.handle(record)
        except Exception:
            self.handleError(record)

    def _send_large(self, data: bytes) -> None:
        """A record larger than a datagram: in a sealed memfd passed with SCM_RIGHTS."""
        fd = os.memfd_create("sw-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, data)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                        | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
            self.sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                    struct.pack("i", fd))], 0, self.path)
        finally:
            os.close(fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        super().close()


def handler(name: str, fmt: str) -> logging.Handler:
    """The handler for ``[log] format`` ``fmt`` of daemon ``name``."""
    chosen: logging.Handler
    if fmt == "journal":
        chosen = JournalHandler(name)
    else:
        chosen = logging.StreamHandler(sys.stderr)
        chosen.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    chosen.addFilter(Redact())
    return chosen


def configure(name: str, fmt: str = "keyvalue", verbose: bool = False) -> logging.Logger:
    """Route every record of the process through one handler of format ``fmt``."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler(name, fmt))
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return logging.getLogger(name)
