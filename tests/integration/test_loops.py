"""No loops, no storms (issue 12), as a careless party would cause them, on the real
Postfix, Dovecot and PostgreSQL: a message that has made too many hops, a party whose
relay sends every copy straight back, an auto-responder, a submitter whose relay refuses
Single Window's control message."""

from __future__ import annotations

import email
import re
import secrets
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from singlewindow.config import Config
from singlewindow.store import connect, messages
from tests.support import factory
from tests.support.local import free_port
from tests.support.sinks import Received, Sink, delivery_status, dsn_about
from tests.support.world import Party, World, message, wait_until

#: The hub's default ``[transport] hop_limit``: the stack under test runs with it.
HOP_LIMIT = 30


@dataclass
class ForwardingSink(Sink):
    """A party's relay that sends every message it receives (but DSNs) straight back to
    the hub as a new submission of its own party, to ``to``: From and To rewritten, all
    else kept, its own Received line on top, as a careless forwarding service does."""

    world: World | None = None
    party: Party | None = None
    to: str = ""
    resubmitted: list[dict[str, tuple[int, bytes]] | str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        data = envelope.original_content or b""
        if envelope.mail_from not in ("", "<>") and self.to:
            threading.Thread(target=self._resubmit, args=(data,), daemon=True).start()
        return reply

    def _resubmit(self, data: bytes) -> None:
        assert self.world is not None and self.party is not None
        head, _, body = data.partition(b"\r\n\r\n")
        lines = [line for line in re.split(rb"\r\n(?![ \t])", head)
                 if not line.lower().startswith((b"from:", b"to:"))]
        own = (f"Received: from hub by mx.{self.party.name}.example; "
               f"{time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}").encode()
        new = [own, *lines, f"From: <{self.party.physical}>".encode(),
               f"To: <{self.to}>".encode()]
        try:
            self.resubmitted.append(self.world.submit(self.party, [self.to],
                                                      b"\r\n".join(new) + b"\r\n\r\n" + body))
        except (OSError, smtplib.SMTPException) as exc:
            self.resubmitted.append(repr(exc))


@dataclass
class RespondingSink(ForwardingSink):
    """A careless auto-responder: answers every message (but DSNs) with a new message of
    its own, In-Reply-To the one it got, with no Auto-Submitted and no old header."""

    def _resubmit(self, data: bytes) -> None:
        assert self.world is not None and self.party is not None
        got = email.message_from_bytes(data)
        answer = message(self.party, self.to, str(got["Subject"]), factory.gendec(),
                         headers=[f"In-Reply-To: {got['Message-ID']}"])
        try:
            self.resubmitted.append(self.world.submit(self.party, [self.to], answer))
        except (OSError, smtplib.SMTPException) as exc:
            self.resubmitted.append(repr(exc))


@pytest.fixture(scope="module")
def world(sw_stack: Config) -> Iterator[World]:
    with World(sw_stack) as world:
        world.add("co", "company")
        world.add("ag", "agency")
        world.add("cobad", "company", refuse="550 5.1.1 No such mailbox here")
        world.add("agbad", "agency", refuse="550 5.1.1 No such mailbox here")
        yield world


def subject() -> str:
    return "loop " + secrets.token_hex(6)


def trace(world: World, swid: str) -> str:
    result = subprocess.run([sys.executable, "-m", "singlewindow.cli", "--state-dir",
                             str(world.config.paths.state_dir), "trace", swid],
                            capture_output=True, text=True, check=True, timeout=60)
    return result.stdout


def submission(world: World, sender: Party, to: Party, subj: str, body: bytes,
               headers: list[str]) -> str:
    """Submit as ``sender``'s MTA; the Single Window id the hub gave it."""
    data = message(sender, to.logical, subj, body, headers=headers)
    assert world.submit(sender, [to.logical], data) == {}
    mid = data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()

    def recorded() -> bool:
        with connect(world.config.database) as conn:
            return conn.execute("SELECT 1 FROM message WHERE header_message_id = %s",
                                (mid,)).fetchone() is not None
    wait_until(recorded, timeout=60)
    with connect(world.config.database) as conn:
        row = conn.execute("SELECT id FROM message WHERE header_message_id = %s",
                           (mid,)).fetchone()
    assert row is not None
    return str(row["id"])


def maillog(world: World) -> str:
    return world.config.postfix_maillog.read_text(errors="replace")


def quiet_for(sink: Sink, subj: str, seconds: float) -> list[Received]:
    """Whatever mailing ``subj`` reaches ``sink`` within ``seconds`` (expected: nothing)."""
    time.sleep(seconds)
    return [r for r in sink.received if subj.encode() in r.data]


# --- (a) too many hops already --------------------------------------------------------

def test_message_past_the_hop_limit_is_refused_with_a_routing_loop_dsn(world: World) -> None:
    co, ag = world["co"], world["ag"]
    subj = subject()
    # A careless relay chain: 35 hops before the hub, which adds its own.
    hops = [f"Received: from relay{n}.{co.name}.example by relay{n + 1}.{co.name}.example;"
            " Sat, 28 Nov 2026 12:00:00 +0000" for n in range(35)]
    data = ("\r\n".join(hops) + "\r\n").encode() + message(co, ag.logical, subj,
                                                             factory.gendec())
    assert world.submit(co, [ag.logical], data) == {}
    [dsn] = co.sink.wait_for(lambda r: dsn_about(r, subj))
    [status] = delivery_status(dsn)
    assert status["action"] == "failed"
    assert status["status"] == "5.4.6"
    diagnostic = " ".join(status["diagnostic-code"].split())
    assert "554 5.4.6 Routing loop detected: the message has passed 36 hops" in diagnostic
    assert f"more than the {HOP_LIMIT} Single Window allows" in diagnostic
    assert quiet_for(ag.sink, subj, 3) == []


def loop_replies(co: Party, ag: Party, subj: str) -> list[Received]:
    """The DSNs either party received that refuse the looping message (5.4.6)."""
    return [r for p in (co, ag) for r in list(p.sink.received) if dsn_about(r, subj)
            and any(s["status"] == "5.4.6" for s in delivery_status(r))]


def start_loop(world: World, names: tuple[str, str],
               sink: type[ForwardingSink]) -> tuple[Party, Party, str]:
    """A company and an agency whose relays send every copy on to the other party, and a
    first message from the company; returns both parties and its subject."""
    co = world.add(names[0], "company", relay_port=free_port())
    ag = world.add(names[1], "agency", relay_port=free_port())
    for mine, other in ((co, ag), (ag, co)):
        mine.sink = sink(mine.sink.port, world=world, party=mine, to=other.logical)
        mine.sink.start()
    subj = subject()
    assert world.submit(co, [ag.logical], message(co, ag.logical, subj,
                                                  factory.gendec())) == {}
    return co, ag, subj


# --- (b) a true loop through the hub --------------------------------------------------

def test_a_relay_that_sends_every_copy_back_is_stopped_at_the_hop_limit(world: World) -> None:
    """Two parties whose relays forward everything back to the hub, to each other."""
    config = world.config
    co, ag, subj = start_loop(world, ("loopco", "loopag"), ForwardingSink)

    wait_until(lambda: bool(loop_replies(co, ag, subj)), timeout=240)
    [dsn] = loop_replies(co, ag, subj)
    [status] = delivery_status(dsn)
    diagnostic = " ".join(status["diagnostic-code"].split())
    assert "554 5.4.6 Routing loop detected: the message has passed" in diagnostic
    swid = diagnostic.split("(Single Window message ", 1)[1].split(")", 1)[0]
    # Each round adds the hub's listener and the relay: two hops (the re-injection's own
    # Received line never leaves the hub: smtp_header_checks), so the copy count is bounded
    # by the limit, and nothing more comes once it was refused.
    def copies() -> int:
        return sum(1 for p in (co, ag) for r in p.sink.received
                   if r.mail_from not in ("", "<>") and subj.encode() in r.data)
    seen = copies()
    assert 0 < seen <= HOP_LIMIT // 2 + 1
    time.sleep(8)
    assert copies() == seen
    # The last submission is in the log with the loop reply, and was not forwarded.
    with connect(config.database) as conn:
        found = messages.trace(conn, swid)
    assert found is not None and found["forwards"] == []
    [outcome] = found["recipients"]
    assert outcome["status"] == "554 5.4.6"
    assert outcome["reason"].startswith("Routing loop detected")


def test_two_careless_auto_responders_answering_each_other_are_stopped(
        world: World) -> None:
    """Each answer is a new message (no old Received field), sent within seconds of the
    copy it answers: the hub counts the hops of the flow it continues."""
    co, ag, subj = start_loop(world, ("pingco", "pingag"), RespondingSink)

    wait_until(lambda: bool(loop_replies(co, ag, subj)), timeout=300)
    [status] = delivery_status(loop_replies(co, ag, subj)[0])
    diagnostic = " ".join(status["diagnostic-code"].split())
    assert (f"Routing loop detected: the message has passed {HOP_LIMIT + 1} hops "
            "(counting the messages it answers within 120 s)") in diagnostic

    def answers() -> int:
        return sum(len(p.sink.resubmitted) for p in (co, ag))
    seen = answers()
    assert seen <= HOP_LIMIT
    time.sleep(8)
    assert answers() == seen


# --- (c) auto-responders: no DSN, no control message -------------------------------------

def test_auto_submitted_message_is_forwarded_without_any_dsn(world: World) -> None:
    co, ag = world["co"], world["ag"]
    subj = subject()
    swid = submission(world, co, ag, subj, factory.gendec(),
                      ["Auto-Submitted: auto-replied"])
    [copy] = ag.sink.wait_for(lambda r: subj.encode() in r.data)
    assert copy.message["Auto-Submitted"] == "auto-replied"
    assert [r for r in co.sink.wait_for(lambda r: dsn_about(r, subj), timeout=8)] == []
    with connect(world.config.database) as conn:
        found = messages.trace(conn, swid)
    assert found is not None
    # Postfix delivered it to the transport and wrote no "delivered" DSN for it.
    queue_id = found["queue_id"]
    wait_until(lambda: any(f"{queue_id}: to=<{ag.logical}>" in line and "status=sent" in line
                           for line in maillog(world).splitlines()))
    assert f"{queue_id}: sender delivery status notification" not in maillog(world)
    assert "automatic" in [e["kind"] for e in found["events"]]


def test_auto_submitted_message_with_mig_errors_gets_no_control_message(world: World) -> None:
    co, ag = world["co"], world["ag"]
    subj = subject()
    broken = factory.gendec().replace(b"<Flag>PA</Flag>", b"<Flag>Panama</Flag>")
    swid = submission(world, co, ag, subj, broken, ["Auto-Submitted: auto-generated"])
    wait_until(lambda: "control-message-withheld" in trace(world, swid), timeout=60)
    assert quiet_for(co.sink, swid, 6) == []  # neither a control message nor a DSN
    assert [r for r in co.sink.received if dsn_about(r, subj)] == []
    assert [r for r in ag.sink.received if subj.encode() in r.data] == []
    text = trace(world, swid)
    assert "Auto-Submitted: auto-generated" in text
    assert f"recipient {ag.logical}: Not forwarded" in text


# --- (d) a control message nobody takes ------------------------------------------------

def test_undeliverable_control_message_bounces_nowhere_and_shows_in_trace(
        world: World) -> None:
    cobad, ag = world["cobad"], world["ag"]
    subj = subject()
    broken = factory.gendec().replace(b"<Flag>PA</Flag>", b"<Flag>Panama</Flag>")
    swid = submission(world, cobad, ag, subj, broken, [])
    # The control message's own delivery, as Postfix logged it, under its notice row.
    shown = re.compile(rf"\n  control message to {re.escape(cobad.logical)} \(injected at "
                       r"[^\n]*\n"
                       rf"    postfix: to=<{re.escape(cobad.logical)}> status=bounced "
                       r"dsn=5\.1\.1 [^\n]*No such mailbox here")
    wait_until(lambda: shown.search(trace(world, swid)) is not None, timeout=90)
    text = trace(world, swid)
    assert cobad.physical not in text  # translated to the logical address
    time.sleep(5)  # time for a bounce of the bounce, if any were sent
    log = maillog(world)
    with connect(world.config.database) as conn:
        row = conn.execute("SELECT queue_id FROM notice_delivery WHERE message_id = %s"
                           " AND kind = 'control'", (swid,)).fetchone()
    assert row is not None and row["queue_id"]
    assert f"{row['queue_id']}: to=<{cobad.physical}>" in log  # the bounced attempt
    assert f"{row['queue_id']}: sender non-delivery notification" not in log
    assert f"to=<{world.config.hub.system_sender}>" not in log
    assert f"from=<{world.config.hub.system_sender}>" not in log


# --- (e) the hub's own mail: null sender, Auto-Submitted ----------------------------------

def test_control_message_has_the_null_sender_and_auto_submitted(world: World) -> None:
    co, ag = world["co"], world["ag"]
    subj = subject()
    broken = factory.gendec().replace(b"<Flag>PA</Flag>", b"<Flag>Panama</Flag>")
    swid = submission(world, co, ag, subj, broken, [])
    [control] = co.sink.wait_for(lambda r: f"Subject: Controlebericht / Control message "
                                 f"{swid}".encode() in r.data)
    assert control.mail_from in ("", "<>")
    assert control.message["Auto-Submitted"] == "auto-replied"
    # A careless answer to its From is refused at once: that address is nobody's.
    answer_to = control.message["From"].addresses[0].addr_spec
    assert answer_to == world.config.hub.system_sender
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        world.submit(co, [answer_to], message(co, answer_to, "Re: " + subj, b"thanks"))
    assert refused.value.recipients[answer_to][0] == 550
    # Its "delivered to Single Window" DSN still reaches the submitter.
    [dsn] = co.sink.wait_for(lambda r: dsn_about(r, subj))
    assert [s["action"] for s in delivery_status(dsn)] == ["delivered"]


def test_agency_failure_notice_has_the_null_sender_and_auto_submitted(world: World) -> None:
    co, agbad = world["co"], world["agbad"]
    subj = subject()
    swid = submission(world, co, agbad, subj, factory.gendec(), [])
    [notice] = co.sink.wait_for(lambda r: b"X-SingleWindow-Notice: agency-dsn " + swid.encode()
                                in r.data, timeout=90)
    assert notice.mail_from in ("", "<>")
    assert notice.message["Auto-Submitted"] == "auto-replied"
