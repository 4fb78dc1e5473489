"""The "delivered" DSN written by the transport, not by Postfix (issue 13): the LMTP server
announces DSN, so Postfix's lmtp(8) writes no success DSN (smtp_rcpt.c) and the transport
sends one per submission, with the submitter's ENVID and ORCPT, through the same
allow-list as Postfix's was; failures still get Postfix's own DSN."""

from __future__ import annotations

import secrets
import smtplib

from singlewindow.store import connect, messages
from tests.support import factory
from tests.support.sinks import delivery_status, dsn_about
from tests.support.world import Party, World, message, wait_until, world_fixture

world = world_fixture(("co", "company"), ("ag1", "agency"), ("ag2", "agency"))


def subject() -> str:
    return "delivered " + secrets.token_hex(6)


def send(world: World, co: Party, rcpts: list[str], data: bytes, mail_options: list[str],
         rcpt_options: list[str]) -> None:
    with smtplib.SMTP(world.config.listeners.bind, world.config.listeners.mta_port,
                      timeout=30, source_address=(co.peer, 0)) as smtp:
        assert smtp.sendmail(co.physical, rcpts, data, mail_options=mail_options,
                             rcpt_options=rcpt_options) == {}


def maillog(world: World) -> str:
    return world.config.postfix_maillog.read_text(errors="replace")


def test_postfix_writes_no_delivered_dsn_the_transport_writes_one(world: World) -> None:
    co, ag1, ag2 = world["co"], world["ag1"], world["ag2"]
    subj = subject()
    data = message(co, ag1.logical, subj, factory.gendec(), headers=[f"Cc: <{ag2.logical}>"])
    send(world, co, [ag1.logical, ag2.logical], data, ["ENVID=ref+2Bone.42"],
         [f"ORCPT=rfc822;{ag1.logical}"])
    [dsn] = co.sink.wait_for(lambda r: dsn_about(r, subj))
    assert dsn.mail_from in ("", "<>") and dsn.rcpt_tos == [co.physical]
    report = dsn.message
    statuses = delivery_status(dsn)
    assert sorted((s["final-recipient"], s["action"], s["status"]) for s in statuses) == \
        sorted((f"rfc822; {a.logical}", "delivered", "2.0.0") for a in (ag1, ag2))
    assert all("Delivered to Single Window as SW" in s["diagnostic-code"] for s in statuses)
    text = dsn.data.decode("utf-8", "replace")
    assert "Original-Envelope-Id: ref+one.42" in text  # RFC 3461 4.4, xtext decoded
    assert f"Original-Recipient: rfc822; {ag1.logical}" in text
    assert report["Auto-Submitted"] == "auto-replied"
    assert co.physical not in text.split("\r\n\r\n", 1)[1]  # only logical addresses
    with connect(world.config.database) as conn:
        [row] = conn.execute("SELECT id FROM message WHERE header_message_id = %s",
                             (data.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode(),)
                             ).fetchall()
        found = messages.trace(conn, row["id"])
    assert found is not None
    assert f"X-SingleWindow-Message: {row['id']}" in text
    assert [(n["kind"], n["state"]) for n in found["notices"]] == [("dsn", "injected")]
    # Each recipient's 250 and its copy, recorded once (with the copy's mark).
    assert [(r["recipient"], r["status"]) for r in found["recipients"]] == sorted(
        (a.logical, "250 2.0.0") for a in (ag1, ag2))
    kinds = [e["kind"] for e in found["events"]]
    assert (kinds.count("forwarded"), kinds.count("outcome"), kinds.count("hops")) == (2, 2, 1)
    # Postfix delivered both recipients to the transport and reported nothing itself.
    queue_id = found["queue_id"]
    wait_until(lambda: maillog(world).count(f"{queue_id}: removed") == 1)
    assert f"{queue_id}: sender delivery status notification" not in maillog(world)
    world.flush()
    assert len(co.sink.wait_for(lambda r: dsn_about(r, subj), timeout=5, count=2)) == 1


def test_a_refusal_is_still_reported_by_postfix(world: World) -> None:
    co, ag1 = world["co"], world["ag1"]
    subj = subject()
    data = message(co, ag1.logical, subj, b"PNG", content_type="image/png")
    send(world, co, [ag1.logical], data, [], [])
    [report] = co.sink.wait_for(lambda r: dsn_about(r, subj))
    [status] = delivery_status(report)
    assert (status["action"], status["status"]) == ("failed", "5.6.1")
    assert b"Undelivered" in report.data  # bounce.cf.j2's failure_template, by Postfix
    world.flush()
    assert len(co.sink.wait_for(lambda r: dsn_about(r, subj), timeout=5, count=2)) == 1
