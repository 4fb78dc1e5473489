"""Issue 12, item 2: no header of any message Single Window emits names another party's
physical address or domain, or any host, address or path inside the hub; message ids
are translated both ways, so threading still works on each side.

Written as the careless (or hostile) party would act: a company's Exchange server adds
its internal hosts everywhere it can, an agency threads its responses under its own
internal ids, and every header of every message kind the hub emits is walked.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import ipaddress
import re
import secrets
import smtplib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from singlewindow.config import Config
from tests.support import factory
from tests.support.clients import tls_context
from tests.support.pop3 import maildrop_messages
from tests.support.sinks import Received
from tests.support.world import Party, World, message, message_id, wait_until


@pytest.fixture(scope="module")
def world(sw_stack: Config) -> Iterator[World]:
    with World(sw_stack) as world:
        world.add("co", "company")
        world.add_mail_client("mc")
        world.add("ag", "agency")
        world.add("agbad", "agency",
                  refuse="550 5.1.1 <edi@agbad.example>: no such user here "
                         "(mx7.agency-internal.example [10.9.9.9])")
        yield world


def exchange_headers(party: Party, thread: list[str]) -> list[str]:
    """What a careless company's Exchange server and mail client write."""
    domain = party.physical.split("@")[1]
    return [
        f"References: {' '.join(thread)}",
        f"In-Reply-To: {thread[-1]}",
        f"Mail-Followup-To: {party.physical}, partner@elsewhere.example",
        "Mail-Reply-To: archive@elsewhere.example",
        f"Disposition-Notification-To: \"EDI desk\" <{party.physical}>",
        f"Return-Receipt-To: {party.physical}",
        f"Resent-From: {party.physical}",
        f"Resent-Message-ID: <resent.{secrets.token_hex(4)}@mx1.{domain}>",
        f"X-MS-Exchange-Organization-AuthSource: EX01.{party.name}.local",
        f"X-MS-Exchange-Organization-Network-Message-Id: x@EX01.{domain}",
        f"Received: from EX01.{party.name}.local (10.1.2.3) by mx1.{domain} (10.1.2.4)"
        " with Microsoft SMTP Server id 15.1.2507.6; Sat, 28 Nov 2026 12:00:00 +0000",
        "X-Originating-IP: [10.1.2.3]",
        f"X-Mailer: Microsoft Outlook 16.0 (mx1.{domain})",
        f"Organization: Acme (mx1.{domain})",
        f"Comments: sent from EX01.{domain}",
        f"List-Unsubscribe: <mailto:{party.physical}>",
        "Thread-Index: AdqXYZ0123456789",
        f"Content-ID: <part1@mx1.{domain}>",
        "Auto-Submitted: no",
    ]


def careless(sender: Party, to: str, subject: str, body: bytes, thread: list[str],
             content_type: str = "application/xml; charset=utf-8") -> bytes:
    domain = sender.physical.split("@")[1]
    data = message(sender, to, subject, body, headers=exchange_headers(sender, thread),
                   content_type=content_type)
    # The display name and a comment name the company's own host.
    return data.replace(f"From: <{sender.physical}>".encode(),
                        f'From: "EDI (mx1.{domain})" <{sender.physical}> '
                        f"(via EX01.{domain})".encode(), 1)


def wait_one(party: Party, needle: bytes, timeout: float = 60) -> Received:
    found = party.sink.wait_for(lambda r: needle in r.data, timeout=timeout)
    assert len(found) == 1, f"expected one message with {needle!r} at {party.name}"
    return found[0]


def msa_submit(world: World, client: Party, to: str, data: bytes) -> None:
    config = world.config
    with smtplib.SMTP_SSL(config.listeners.bind, config.listeners.msa_port, timeout=30,
                          context=tls_context(config), source_address=("127.0.0.1", 0)) as s:
        s.ehlo("clerk-pc.local")
        s.login(client.login, client.password)
        assert s.sendmail(client.physical, [to], data) == {}


# --- the walk ------------------------------------------------------------------------

_IP = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.])")


