"""Claims on copies: a lease keeps two attempts from sending one copy (SPEC D4, issue 10)."""

from __future__ import annotations

import secrets
import time
from typing import Any

import psycopg

from singlewindow.store import directory, messages

SWID = "SW20261129190000000deadbeef"


def received(conn: psycopg.Connection[Any]) -> None:
    messages.record_message(conn, messages.Received(
        id=SWID, listener="mta", party=None, sasl_login=None, peer_address="10.1.0.1",
        envelope_from="acme@sw.test", header_message_id="<m@acme>", queue_id="Q1",
        payload_sha256="0" * 64))


def copy(destination: str = "customs@sw.test") -> messages.Forward:
    return messages.Forward(SWID, "customs@sw.test", destination, "in@customs.example",
                            f"<{SWID}.{destination[:4]}@sw.test>")


def test_first_claim_is_fresh_a_second_is_busy_while_the_lease_runs(
        conn: psycopg.Connection[Any]) -> None:
    received(conn)
    first = messages.claim_forward(conn, copy(), lease=60)
    assert (first.outcome, first.state, first.attempt) == ("fresh", "pending", 1)
    second = messages.claim_forward(conn, copy(), lease=60)
    assert second.outcome == "busy"
    other = messages.claim_forward(conn, copy("coastguard@sw.test"), lease=60)
    assert other.outcome == "fresh"  # claims are per copy


def test_an_expired_lease_is_taken_over_and_fences_the_old_attempt(
        conn: psycopg.Connection[Any]) -> None:
    received(conn)
    first = messages.claim_forward(conn, copy(), lease=0.2)
    time.sleep(0.3)
    second = messages.claim_forward(conn, copy(), lease=60)
    assert (second.outcome, second.attempt) == ("retry", 2)
    assert second.since == first.since  # logs are searched from the first attempt on
    assert not messages.renew(conn, first, 60)  # the old attempt may not send any more
    assert messages.renew(conn, second, 60)


def test_released_claim_is_retried_at_once(conn: psycopg.Connection[Any]) -> None:
    received(conn)
    first = messages.claim_forward(conn, copy(), lease=60)
    messages.release(conn, first)
    assert messages.claim_forward(conn, copy(), lease=60).outcome == "retry"


def test_sent_and_refused_copies_are_done(conn: psycopg.Connection[Any]) -> None:
    received(conn)
    sent = messages.claim_forward(conn, copy(), lease=60)
    messages.mark_injected(conn, sent, "4fLqV20Kd0z1xZ")
    again = messages.claim_forward(conn, copy(), lease=0)
    assert (again.outcome, again.state, again.queue_id) == ("done", "injected", "4fLqV20Kd0z1xZ")
    refused = messages.claim_forward(conn, copy("coastguard@sw.test"), lease=60)
    messages.mark_refused(conn, refused, "552 5.3.4 Message size exceeds fixed limit")
    again = messages.claim_forward(conn, copy("coastguard@sw.test"), lease=0)
    assert (again.outcome, again.state) == ("done", "refused")
    assert again.refusal == "552 5.3.4 Message size exceeds fixed limit"
    assert not messages.renew(conn, refused, 60)


def test_notice_claims_are_keyed_by_message_and_recipient(
        conn: psycopg.Connection[Any]) -> None:
    received(conn)
    notice = messages.Notice("k" * 64, SWID, "acme@sw.test", "edi@acme.example", "dsn",
                             "<SWNkkkk@sw.test>")
    assert messages.claim_notice(conn, notice, lease=60).outcome == "fresh"
    assert messages.claim_notice(conn, notice, lease=60).outcome == "busy"
    # A notice about a message the store does not know is still claimed (no reference).
    unknown = messages.Notice("u" * 64, "SWunknown", "acme@sw.test", "edi@acme.example",
                              "dsn", "<SWNuuuu@sw.test>")
    claim = messages.claim_notice(conn, unknown, lease=60)
    assert claim.outcome == "fresh"
    found = messages.trace(conn, SWID)
    assert found is not None and [n["kind"] for n in found["notices"]] == ["dsn"]


