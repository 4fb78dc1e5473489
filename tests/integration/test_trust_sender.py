"""The sender is who the hub says (issue 12, items 3, 4 and 6), tried on the real Postfix,
Dovecot and PostgreSQL as a hostile or careless party would: header senders of another
party, delivery reports pinned on another party's message, and the MSA allowance."""

from __future__ import annotations

import secrets
import smtplib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from singlewindow import replies
from singlewindow.config import Config
from singlewindow.store import connect, messages
from tests.support import factory
from tests.support.clients import MailClient, msa
from tests.support.sinks import Received, delivery_status, dsn_about
from tests.support.world import Party, World, message, message_id, wait_until


@pytest.fixture(scope="module")
def world(sw_stack: Config) -> Iterator[World]:
    with World(sw_stack) as world:
        world.add("co", "company")
        world.add("co2", "company")
        world.add("ag", "agency")
        world.add("ag2", "agency")
        world.add("ag3", "agency", active=False)
        world.add_mail_client("mc")
        yield world


def subject() -> str:
    return "trust " + secrets.token_hex(6)


def swid_of(world: World, header_message_id: str) -> str:
    with connect(world.config.database) as conn:
        found = messages.trace(conn, header_message_id)
    assert found is not None, f"no message {header_message_id} in the log"
    return str(found["id"])


def events_of(world: World, swid: str) -> list[str]:
    with connect(world.config.database) as conn:
        found = messages.trace(conn, swid)
    assert found is not None
    return [e["kind"] for e in found["events"]]


def failure_reports_on(world: World, swid: str) -> list[dict[str, Any]]:
    """The agency-dsn events on ``swid`` that report a failure (Postfix's own "relayed"
    report about the copy is recorded there too, rightly)."""
    with connect(world.config.database) as conn:
        found = messages.trace(conn, swid)
    assert found is not None
    return [e for e in found["events"] if e["kind"] == "agency-dsn"
            and any(r["action"] == "failed" for r in e["detail"]["recipients"])]


def notices_for(party: Party, swid: str) -> list[Received]:
    """Agency-failure notices about ``swid`` that reached ``party``'s MTA."""
    return [r for r in party.sink.received
            if b"X-SingleWindow-Notice: agency-dsn" in r.data and swid.encode() in r.data]


def submitted(world: World, sender: Party, to: Party) -> tuple[str, Received]:
    """A good message from ``sender`` to ``to``: its Single Window id and the copy."""
    subj = subject()
    data = message(sender, to.logical, subj, factory.gendec())
    assert world.submit(sender, [to.logical], data) == {}
    [copy] = to.sink.wait_for(lambda r: subj.encode() in r.data)
    return swid_of(world, message_id(data)), copy


def envid_of(world: World, copy: Received) -> str:
    """The ENVID Postfix gives the copy when the agency's MTA offers DSN (RFC 3461 4.4;
    the test sinks do not, so it is read where the hub keeps it)."""
    with connect(world.config.database) as conn:
        row = conn.execute("SELECT envid FROM forward WHERE copy_message_id = %s",
                           (copy.message["Message-ID"],)).fetchone()
    assert row is not None
    return str(row["envid"])


def report(reporter: Party, to: str, *, envid: str, returned_message_id: str,
           action: str = "failed") -> bytes:
    """A delivery report (RFC 3464) as an MTA writes it about a message it received."""
    lines = [
        f"From: MAILER-DAEMON@{reporter.name}.example", f"To: <{to}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Message-ID: <{secrets.token_hex(8)}@{reporter.name}.example>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="rb"', "",
        "--rb", "Content-Type: text/plain", "", "Your message could not be delivered.", "",
        "--rb", "Content-Type: message/delivery-status", "",
        f"Reporting-MTA: dns; mx.{reporter.name}.example", f"Original-Envelope-Id: {envid}",
        "", f"Final-Recipient: rfc822; {reporter.physical}", f"Action: {action}",
        "Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1 mailbox unavailable", "",
        "--rb", "Content-Type: text/rfc822-headers", "",
        f"Message-ID: {returned_message_id}", "Subject: the copy", "", "--rb--", ""]
    return "\r\n".join(lines).encode()


def send_null(world: World, reporter: Party, to: str, data: bytes) -> None:
    """As ``reporter``'s MTA, with the null sender (RFC 5321 4.5.5), as DSNs are sent."""
    with smtplib.SMTP(world.config.listeners.bind, world.config.listeners.mta_port,
                      timeout=30, source_address=(reporter.peer, 0)) as smtp:
        assert smtp.sendmail("<>", [to], data) == {}


def outcomes_of(world: World, party: Party) -> list[dict[str, Any]]:
    """The recorded outcomes of the null-sender messages ``party``'s MTA sent."""
    with connect(world.config.database) as conn:
        return conn.execute(
            "SELECT r.status, r.reason FROM message m JOIN party p ON p.id = m.party_id"
            " JOIN message_recipient r ON r.message_id = m.id"
            " WHERE p.name = %s AND m.envelope_from = ''", (party.name,)).fetchall()