def header_lines(data: bytes) -> list[tuple[str, str, str]]:
    """(where, name, value) of every header line of every MIME part, the delivery-status
    fields and the returned headers of a report included."""
    lines: list[tuple[str, str, str]] = []

    def walk(part: email.message.Message, where: str) -> None:
        lines.extend((where, k, str(v)) for k, v in part.items())
        ctype = part.get_content_type()
        payload = part.get_payload()
        if ctype == "message/delivery-status" and isinstance(payload, list):
            for n, block in enumerate(payload):
                lines.extend((f"{where}/status{n}", k, str(v)) for k, v in block.items())
        elif ctype == "text/rfc822-headers":
            text = part.get_payload(decode=True) or b""
            returned = email.message_from_bytes(text, policy=email.policy.compat32)
            lines.extend((f"{where}/returned", k, str(v)) for k, v in returned.items())
        elif isinstance(payload, list):
            for n, sub in enumerate(payload):
                if isinstance(sub, email.message.Message):
                    walk(sub, f"{where}/{n}")

    walk(email.message_from_bytes(data, policy=email.policy.compat32), "")
    return lines


def leaks(world: World, reader: Party, data: bytes) -> list[str]:
    """Every header line that names another party's physical address or domain, an
    internal host, IP address or path, or the origin stamp."""
    config = world.config
    others = [p for p in world.parties.values() if p is not reader]
    banned = [p.physical for p in others] + [p.physical.split("@")[1] for p in others]
    banned += [f"{p.name}.local" for p in others]  # their internal hosts
    banned += ["localhost", "elsewhere.example", "agency-internal",
               str(config.paths.state_dir), "/tmp/", "/run/", ".sock", "X-SingleWindow-Origin",
               "X-Postfix"]
    # This host's own name, as a host name: a short one ("vm") also occurs by chance inside
    # random tokens (a queue id in a MIME boundary), which names no host.
    machine = socket.gethostname()
    host = (re.compile(rf"(?<![A-Za-z0-9-]){re.escape(machine)}(?![A-Za-z0-9-])", re.I)
            if machine.lower() != config.hub.hostname.lower() else None)
    found = []
    for where, name, value in header_lines(data):
        line = f"{name}: {value}"
        hits = [b for b in banned if b.lower() in line.lower()]
        if host is not None and host.search(line):
            hits.append(machine)
        hits += [ip for ip in _IP.findall(line)
                 if ipaddress.ip_address(ip).is_private or ip.startswith("127.")]
        if name.lower().startswith("x-") and not name.lower().startswith("x-singlewindow-"):
            hits.append("X- header")
        if name.lower() in ("received", "return-path") and where:
            hits.append("trace header")
        if hits:
            found.append(f"{where or 'top'} {line[:200]!r}: {hits}")
    return found


def ids(data: bytes, name: str) -> list[str]:
    value = email.message_from_bytes(data, policy=email.policy.compat32).get(name, "")
    return re.findall(r"<[^<>\s]+>", str(value))


@dataclass
class Threading:
    """What the first three steps leave for the rest: the run's tag, the company's own
    ids, the agency's internal one and the agency's copy of the declaration."""
    tag: str
    earlier: str
    internal: str
    ag_internal: str
    copy: Received


def _declaration_threads_both_ways(world: World, tag: str) -> Threading:
    """Steps 1-3: declaration, response, reply; each side sees only its own ids and the
    hub's."""
    co, ag = world["co"], world["ag"]
    domain = world.config.hub.domain
    co_domain = co.physical.split("@")[1]
    ag_domain = ag.physical.split("@")[1]

    # 1. The company's declaration, threaded under its own earlier and internal ids.
    earlier = f"<m0.{tag}@mx1.{co_domain}>"
    internal = f"<thread.{tag}@EX01.{co.name}.local>"
    s1 = careless(co, ag.logical, f"decl-{tag}", factory.gendec(), [earlier, internal])
    s1_id = message_id(s1)
    assert world.submit(co, [ag.logical], s1) == {}
    copy = wait_one(ag, f"decl-{tag}".encode())
    copy_id = copy.message["Message-ID"]
    assert copy_id.endswith(f"@{domain}>") and copy_id != s1_id
    # Every id the agency sees is one of Single Window's, each stable.
    aliases = ids(copy.data, "References")
    assert len(aliases) == 2 and all(a.endswith(f"@{domain}>") for a in aliases)
    assert ids(copy.data, "In-Reply-To") == aliases[-1:]
    head = copy.data.split(b"\r\n\r\n", 1)[0].decode()
    assert f"\r\nMail-Followup-To: <{co.logical}>\r\n" in head
    assert "Mail-Reply-To:" not in head  # nobody Single Window knows: left out
    assert f"\r\nFrom: <{co.logical}>\r\n" in head  # the host-like display name went

    # 2. The agency's response threads under the copy, and under its own internal id.
    ag_internal = f"<case.{tag}@ex.{ag_domain}.local>"
    r1 = message(ag, co.logical, f"resp-{tag}", factory.declaration_response(), headers=[
        f"In-Reply-To: {copy_id}", f"References: {aliases[0]} {copy_id} {ag_internal}",
        f"Received: from store01.{ag_domain} (192.168.7.7) by mx.{ag_domain}"])
    r1_id = message_id(r1)
    assert world.submit(ag, [co.logical], r1) == {}
    response = wait_one(co, f"resp-{tag}".encode())
    # The company sees its own ids again, and an alias for the agency's internal one.
    assert ids(response.data, "In-Reply-To") == [s1_id]
    back = ids(response.data, "References")
    assert back[:2] == [earlier, s1_id] and back[2].endswith(f"@{domain}>")
    response_id = response.message["Message-ID"]

    # 3. The company's reply threads back: the agency sees its own ids again.
    c1 = careless(co, ag.logical, f"reply-{tag}", factory.gendec(),
                  [s1_id, back[2], response_id])
    assert world.submit(co, [ag.logical], c1) == {}
    reply = wait_one(ag, f"reply-{tag}".encode())
    assert ids(reply.data, "In-Reply-To") == [r1_id]
    assert ids(reply.data, "References") == [copy_id, ag_internal, r1_id]
    return Threading(tag, earlier, internal, ag_internal, copy)


