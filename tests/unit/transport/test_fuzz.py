"""Issue 10: malformed MIME through the real transport; every recipient gets a terminal
answer (2xx or 5xx, never 4xx) and nothing in the transport fails unexpectedly.

Two corpora: CPython's own test_email messages (Debian's libpython3.11-testsuite, read
at test time; scripts/install installs it), and seeded mutations of valid submissions.
Each message is stamped like a real submission (the milter's origin header) and sent
over LMTP to the transport of the ``transport`` fixture (real LMTP server, real store).
"""

from __future__ import annotations

import base64
import logging
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from singlewindow import origin
from singlewindow.config import Config
from tests.support import factory
from tests.support.local import lmtp_send
from tests.support.sinks import Sink
from tests.support.transport import KEY, D

CPYTHON_EMAIL_DATA = Path("/usr/lib/python3.11/test/test_email/data")
SEED = 20240610
MUTANTS = 300
KNOWN_HEADERS = b"From: <edi@acme.example>\r\nTo: <customs@sw.test>\r\n"
RECIPIENTS = [f"customs@{D}", f"later@{D}"]


_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")


def stamp(message: bytes, swid: str | None = None) -> bytes:
    """The submission as Postfix's lmtp_send(8) hands it to the transport.

    Postfix's cleanup reads the header block up to the first line that is neither a
    header field nor its continuation and, if that line is not empty, inserts the empty
    line there; the milter's origin header is appended to the header block (addheader),
    Postfix's Received header prepended. lmtp_send(8) sends CRLF line ends and breaks any line
    longer than lmtp_line_length_limit (998) by inserting CRLF SPACE.
    """
    mark = origin.Origin(swid or origin.new_message_id(), "mta", "acme", "10.1.0.5", "", "Q1")
    lines = re.split(rb"\r?\n", message)
    end = 0
    while end < len(lines) and (_HEADER_LINE.match(lines[end]) or (
            end > 0 and lines[end][:1] in (b" ", b"\t"))):
        end += 1
    body = lines[end:]
    if not body or body[0] != b"":
        body.insert(0, b"")
    received = b"Received: from mta.acme.example (mta.acme.example [10.1.0.5])\r\n\tby " \
               b"mail.sw.test (Postfix) with ESMTP id Q1"
    stamped = [received, *lines[:end], f"{origin.HEADER}: {mark.signed(KEY)}".encode(),
               *body]
    return b"\r\n".join(b"\r\n ".join(line[i:i + 998] for i in range(0, len(line), 998))
                        for line in stamped)


def with_known_addresses(message: bytes) -> bytes:
    """The message with its address headers replaced by ones Single Window knows, so it
    gets past the address check to the MIG, the translation and the copies."""
    head, sep, body = message.partition(b"\n\n")
    if not sep:
        head, sep, body = message.partition(b"\r\n\r\n")
    kept = re.sub(rb"(?im)^(from|to|cc|sender|reply-to):.*(\r?\n[ \t].*)*(\r?\n|$)", b"",
                  head)
    return KNOWN_HEADERS + kept + (sep or b"\r\n\r\n") + body


def cpython_corpus() -> Iterator[tuple[str, bytes]]:
    files = sorted(CPYTHON_EMAIL_DATA.glob("msg_*.txt"))
    assert len(files) > 40, f"{CPYTHON_EMAIL_DATA}: install libpython3.11-testsuite"
    for path in files:
        raw = path.read_bytes()
        yield path.name, raw
        yield f"{path.name} (known addresses)", with_known_addresses(raw)


# --- seeded mutations of valid submissions -------------------------------------------------

def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def dsn(envid: str) -> bytes:
    """An agency MTA's report that the copy of message ``envid`` failed (RFC 3464)."""
    return (b"From: <MAILER-DAEMON@customs.example>\r\nTo: <acme@sw.test>\r\n"
            b"Subject: Undelivered\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report;"
            b' report-type=delivery-status; boundary="r1"\r\n\r\n--r1\r\n'
            b"Content-Type: text/plain\r\n\r\nYour copy failed.\r\n--r1\r\n"
            b"Content-Type: message/delivery-status\r\n\r\n"
            b"Reporting-MTA: dns; mx.customs.example\r\nOriginal-Envelope-Id: "
            + envid.encode() + b"\r\n\r\nFinal-Recipient: rfc822; in@customs.example\r\n"
            b"Original-Recipient: rfc822; customs@sw.test\r\nAction: failed\r\n"
            b"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <in@customs.example>"
            b" no such user\r\n\r\n--r1--\r\n")


def seeds(forwarded: str) -> list[bytes]:
    """Valid submissions, and a report about ``forwarded``, a message with a copy."""
    xml, edi = factory.gendec(), factory.paxlst()
    return [
        dsn(forwarded),
        KNOWN_HEADERS + b"Subject: xml\r\nMessage-ID: <s1@acme.example>\r\n"
        b"Content-Type: application/xml\r\n\r\n" + xml,
        KNOWN_HEADERS + b"Subject: edifact\r\nContent-Type: application/edifact\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(edi),
        KNOWN_HEADERS + b"Subject: mixed\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\npreamble\r\n--b1\r\n'
        b"Content-Type: application/xml\r\nContent-Transfer-Encoding: quoted-printable\r\n"
        b"\r\n" + xml.replace(b"=", b"=3D") + b"\r\n--b1--\r\nepilogue\r\n",
        KNOWN_HEADERS + b"Subject: invalid\r\nMessage-ID: <s4@acme.example>\r\n"
        b"Content-Type: application/xml\r\n\r\n" + factory.gendec(imo="x"),
    ]