# --- item 3: From, Sender and Reply-To are the submitter's own ---------------------------

@pytest.mark.parametrize(("header", "whose"), [
    ("From", "physical"), ("Sender", "physical"), ("Reply-To", "logical")])
def test_header_sender_of_another_company_is_refused(world: World, header: str,
                                                     whose: str) -> None:
    co, ag, victim = world["co"], world["ag"], world["mc"]
    other = victim.physical if whose == "physical" else victim.logical
    subj = subject()
    data = message(co, ag.logical, subj, factory.gendec(), headers=[f"{header}: <{other}>"])
    if header == "From":  # the envelope sender is co's own; the header is not
        data = data.replace(f"From: <{co.physical}>\r\n".encode(), b"", 1)
    assert world.submit(co, [ag.logical], data) == {}
    [dsn] = co.sink.wait_for(lambda r: dsn_about(r, subj))
    [status] = delivery_status(dsn)
    assert (status["action"], status["status"]) == ("failed", "5.7.1")
    diagnostic = " ".join(status["diagnostic-code"].split())
    # Another party's physical address reaches the submitter only as its logical one.
    assert f"The address <{victim.logical}> in header {header} is not one of your " \
        "addresses" in diagnostic
    assert victim.physical not in dsn.data.decode("utf-8", "replace")
    # Corrected to the party's own addresses (physical or logical), the message passes.
    fixed = subject()
    own = co.physical if whose == "physical" else co.logical
    data = data.replace(f"<{other}>".encode(), f"<{own}>".encode()).replace(
        subj.encode(), fixed.encode())
    assert world.submit(co, [ag.logical], data) == {}
    assert ag.sink.wait_for(lambda r: fixed.encode() in r.data)
    assert not [r for r in ag.sink.received if subj.encode() in r.data]


def test_agency_response_must_carry_the_agencys_own_from(world: World) -> None:
    co, ag, ag2 = world["co"], world["ag"], world["ag2"]
    subj = subject()
    data = message(ag, co.logical, subj, factory.declaration_response())
    data = data.replace(f"From: <{ag.physical}>".encode(), f"From: <{ag2.physical}>".encode())
    assert world.submit(ag, [co.logical], data) == {}
    [dsn] = ag.sink.wait_for(lambda r: dsn_about(r, subj))
    [status] = delivery_status(dsn)
    assert (status["action"], status["status"]) == ("failed", "5.7.1")
    assert "in header From is not one of your addresses" in " ".join(
        status["diagnostic-code"].split())
    assert not co.sink.wait_for(lambda r: subj.encode() in r.data, timeout=2)


# --- item 4: reports are matched only by what the hub put on the copy ---------------------

@pytest.mark.parametrize("attacker", ["co2", "ag2"])
def test_forged_report_is_not_pinned_on_another_submitters_message(world: World,
                                                                   attacker: str) -> None:
    """A party that learnt a Single Window id (and guessed the copy's Message-ID) sends a
    failure report about it: the submitter hears nothing, nothing is recorded on its
    message, and the forger's report is refused in the log."""
    co, ag, forger = world["co"], world["ag"], world[attacker]
    swid, copy = submitted(world, co, ag)
    before = len(outcomes_of(world, forger))
    send_null(world, forger, co.logical, report(
        forger, co.logical, envid=swid, returned_message_id=copy.message["Message-ID"]))
    wait_until(lambda: len(outcomes_of(world, forger)) > before
               or failure_reports_on(world, swid) != [], timeout=60)
    assert failure_reports_on(world, swid) == []
    assert "agency-failure-reported" not in events_of(world, swid)
    [refused] = outcomes_of(world, forger)[before:]
    assert refused["status"] == "554 5.7.1"
    assert refused["reason"].startswith(replies.REPORT_UNMATCHED.text)
    time.sleep(3)
    assert notices_for(co, swid) == []


def test_own_submissions_dsn_is_not_taken_for_a_report_on_another(world: World) -> None:
    """The forger has Postfix write the report: it submits with the victim's Single Window
    id as its ENVID and the victim's copy's Message-ID, to an address that refuses it.
    Postfix's failure DSN (to the forger) is the forger's, not a report on the victim's
    message."""
    co, ag, co2, ag3 = world["co"], world["ag"], world["co2"], world["ag3"]
    swid, copy = submitted(world, co, ag)
    subj = subject()
    data = message(co2, ag3.logical, subj, factory.gendec())
    data = data.replace(f"Message-ID: {message_id(data)}".encode(),
                        f"Message-ID: {copy.message['Message-ID']}".encode())
    with smtplib.SMTP(world.config.listeners.bind, world.config.listeners.mta_port,
                      timeout=30, source_address=(co2.peer, 0)) as smtp:
        assert smtp.sendmail(co2.physical, [ag3.logical], data,
                             mail_options=[f"ENVID={swid}", "RET=HDRS"]) == {}
    [dsn] = co2.sink.wait_for(lambda r: dsn_about(r, subj))
    assert [s["status"] for s in delivery_status(dsn)] == ["5.2.1"]
    assert failure_reports_on(world, swid) == []
    assert "agency-failure-reported" not in events_of(world, swid)
    assert notices_for(co, swid) == []