def test_a_copy_keeps_its_own_random_envid_across_attempts(
        conn: psycopg.Connection[Any]) -> None:
    """Issue 12: a report about a copy is matched by a token only its receiver saw; every
    retry of the copy sends the same one, and no two copies share one."""
    received(conn)
    first = messages.claim_forward(conn, copy(), lease=0.2)
    time.sleep(0.3)
    retry = messages.claim_forward(conn, copy(), lease=60)
    other = messages.claim_forward(conn, copy("coastguard@sw.test"), lease=60)
    assert first.envid and retry.envid == first.envid and other.envid != first.envid
    assert SWID not in first.envid
    found = messages.copy_by_envid(conn, first.envid)
    assert found is not None and found.message_id == SWID
    assert found.envelope_from == "acme@sw.test"
    assert messages.copy_by_envid(conn, SWID) is None


def test_generated_mail_about_no_known_message_is_still_traced(
        conn: psycopg.Connection[Any]) -> None:
    """Issue 12: every message that reaches a party is in `swctl trace`, also a DSN
    Single Window could not tie to a message it knows."""
    key = secrets.token_hex(32)
    notice = messages.Notice(key, None, "acme@sw.test", "edi@acme.example", "dsn",
                             f"<SWN{key[:24]}@sw.test>")
    claim = messages.claim_notice(conn, notice, lease=60)
    messages.mark_injected(conn, claim, "4Q" + key[:12])
    for ident in (f"<SWN{key[:24]}@sw.test>", "4Q" + key[:12]):
        found = messages.trace(conn, ident)
        assert found is not None and found["id"] is None
        assert (found["notice"]["kind"], found["notice"]["recipient"]) == ("dsn", "acme@sw.test")
    assert messages.trace(conn, "<nothing@sw.test>") is None


def test_a_forgery_claiming_an_id_does_not_shadow_the_message(
        conn: psycopg.Connection[Any]) -> None:
    received(conn)
    forgery = "SW20261129190000001FEEDFACE"
    messages.record_message(conn, messages.Received(
        id=forgery, listener="refused", party=None, sasl_login=None, peer_address=None,
        envelope_from="acme@sw.test", header_message_id="<f@x>", queue_id="QF",
        payload_sha256="1" * 64))
    messages.event(conn, forgery, "stamp-refused", {"reason": "wrong MAC",
                                                    "claimed_id": SWID, "claimed_queue": "QC"})
    found = messages.trace(conn, SWID)
    assert found is not None and found["id"] == SWID
    assert [r["message_id"] for r in found["stamp_refusals"]] == [forgery]
    for ident in ("QC", "QF", "<f@x>", forgery):
        other = messages.trace(conn, ident)
        assert other is not None and other["id"] == forgery, ident


def test_ids_map_to_the_copy_or_an_alias_and_back(conn: psycopg.Connection[Any]) -> None:
    """Issue 12: what each side sees of the other's message ids, and how it maps back."""
    acme = directory.add_party(conn, "acme", "company", [], None)
    customs = directory.add_party(conn, "customs", "agency", [], None)
    directory.add_address(conn, "customs@sw.test", "customs", "in@customs.example", None,
                          "sw.test")
    messages.record_message(conn, messages.Received(
        id=SWID, listener="mta", party="acme", sasl_login=None, peer_address="10.1.0.1",
        envelope_from="acme@sw.test", header_message_id="<m@mx1.acme>", queue_id="Q1",
        payload_sha256="0" * 64))
    claim = messages.claim_forward(conn, copy(), lease=60)
    assert messages.copy_for(conn, acme.id, "<m@mx1.acme>", customs.id) is None  # not sent
    messages.mark_injected(conn, claim, "Q2")
    assert messages.copy_origin(conn, claim.copy_message_id) == (acme.id, "<m@mx1.acme>")
    assert messages.copy_for(conn, acme.id, "<m@mx1.acme>", customs.id) == \
        claim.copy_message_id
    assert messages.copy_for(conn, customs.id, "<m@mx1.acme>", customs.id) is None
    # An id of acme's that never came through the hub: one alias, however often named.
    alias = messages.alias_for(conn, acme.id, "<t@EX01.acme.local>", "<SWRA@sw.test>")
    assert alias == "<SWRA@sw.test>"
    assert messages.alias_for(conn, acme.id, "<t@EX01.acme.local>", "<SWRB@sw.test>") == alias
    assert messages.alias_origin(conn, alias) == (acme.id, "<t@EX01.acme.local>")
    assert messages.alias_for(conn, customs.id, "<t@EX01.acme.local>", "<SWRC@sw.test>") \
        == "<SWRC@sw.test>"  # the same words from another party are another id
    assert messages.party_of(conn, SWID) == acme.id