def _mail_client_leg(world: World, thread: Threading) -> Received:
    """Step 4: the mail client's declaration over the MSA; the agency answers into its
    maildrop. Returns the agency's copy."""
    mc, ag, tag = world["mc"], world["ag"], thread.tag
    m1 = careless(mc, ag.logical, f"msa-{tag}", factory.gendec(),
                  [f"<thread.{tag}@EX01.{mc.name}.local>"])
    msa_submit(world, mc, ag.logical, m1)
    msa_copy = wait_one(ag, f"msa-{tag}".encode())
    r2 = message(ag, mc.logical, f"resp2-{tag}", factory.declaration_response(), headers=[
        f"In-Reply-To: {msa_copy.message['Message-ID']}", f"References: {thread.ag_internal}"])
    assert world.submit(ag, [mc.logical], r2) == {}
    return msa_copy


def _failures(world: World, thread: Threading, msa_copy: Received) -> None:
    """Steps 5-7: a failure DSN, a control message, two agency reports, a refused copy."""
    co, mc, ag, agbad = world["co"], world["mc"], world["ag"], world["agbad"]
    config = world.config
    tag, earlier = thread.tag, thread.earlier

    # 5. A failure DSN (company to company: unauthorised link) and a control message.
    assert world.submit(co, [mc.logical], careless(co, mc.logical, f"fail-{tag}",
                                                  factory.gendec(), [earlier])) == {}
    broken = factory.gendec().replace(b"<Flag>PA</Flag>", b"<Flag>Panama</Flag>")
    s3 = careless(co, ag.logical, f"mig-{tag}", broken, [earlier, thread.internal])
    assert world.submit(co, [ag.logical], s3) == {}

    # 6. The agency's own MTA reports a copy failed, naming its hosts everywhere.
    agency_dsn = _agency_dsn(ag, co, thread.copy, tag)
    with smtplib.SMTP(config.listeners.bind, config.listeners.mta_port, timeout=30,
                      source_address=(ag.peer, 0)) as smtp:
        smtp.sendmail("", [co.logical], agency_dsn)

    # ... and that the mail client's copy is delayed: a notice into the maildrop.
    delayed = _agency_dsn(ag, mc, msa_copy, tag, action="delayed", status="4.4.1")
    with smtplib.SMTP(config.listeners.bind, config.listeners.mta_port, timeout=30,
                      source_address=(ag.peer, 0)) as smtp:
        smtp.sendmail("", [mc.logical], delayed)

    # 7. A copy the agency's relay refuses: Postfix's own DSN becomes a notice.
    assert world.submit(co, [agbad.logical], careless(co, agbad.logical, f"bad-{tag}",
                                                     factory.gendec(), [earlier])) == {}