def _split(message: bytes) -> tuple[bytes, bytes]:
    head, _, body = message.partition(b"\r\n\r\n")
    return head + b"\r\n", body


def _header(rng: random.Random, message: bytes, line: bytes) -> bytes:
    """Insert a header line at a random place in the header block."""
    head, body = _split(message)
    lines = head.split(b"\r\n")[:-1]
    lines.insert(rng.randrange(len(lines) + 1), line)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _nested(rng: random.Random, message: bytes) -> bytes:
    head = _split(message)[0]
    depth = rng.choice([2, 3, 10, 60])
    head = re.sub(rb"(?im)^content-type:.*\r\n", b"", head)
    inner = b"Content-Type: application/xml\r\n\r\n" + factory.gendec()
    for level in range(depth):
        kind = rng.choice([b"mixed", b"alternative", b"related", b"digest"])
        boundary = f"lvl{level}".encode()
        inner = (b"Content-Type: multipart/" + kind + b'; boundary="' + boundary + b'"\r\n\r\n'
                 + b"--" + boundary + b"\r\n" + inner + b"\r\n--" + boundary + b"--\r\n")
    return head + b"MIME-Version: 1.0\r\n" + inner


MUTATIONS: list[tuple[str, Callable[[random.Random, bytes], bytes]]] = [
    ("truncated", lambda r, m: m[:r.randrange(len(m))]),
    ("truncated body", lambda r, m: m[:len(m) - r.randrange(1, 200)]),
    ("broken boundary", lambda r, m: m.replace(b"--b1", b"--b" + bytes([r.randrange(33, 127)]),
                                               r.choice([1, 2]))),
    ("no close delimiter", lambda r, m: m.replace(b"--b1--", b"")),
    ("boundary gone", lambda r, m: m.replace(b'boundary="b1"', b"")),
    ("bad base64", lambda r, m: m.replace(b"PD94", b"PD!4")),
    ("bad qp", lambda r, m: m.replace(b"=3D", b"=ZZ", 1)),
    ("unknown encoding", lambda r, m: _header(r, re.sub(
        rb"(?im)^content-transfer-encoding:.*\r\n", b"", m),
        b"Content-Transfer-Encoding: x-" + r.choice([b"uuencode", b"gzip", b"\xff"]))),
    ("8-bit body in 7bit", lambda r, m: m.replace(b"MSC ANNA", b"MSC \xc4NNA")),
    ("8-bit subject", lambda r, m: _header(r, m, b"Subject: caf\xc3\xa9 \xff\xfe")),
    ("8-bit message-id", lambda r, m: _header(r, m, b"Message-ID: <caf\xe9@acme.example>")),
    ("8-bit from", lambda r, m: m.replace(b"From: <", b"From: J\xfcrgen \xe2\x82\xac <")),
    ("8-bit to", lambda r, m: m.replace(b"To: <customs", b"To: <cust\xf6ms")),
    ("NUL in header", lambda r, m: _header(r, m, r.choice([
        b"Subject: a\x00b", b"Message-ID: <a\x00b@acme.example>", b"X-Nul\x00: 1",
        b"In-Reply-To: <x\x00@y>", b"Reply-To: a\x00@acme.example"]))),
    ("NUL in body", lambda r, m: m.replace(b"<Ship>", b"<Ship>\x00")),
    ("huge subject", lambda r, m: _header(r, m, b"Subject: " + b"x" * r.choice([999, 70000]))),
    ("huge folded header", lambda r, m: _header(r, m, b"X-Long: " + b"a\r\n b" * 20000)),
    ("huge message-id", lambda r, m: _header(r, m, b"Message-ID: <" + b"m" * 20000 + b"@a>")),
    ("huge to", lambda r, m: m.replace(b"To: <customs@sw.test>", b"To: " + b",\r\n ".join(
        [b"<customs@sw.test>"] * r.choice([50, 3000])))),
    ("huge to line", lambda r, m: m.replace(b"To: <customs@sw.test>", b"To: " + b", ".join(
        [b"<customs@sw.test>"] * r.choice([50, 3000])))),
    ("huge unknown address", lambda r, m: m.replace(
        b"To: <customs@sw.test>", b"To: <" + b"u" * 5000 + b"@sw.test>")),
    ("nested multiparts", _nested),
    ("group", lambda r, m: m.replace(b"To: <customs@sw.test>", r.choice([
        b"To: undisclosed-recipients:;", b"To: A: <customs@sw.test>;",
        b"To: A: <customs@sw.test>", b"To: A: customs@sw.test;;", b"To: :;",
        b"To: A: B: <customs@sw.test>;;", b"To: <customs@sw.test>, G: edi@acme.example;"]))),
    ("malformed address", lambda r, m: m.replace(b"From: <edi@acme.example>", r.choice([
        b"From: <edi@acme.example", b'From: "edi <edi@acme.example>', b"From: (x <edi@a>",
        b"From: edi@acme.example)<customs@sw.test>", b"From: <>", b"From: @", b"From:",
        b"From: =?utf-8?q?=C3=A9?= <edi@acme.example>", b"From: \\"]))),
    ("missing header", lambda r, m: re.sub(
        rb"(?im)^" + r.choice([b"from", b"to", b"content-type", b"mime-version"])
        + rb":.*\r\n", b"", m)),
    ("duplicate header", lambda r, m: _header(r, m, r.choice([
        b"Content-Type: application/xml", b"Content-Type: text/html",
        b"From: <edi@acme.example>", b"To: <customs@sw.test>", b"Message-ID: <d@acme.example>",
        b"Content-Transfer-Encoding: base64", b"MIME-Version: 1.0"]))),
    ("odd header lines", lambda r, m: _header(r, m, r.choice([
        b"no colon here", b": empty name", b" leading space", b"\t", b"X:", b"\r",
        b"Content-Type: ", b"Content-Type: multipart/mixed", b"Content-Type: /",
        b'Content-Type: application/xml; charset="', b"Content-Type: application/xml; =x",
        b"Content-Type: application/xml; charset*=utf-8''%ff%fe"]))),
    ("bare line ends", lambda r, m: m.replace(b"\r\n", r.choice([b"\n", b"\r"]))),
    ("no header end", lambda r, m: m.replace(b"\r\n\r\n", b"\r\n", 1)),
    ("empty body", lambda r, m: _split(m)[0] + b"\r\n"),
    ("odd report", lambda r, m: m.replace(b"Original-Envelope-Id: SW", r.choice([
        b"Original-Envelope-Id: \xe9\x00SW", b"Original-Envelope-Id: SW\x00", b"X: SW",
        b"Original-Envelope-Id:\r\n\r\n", b"Original-Envelope-Id: \xff\xfe SW"]))
     .replace(b"no such user", r.choice([b"no such \x00user", b"\xe9\xff", b"=?x?q?a?=",
                                         b"host mx[10.0.0.1] said: " + b"x" * 5000]))
     .replace(b"Action: failed", r.choice([b"Action: failed", b"Action: delayed",
                                           b"Action: \xff", b"Action:"]))),
    ("random bytes", lambda r, m: bytes(
        b if r.random() > 0.01 else r.randrange(256) for b in m)),
]