@pytest.mark.parametrize("matched_by", ["envid", "message-id"])
def test_agency_mta_report_about_its_copy_reaches_the_submitter(world: World,
                                                                matched_by: str) -> None:
    """The genuine report: the agency's MTA answers with the copy's own ENVID (which is not
    the Single Window id the submitter reads in its DSN), or, an MTA that keeps no ENVID,
    with the copy's headers returned."""
    co, ag = world["co"], world["ag"]
    swid, copy = submitted(world, co, ag)
    envid = envid_of(world, copy)
    assert swid not in envid and len(envid) >= 32
    assert copy.mail_from == co.logical  # where every report about the copy goes
    send_null(world, ag, co.logical, report(
        ag, co.logical, envid=envid if matched_by == "envid" else "",
        returned_message_id=copy.message["Message-ID"] if matched_by == "message-id"
        else "<unrelated@ag.example>"))
    wait_until(lambda: notices_for(co, swid) != [], timeout=60)
    [notice] = notices_for(co, swid)
    [status] = delivery_status(notice)
    assert status["action"] == "failed"
    assert ag.physical not in notice.data.decode("utf-8", "replace")
    assert failure_reports_on(world, swid) != []
    assert "agency-failure-reported" in events_of(world, swid)


# --- item 6: the MSA allowance is charged for an accepted message only --------------------

def received_from(config: Config, mc: MailClient) -> int:
    with connect(config.database) as conn:
        row = conn.execute("SELECT count(*) AS n FROM message m JOIN party p"
                           " ON p.id = m.party_id WHERE p.name = %s", (mc.login,)).fetchone()
    assert row is not None
    return int(row["n"])


def _full_message(client: smtplib.SMTP, mc: MailClient, to: str, subj: str
                  ) -> tuple[int, bytes]:
    client.mail(mc.sender)
    code, text = client.rcpt(to)
    if code != 250:
        return code, text
    return client.data(f"From: <{mc.sender}>\r\nTo: <{to}>\r\nSubject: {subj}\r\n"
                       "Content-Type: application/xml\r\n\r\n".encode() + factory.gendec())


def test_mistyped_recipient_does_not_use_the_allowance(sw_stack: Config,
                                                       mail_client: MailClient) -> None:
    with msa(sw_stack) as client:
        client.login(mail_client.login, mail_client.password)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail(mail_client.sender, ["custms@sw.test"], b"Subject: typo\r\n\r\nx")
        assert refused.value.recipients["custms@sw.test"][0] == 550
    with msa(sw_stack) as client:
        client.login(mail_client.login, mail_client.password)
        assert _full_message(client, mail_client, "customs@sw.test", subject())[0] == 250


@pytest.mark.parametrize("how", ["RSET", "QUIT"])
def test_abandoned_transaction_does_not_use_the_allowance(sw_stack: Config,
                                                          mail_client: MailClient,
                                                          how: str) -> None:
    with msa(sw_stack) as client:
        client.login(mail_client.login, mail_client.password)
        client.mail(mail_client.sender)
        assert client.rcpt("customs@sw.test")[0] == 250
        if how == "RSET":
            client.rset()
            assert _full_message(client, mail_client, "customs@sw.test", subject())[0] == 250
            return
        client.quit()
    with msa(sw_stack) as client:
        client.login(mail_client.login, mail_client.password)
        assert _full_message(client, mail_client, "customs@sw.test", subject())[0] == 250


def test_two_messages_racing_the_window_only_one_is_accepted(sw_stack: Config,
                                                             mail_client: MailClient) -> None:
    """Both transactions pass RCPT (nothing is charged yet); the allowance is charged at
    the end of DATA, so the second to finish gets the rate-limit reply there."""
    with msa(sw_stack) as first, msa(sw_stack) as second:
        for client in (first, second):
            client.login(mail_client.login, mail_client.password)
            client.mail(mail_client.sender)
            assert client.rcpt("customs@sw.test")[0] == 250
        body = f"From: <{mail_client.sender}>\r\nSubject: race\r\n\r\n<a/>\r\n".encode()
        assert first.data(body)[0] == 250
        code, text = second.data(body)
    # Postfix names the stage before the policy's text, as it names the recipient at RCPT.
    assert (code, text[:6]) == (replies.RATE_LIMITED.code, b"4.7.1 ")
    assert text.decode().endswith(replies.RATE_LIMITED.text)
    # Refused before the queue: the hub received one message of the two.
    wait_until(lambda: received_from(sw_stack, mail_client) == 1, timeout=60)
    time.sleep(3)
    assert received_from(sw_stack, mail_client) == 1
    # The next message is refused as before, at RCPT already.
    with msa(sw_stack) as client:
        client.login(mail_client.login, mail_client.password)
        client.mail(mail_client.sender)
        code, text = client.rcpt("customs@sw.test")
    assert (code, text[:6]) == (450, b"4.7.1 ")