def _everything_received(world: World) -> dict[str, tuple[Party, bytes]]:
    """Everything each reader got, named "reader #n (kind)": this module's parties
    received nothing else.
    The company: the response, five DSNs (s1, c1, the failure, s3, the refused copy),
    the control message and two agency-failure notices; the agency: three copies and
    the DSNs of its two responses; the maildrop: a DSN, the response and a notice."""
    co, mc, ag = world["co"], world["mc"], world["ag"]

    def fetched() -> list[bytes]:
        return maildrop_messages(world.config, mc)

    wait_until(lambda: len(co.sink.received) >= 9 and len(ag.sink.received) >= 5
               and len(fetched()) >= 3, timeout=150)
    kinds: dict[str, tuple[Party, bytes]] = {}
    for reader, got in ((co, [r.data for r in co.sink.received]),
                        (ag, [r.data for r in ag.sink.received]), (mc, fetched())):
        for n, data in enumerate(got):
            kinds[f"{reader.name} #{n} ({_kind(data)})"] = (reader, data)
    return kinds


def test_every_header_of_every_message_kind_is_free_of_leaks(world: World) -> None:
    co, mc, agbad = world["co"], world["mc"], world["agbad"]
    thread = _declaration_threads_both_ways(world, secrets.token_hex(4))
    _failures(world, thread, _mail_client_leg(world, thread))

    kinds = _everything_received(world)
    assert agbad.sink.received == []

    seen = {k.split("(")[-1].rstrip(")") for k in kinds}
    # Every kind the hub emits is among them.
    assert {"success", "failure", "agency-failure", "control", "message"} <= seen, \
        sorted(kinds)
    notices = [d for _, d in kinds.values() if b"X-SingleWindow-Notice: agency-dsn" in d]
    # The agency's two reports and Postfix's refusal.
    assert len(notices) == 3, sorted(kinds)
    assert any(b"resp2-" in d for r, d in kinds.values() if r is mc)
    [late] = [d for r, d in kinds.values() if r is mc and _kind(d) == "agency-failure"]
    assert b"Action: delayed" in late
    assert sum(_kind(d) == "failure" for r, d in kinds.values() if r is co) == 1

    problems = {name: found for name, (reader, data) in kinds.items()
                if (found := leaks(world, reader, data))}
    assert problems == {}, "\n".join(f"{k}: {v}" for k, v in problems.items())

    # The DSN's returned headers name the submission by its Single Window id.
    success = [d for (r, d) in kinds.values() if r is co and _kind(d) == "success"]
    assert len(success) == 4 and all(b"X-SingleWindow-Message: SW" in d for d in success)


def _kind(data: bytes) -> str:
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    if b"X-SingleWindow-Notice: agency-dsn" in data:
        return "agency-failure"
    if parsed.get("X-SingleWindow-Message"):
        return "control"
    if parsed.get_content_type() != "multipart/report":
        return "message"
    for part in parsed.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list) and len(payload) > 1:
                action = str(payload[1].get("Action", "")).lower()
                return {"delivered": "success", "failed": "failure"}.get(action, action)
    return "report"


def _agency_dsn(ag: Party, co: Party, copy: Received, tag: str, action: str = "failed",
                status: str = "5.2.2") -> bytes:
    """A DSN as an agency's Exchange would write it about the copy it got."""
    ag_domain = ag.physical.split("@")[1]
    boundary = f"b{tag}"
    envid = copy.mail_options and next(
        (o.split("=", 1)[1] for o in copy.mail_options if o.upper().startswith("ENVID=")), "")
    returned = copy.data.split(b"\r\n\r\n", 1)[0].decode()
    return (
        f"From: postmaster@{ag_domain}\r\nTo: <{co.logical}>\r\n"
        f"Subject: Undeliverable: report-{tag}\r\n"
        f"Message-ID: <dsn.{tag}@mx.{ag_domain}>\r\n"
        "Date: Sat, 28 Nov 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        f"X-MS-Exchange-Organization-AuthSource: store01.{ag_domain}.local\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;"
        f' boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n"
        f"Delivery to {ag.physical} failed at store01.{ag_domain}.local.\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.{ag_domain}\r\nOriginal-Envelope-Id: {envid}\r\n"
        f"Received-From-MTA: dns; store01.{ag_domain}.local\r\n\r\n"
        f"Final-Recipient: rfc822; {ag.physical}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Remote-MTA: dns; store01.{ag_domain}.local\r\n"
        f"Diagnostic-Code: smtp; {status[0]}52 {status} mailbox of {ag.physical} full on"
        f" store01.{ag_domain}.local [10.9.8.7]\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n"
        f"--{boundary}--\r\n").encode()
