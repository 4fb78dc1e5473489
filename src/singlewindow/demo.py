"""``swctl demo``: one round trip through the demo stack, shown as it happens.

Plays the demo parties' own mail servers (SMTP sinks on their relay ports) and clients:
acme's MTA submits a PAXLST in EDIFACT to customs, customs answers with a declaration
response, and brightline's mail client submits a declaration over the MSA and fetches its
DSN and the agency's answer from its POP3 maildrop. Nothing here is part of the hub.
"""

from __future__ import annotations

import poplib
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from importlib.resources import files
from typing import Any

from aiosmtpd.controller import Controller

from singlewindow.config import Config
from singlewindow.stack import DEMO_LOGIN

Say = Any


@dataclass
class _Sink:
    name: str
    port: int
    received: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append((envelope.mail_from, envelope.original_content or b""))
        return "250 OK"


def _data(name: str) -> bytes:
    return files("singlewindow").joinpath("demo_data", name).read_bytes()


def _message(sender: str, to: str, subject: str, body: bytes, ctype: str,
             extra: str = "") -> bytes:
    head = (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{time.time_ns()}@{sender.split('@')[1]}>\r\n{extra}"
            f"MIME-Version: 1.0\r\nContent-Type: {ctype}\r\n\r\n")
    return head.encode() + body


def _wait(sink: _Sink, needle: bytes, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sink.lock:
            for _, data in sink.received:
                if needle in data:
                    return data
        time.sleep(0.2)
    raise TimeoutError(f"nothing with {needle!r} reached {sink.name} within {timeout:.0f}s")


def _show(say: Say, title: str, data: bytes, lines: int = 14) -> None:
    say(f"\n=== {title} ===")
    message = message_from_bytes(data, policy=policy.default)
    for name in ("From", "To", "Subject", "Message-ID", "In-Reply-To"):
        if message[name]:
            say(f"{name}: {message[name]}")
    if message.get_content_type() == "multipart/report":
        for part in message.walk():
            if part.get_content_type() == "message/delivery-status":
                blocks: Any = part.get_payload()
                for block in blocks[1:]:
                    say(f"  {block['Final-Recipient']}: Action {block['Action']}, "
                        f"Status {block['Status']}")
                    if block["Diagnostic-Code"]:
                        say(f"    {' '.join(str(block['Diagnostic-Code']).split())}")
        return
    body = message.get_content()
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    say("\n".join(text.replace("><", ">\n<").splitlines()[:lines]) + "\n  ...")


def run(config: Config, password: str, say: Say = print) -> None:
    domain = config.hub.domain
    sinks = {"acme": _Sink("acme's MTA", 2601), "customs": _Sink("customs' MTA", 2602),
             "coastguard": _Sink("coastguard's MTA", 2603)}
    controllers = [Controller(s, hostname="127.0.0.1", port=s.port) for s in sinks.values()]
    for c in controllers:
        c.start()
    try:
        bind, mta = config.listeners.bind, config.listeners.mta_port
        stamp = time.strftime("%H%M%S")
        # 1. acme's MTA submits a PAXLST (EDIFACT) to customs' logical address.
        subject = f"PAXLST KL0641 {stamp}"
        say(f"acme (MTA, from 127.0.2.1) -> customs@{domain}: {subject}")
        with smtplib.SMTP(bind, mta, source_address=("127.0.2.1", 0)) as smtp:
            smtp.sendmail("edi@acme.example", [f"customs@{domain}"], _message(
                "edi@acme.example", f"customs@{domain}", subject, _data("paxlst.edi"),
                "application/EDIFACT"))
        copy = _wait(sinks["customs"], subject.encode())
        _show(say, "customs' MTA received (EDIFACT converted to XML, logical addresses)", copy)
        _show(say, "acme's MTA received the DSN", _wait(
            sinks["acme"], b"delivery-status"))
        # 2. customs answers acme, threading under the copy it received.
        copy_id = message_from_bytes(copy, policy=policy.default)["Message-ID"]
        answer = f"Re: {subject}"
        with smtplib.SMTP(bind, mta, source_address=("127.0.1.1", 0)) as smtp:
            smtp.sendmail("declarations@customs.example", [f"acme@{domain}"], _message(
                "declarations@customs.example", f"acme@{domain}", answer,
                _data("declaration-response.xml"), "application/xml",
                f"In-Reply-To: {copy_id}\r\n"))
        _show(say, "acme's MTA received the declaration response",
              _wait(sinks["acme"], answer.encode()))
        # 3. brightline's mail client: MSA submission, then POP3 for the DSN and answer.
        context = ssl.create_default_context(cafile=str(config.cert_file))
        context.check_hostname = False
        subject = f"GENDEC {stamp}"
        say(f"\nbrightline (mail client, MSA {config.listeners.msa_port}, login "
            f"{DEMO_LOGIN}) -> customs@{domain}: {subject}")
        with smtplib.SMTP_SSL(bind, config.listeners.msa_port, context=context) as smtp:
            smtp.login(DEMO_LOGIN, password)
            smtp.sendmail("clerk@brightline.example", [f"customs@{domain}"], _message(
                "clerk@brightline.example", f"customs@{domain}", subject,
                _data("gendec.xml"), "application/xml"))
        _wait(sinks["customs"], subject.encode())
        with smtplib.SMTP(bind, mta, source_address=("127.0.1.1", 0)) as smtp:
            smtp.sendmail("declarations@customs.example", [f"brightline@{domain}"], _message(
                "declarations@customs.example", f"brightline@{domain}", f"Re: {subject}",
                _data("declaration-response.xml"), "application/xml"))
        fetched = _fetch(config, context, password, [subject.encode(), b"Re: " +
                                                     subject.encode()])
        for title, data in fetched:
            _show(say, f"brightline fetched by POP3 (STLS): {title}", data)
    finally:
        for c in controllers:
            c.stop()


def _fetch(config: Config, context: ssl.SSLContext, password: str,
           needles: list[bytes], timeout: float = 60) -> list[tuple[str, bytes]]:
    deadline = time.monotonic() + timeout
    found: dict[bytes, bytes] = {}
    while time.monotonic() < deadline and len(found) < len(needles):
        pop = poplib.POP3(config.listeners.bind, config.listeners.pop3_port)
        pop.stls(context)
        pop.user(DEMO_LOGIN)
        pop.pass_(password)
        for i in range(pop.stat()[0]):
            data = b"\r\n".join(pop.retr(i + 1)[1])
            for needle in needles:
                if needle in data and b"Subject: " + needle in data:
                    found[needle] = data
                elif needle in data and b"delivery-status" in data:
                    found.setdefault(b"dsn:" + needle, data)
        pop.quit()
        time.sleep(0.5)
    return [(("the DSN" if k.startswith(b"dsn:") else k.decode()), v)
            for k, v in found.items()]