def mutants(count: int, forwarded: str, seed: int = SEED) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    bases = seeds(forwarded)
    for n in range(count):
        base = bases[n % len(bases)]
        name, mutate = MUTATIONS[n % len(MUTATIONS)] if n < len(MUTATIONS) * len(bases) \
            else rng.choice(MUTATIONS)
        message = mutate(rng, base)
        if rng.random() < 0.2:  # now and then a second fault on top
            second, mutate2 = rng.choice(MUTATIONS)
            name, message = f"{name} + {second}", mutate2(rng, message)
        yield f"mutant {n} ({name})", message


# --- the test ------------------------------------------------------------------------------

def terminal_everywhere(config: Config, corpus: Iterator[tuple[str, bytes]],
                        caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(SEED)
    failures: list[str] = []
    answered: dict[int, int] = {}
    for name, message in corpus:
        # Reports come from the null sender (RFC 3464 2); now and then a submission too.
        null = b"multipart/report" in message or rng.random() < 0.15
        sender = "" if null else f"acme@{D}"
        caplog.clear()
        replies = lmtp_send(config, sender, RECIPIENTS, stamp(message))
        for rcpt, (code, text) in zip(RECIPIENTS, replies, strict=True):
            answered[code] = answered.get(code, 0) + 1
            if not (200 <= code < 300 or 500 <= code < 600):
                failures.append(f"{name} <{rcpt}> from <{sender}>: {code} {text[:200]!r}")
        unexpected = [r for r in caplog.records if r.levelno >= logging.ERROR]
        failures += [f"{name}: logged {r.getMessage()[:300]}" for r in unexpected]
    assert failures == [], "\n".join(failures)
    assert set(answered) <= {250, 554}, answered


def test_cpython_email_corpus(transport: tuple[Config, Sink],
                              caplog: pytest.LogCaptureFixture) -> None:
    config, _ = transport
    terminal_everywhere(config, cpython_corpus(), caplog)


def test_mutated_submissions(transport: tuple[Config, Sink],
                             caplog: pytest.LogCaptureFixture) -> None:
    config, sink = transport
    forwarded = origin.new_message_id()
    [(code, _)] = lmtp_send(config, f"acme@{D}", [f"customs@{D}"],
                       stamp(seeds("")[1], forwarded))
    assert code == 250
    terminal_everywhere(config, mutants(MUTANTS, forwarded), caplog)
    assert sink.received, "no mutant got through to a copy: the corpus tests too little"
