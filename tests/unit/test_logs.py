"""Decision lines in each format, journald's native protocol over a real datagram socket,
and no credential in any line."""

from __future__ import annotations

import array
import io
import json
import logging
import os
import socket
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from singlewindow import config as configmod
from singlewindow import logs
from tests.support.local import short_state_dir


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate, logger.handlers = False, [handler]
    logger.setLevel(logging.INFO)
    return logger


def _record(fmt: str, emit: Callable[[logging.Logger], None]) -> str:
    stream = io.StringIO()
    handler = logs.handler("sw-test", fmt)
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logger = _logger("sw-test-" + fmt, handler)
    emit(logger)
    return stream.getvalue()


def _decision(logger: logging.Logger) -> None:
    logs.decision(logger, "recipient", sw_id="SW20261130041217773AB", queue_id="4jd9b55Sg",
                  recipient="customs@sw.test", action="reject",
                  reply='554 5.7.1 "From" is not yours\nsecond line', automatic=None,
                  hops=3, recovered=True)


def test_a_decision_as_key_value_pairs_parses_back() -> None:
    line = _record("keyvalue", _decision).strip()
    assert " sw-test-keyvalue[" in line and " INFO event=recipient " in line
    assert logs.parse(line) == {
        "event": "recipient", "sw_id": "SW20261130041217773AB", "queue_id": "4jd9b55Sg",
        "recipient": "customs@sw.test", "action": "reject",
        "reply": '554 5.7.1 "From" is not yours\nsecond line', "hops": "3",
        "recovered": "true"}
    assert "\n" not in line  # one record, one line
    assert "automatic" not in line  # None is left out


def test_a_decision_as_json_has_the_fields_as_members() -> None:
    [line] = _record("json", _decision).splitlines()
    record = json.loads(line)
    assert record["event"] == "recipient" and record["sw_id"] == "SW20261130041217773AB"
    assert record["queue_id"] == "4jd9b55Sg" and record["level"] == "info"
    assert record["reply"].endswith("second line") and record["pid"] == os.getpid()
    assert record["hops"] == 3 and record["recovered"] is True
    assert "message" not in record


def test_any_other_record_as_json_keeps_its_message_and_exception() -> None:
    def emit(logger: logging.Logger) -> None:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed %s", "here")
    [line] = _record("json", emit).splitlines()
    record = json.loads(line)
    assert record["message"] == "failed here"
    assert "ValueError: boom" in record["exception"]


@pytest.mark.parametrize("fmt", ["keyvalue", "json"])
def test_no_credential_reaches_a_line(fmt: str) -> None:
    def emit(logger: logging.Logger) -> None:
        logs.decision(logger, "policy", sw_id=None, queue_id=None, password="hunter2",
                      stamp_key="0123abcd", login="clerk")
        logger.error("cannot connect: host=/run/pg password=hunter2 dbname=sw")
        logger.warning("conninfo %s", "password='s3cret value' user=sw_admin")
        logger.info("token: abcdef")
    text = _record(fmt, emit)
    for secret in ("hunter2", "0123abcd", "s3cret", "abcdef"):
        assert secret not in text
    assert text.count(logs.REDACTED) == 5
    assert "clerk" in text  # a login is no secret


@pytest.fixture
def journal() -> Iterator[tuple[socket.socket, Path]]:
    """A datagram socket where journald's would be: what the handler sends, as sent."""
    state = short_state_dir()
    path = state / "journal.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, path
    sock.close()
    path.unlink()
    state.rmdir()


def _fields(data: bytes) -> dict[str, str]:
    """Decode the native protocol (both forms of a field)."""
    found = {}
    while data:
        head, _, rest = data.partition(b"\n")
        if b"=" in head:
            name, _, value = head.partition(b"=")
            data = rest
        else:
            (size,) = struct.unpack("<Q", rest[:8])
            name, value, data = head, rest[8:8 + size], rest[8 + size + 1:]
        found[name.decode()] = value.decode()
    return found


def test_journal_fields_over_the_native_protocol(journal: tuple[socket.socket, Path]) -> None:
    sock, path = journal
    handler = logs.JournalHandler("sw-transport", str(path))
    handler.addFilter(logs.Redact())
    logger = _logger("sw-test-journal", handler)
    _decision(logger)
    fields = _fields(sock.recv(65536))
    assert fields["SW_ID"] == "SW20261130041217773AB"
    assert fields["SW_QUEUE_ID"] == "4jd9b55Sg"
    assert fields["SW_EVENT"] == "recipient" and fields["SW_ACTION"] == "reject"
    assert fields["SW_REPLY"] == '554 5.7.1 "From" is not yours\nsecond line'
    assert fields["PRIORITY"] == "6" and fields["SYSLOG_IDENTIFIER"] == "sw-transport"
    assert fields["MESSAGE"].startswith("event=recipient sw_id=SW20261130041217773AB")
    logger.error("failed: password=hunter2")
    fields = _fields(sock.recv(65536))
    assert fields["PRIORITY"] == "3" and "hunter2" not in fields["MESSAGE"]
    handler.close()


def test_a_record_larger_than_a_datagram_goes_in_a_sealed_memfd(
        journal: tuple[socket.socket, Path]) -> None:
    sock, path = journal
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    handler = logs.JournalHandler("sw-transport", str(path))
    logger = _logger("sw-test-journal-large", handler)
    logger.info("x" * 400_000)
    data, ancillary, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(4))
    assert data == b""
    fds = array.array("i")
    for level, kind, value in ancillary:
        assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
        fds.frombytes(value[:4])
    with os.fdopen(fds[0], "rb") as memfd:
        memfd.seek(0)  # journald maps it from the start; the offset is the writer's
        assert _fields(memfd.read())["MESSAGE"] == "x" * 400_000
    handler.close()


def test_without_journald_the_lines_go_to_standard_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    handler = logs.JournalHandler("sw-policyd", "/nonexistent/journal.sock")
    handler.fallback.setStream(sys.stderr)
    logger = _logger("sw-test-journal-fallback", handler)
    _decision(logger)
    assert "event=recipient sw_id=SW20261130041217773AB" in capsys.readouterr().err
    handler.close()


def test_journal_field_names() -> None:
    assert logs.journal_field_name("copy_queue_id") == "SW_COPY_QUEUE_ID"
    assert logs.journal_field_name("_private") == "SW_PRIVATE"
    assert logs.journal_field_name("sw_x") == "SW_X"


def test_log_format_is_checked() -> None:
    assert configmod.parse('[log]\nformat = "json"\n').log.format == "json"
    with pytest.raises(configmod.ConfigError, match=r"log\.format must be one of"):
        configmod.parse('[log]\nformat = "xml"\n')