def test_a_deferral_for_a_locked_maildrop_releases_and_is_an_event(
        conn: psycopg.Connection[Any]) -> None:
    """Issue 14: each wait for a POP3 session is recorded (shared contract: kind
    ``maildrop-deferred``, recipient, login, status, leg), in the releasing statement."""
    received(conn)
    claim = messages.claim_forward(conn, copy(), lease=60)
    messages.release_locked(conn, claim, "clerk", "4.2.1")
    notice = messages.claim_notice(conn, messages.Notice(
        "k" * 64, SWID, "acme@sw.test", "clerk@acme.example", "dsn", "<SWNk@sw.test>"), 60)
    messages.release_locked(conn, notice, "clerk", "4.2.1")
    rows = conn.execute("SELECT message_id, detail FROM event WHERE kind ="
                        " 'maildrop-deferred' ORDER BY id").fetchall()
    assert rows == [
        {"message_id": SWID, "detail": {"recipient": "customs@sw.test", "login": "clerk",
                                        "status": "4.2.1", "leg": "copy",
                                        "copy_message_id": claim.copy_message_id}},
        {"message_id": SWID, "detail": {"recipient": "acme@sw.test", "login": "clerk",
                                        "status": "4.2.1", "leg": "notice",
                                        "copy_message_id": "<SWNk@sw.test>"}}]
    # Released: the next attempt takes the claim at once.
    assert messages.claim_forward(conn, copy(), lease=60).outcome == "retry"
    assert messages.claim_notice(conn, messages.Notice(
        "k" * 64, SWID, "acme@sw.test", "clerk@acme.example", "dsn", "<SWNk@sw.test>"),
        60).outcome == "retry"


def test_a_deferral_of_a_notice_about_no_known_message_is_recorded_and_traced(
        conn: psycopg.Connection[Any]) -> None:
    notice = messages.Notice("o" * 64, None, "acme@sw.test", "clerk@acme.example", "dsn",
                             "<SWNorphan2@sw.test>")
    claim = messages.claim_notice(conn, notice, lease=60)
    messages.release_locked(conn, claim, "clerk", "4.2.1")
    found = messages.trace(conn, "<SWNorphan2@sw.test>")
    assert found is not None and found["id"] is None
    [event] = found["notice"]["events"]
    assert (event["kind"], event["detail"]["leg"]) == ("maildrop-deferred", "notice")


def test_an_outcome_may_record_the_type_the_mig_found(conn: psycopg.Connection[Any]) -> None:
    """Issue 14: a message the MIG refused still has its type in the log."""
    received(conn)
    messages.record_outcome(conn, SWID, "customs@sw.test", "554 5.6.0", "MIG errors",
                            message_type="GENDEC-1")
    found = messages.trace(conn, SWID)
    assert found is not None and found["message_type"] == "GENDEC-1"
    messages.record_outcome(conn, SWID, "coastguard@sw.test", "554 5.6.0", "MIG errors")
    found = messages.trace(conn, SWID)
    assert found is not None and found["message_type"] == "GENDEC-1"  # kept



def test_a_message_is_recorded_with_its_subject_and_in_reply_to(
        conn: psycopg.Connection[Any]) -> None:
    """Issue 18: what the console lists, and what ties a response to the copy it
    answers."""
    received(conn)
    messages.record_message(conn, messages.Received(
        id="SW20261129190000001cafe", listener="mta", party=None, sasl_login=None,
        peer_address=None, envelope_from="customs@sw.test", header_message_id=None,
        queue_id="Q2", payload_sha256="0" * 64, subject="Re: Manifest é",
        in_reply_to=f"<{SWID}.cust@sw.test>"))
    rows = conn.execute("SELECT id, subject, in_reply_to FROM message ORDER BY id").fetchall()
    assert rows == [
        {"id": SWID, "subject": None, "in_reply_to": None},
        {"id": "SW20261129190000001cafe", "subject": "Re: Manifest é",
         "in_reply_to": f"<{SWID}.cust@sw.test>"}]
