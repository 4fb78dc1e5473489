"""The whole way of one message (:mod:`singlewindow.trace`), what ``swctl trace`` prints
and the console's timeline shows: the log's rows, each leg's maildrop deferrals counted,
and Postfix's status lines from a maillog written here, with every party's physical
address shown as its logical one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from singlewindow import trace
from singlewindow.config import Config
from singlewindow.store import directory, messages

D = "sw.test"
SWID = "SW20261130100000000abcdef"
COPY_ID = f"<{SWID}.cust@{D}>"
INBOUND, COPY_Q, DSN_Q, NOTICE_Q, BOUNCE_Q, ORPHAN_Q = (
    "4fQIN10Aa0z1xB", "4fQCP20Kd0z1xZ", "4fQDS11Bb1z1xC", "4fQNT30Cc0z1xD",
    "4fQBN12Dd1z1xE", "4fQOR40Ee0z1xF")

# Postfix 3.7's lines (as tests/unit/transport/test_evidence.py has them): the inbound
# leg into the transport, the copy's relay to customs (deferred once, then sent), the
# DSN bounce(8) wrote about the submission and its delivery, the notice to acme.
MAILLOG = f"""\
Nov 30 10:00:01 mail postfix/lmtp[130]: {INBOUND}: to=<customs@{D}>, \
relay=mail.{D}[/run/lmtp.sock], delay=0.2, delays=0/0/0/0.2, dsn=2.0.0, \
status=sent (250 2.0.0 Delivered to Single Window as {SWID})
Nov 30 10:00:01 mail postfix/bounce[131]: {INBOUND}: sender delivery status \
notification: {BOUNCE_Q}
Nov 30 10:00:02 mail postfix/lmtp[132]: {BOUNCE_Q}: to=<edi@acme.example>, \
relay=mail.{D}[/run/lmtp.sock], delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, \
status=sent (250 2.0.0 Delivered to acme@{D})
Nov 30 10:00:30 mail postfix/smtp[120]: {COPY_Q}: to=<in@customs.example>, \
relay=none, delay=21, delays=0/0/21/0, dsn=4.4.1, \
status=deferred (connect to 127.0.0.1[127.0.0.1]:2602: Connection refused)
Nov 30 10:01:00 mail postfix/smtp[121]: {COPY_Q}: to=<in@customs.example>, \
relay=127.0.0.1[127.0.0.1]:2602, delay=60, delays=0/59/0/1, dsn=2.0.0, \
status=sent (250 2.0.0 Ok: queued for in@customs.example and stranger@else.example)
Nov 30 10:01:05 mail postfix/lmtp[133]: {NOTICE_Q}: to=<edi@acme.example>, \
relay=mail.{D}[/run/lmtp.sock], delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, \
status=sent (250 2.0.0 Delivered)
Nov 30 10:02:00 mail postfix/lmtp[134]: {ORPHAN_Q}: to=<edi@acme.example>, \
relay=mail.{D}[/run/lmtp.sock], delay=0.1, delays=0/0/0/0.1, dsn=4.2.1, \
status=deferred (450 4.2.1 Maildrop of edi@acme.example is in use, will retry)
"""


@pytest.fixture
def config(database_config: Config, tmp_path: Path) -> Config:
    maillog = tmp_path / "postfix.log"
    maillog.write_text(MAILLOG)
    return replace(database_config,
                   transport=replace(database_config.transport, postfix_maillog=maillog))


@pytest.fixture
def logged(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """acme's message to customs: one copy (two maildrop deferrals, then sent), a DSN
    notice back to acme (one deferral)."""
    for name, kind in (("acme", "company"), ("customs", "agency")):
        directory.add_party(conn, name, kind, [], None)
    directory.add_address(conn, f"acme@{D}", "acme", "edi@acme.example", None, D)
    directory.add_address(conn, f"customs@{D}", "customs", "in@customs.example", None, D)
    messages.record_message(conn, messages.Received(
        id=SWID, listener="mta", party="acme", sasl_login=None, peer_address="10.1.0.5",
        envelope_from=f"acme@{D}", header_message_id="<m1@acme.example>",
        queue_id=INBOUND, payload_sha256="0" * 64, subject="Manifest"))
    copy = messages.claim_forward(conn, messages.Forward(
        SWID, f"customs@{D}", f"customs@{D}", "in@customs.example", COPY_ID), 60)
    messages.release_locked(conn, copy, "customs-box", "4.2.1")
    messages.release_locked(conn, copy, "customs-box", "4.2.1")
    copy = messages.claim_forward(conn, messages.Forward(
        SWID, f"customs@{D}", f"customs@{D}", "in@customs.example", COPY_ID), 60)
    messages.mark_injected(conn, copy, COPY_Q, outcome=(
        SWID, f"customs@{D}", "250 2.0.0", f"Delivered to Single Window as {SWID}"))
    _deferred_once_then_delivered(conn, messages.Notice(
        "n" * 64, SWID, f"acme@{D}", "edi@acme.example", "dsn", f"<dsn.{SWID}@{D}>"),
        NOTICE_Q)
    return conn


def _deferred_once_then_delivered(conn: psycopg.Connection[Any], notice: messages.Notice,
                                  queue_id: str) -> None:
    """A notice for acme's maildrop: one wait for a POP3 session, then delivered."""
    claim = messages.claim_notice(conn, notice, 60)
    messages.release_locked(conn, claim, "acme-clerk", "4.2.1")
    messages.mark_injected(conn, messages.claim_notice(conn, notice, 60), queue_id)


@pytest.mark.parametrize("ident", [SWID, INBOUND, "<m1@acme.example>", COPY_Q, COPY_ID,
                                   NOTICE_Q, f"<dsn.{SWID}@{D}>"])
def test_a_message_is_found_by_any_of_its_ids(logged: psycopg.Connection[Any],
                                              config: Config, ident: str) -> None:
    found = trace.find(logged, config, ident)
    assert found is not None and found["id"] == SWID


def test_the_facts_of_a_message(logged: psycopg.Connection[Any], config: Config) -> None:
    found = trace.find(logged, config, SWID)
    assert found is not None
    assert (found["party"], found["listener"], found["subject"]) == ("acme", "mta",
                                                                     "Manifest")
    assert found["recipients"][0]["status"] == "250 2.0.0"
    [copy] = found["forwards"]
    [notice] = found["notices"]
    assert (copy["queue_id"], copy["maildrop_deferrals"]) == (COPY_Q, 2)
    assert (notice["queue_id"], notice["maildrop_deferrals"]) == (NOTICE_Q, 1)
    # The copy's relay, each attempt, every party's physical address as its logical one;
    # an address no party has stays as it is.
    assert copy["postfix"] == [
        {"to": f"customs@{D}", "relay": "none", "dsn": "4.4.1", "status": "deferred",
         "text": "connect to 127.0.0.1[127.0.0.1]:2602: Connection refused"},
        {"to": f"customs@{D}", "relay": "127.0.0.1[127.0.0.1]:2602", "dsn": "2.0.0",
         "status": "sent",
         "text": f"250 2.0.0 Ok: queued for customs@{D} and stranger@else.example"}]
    assert [(s["to"], s["status"]) for s in notice["postfix"]] == [(f"acme@{D}", "sent")]
    # The inbound leg's own trail: into the transport, and the DSN Postfix wrote back.
    inbound = found["postfix"]
    assert inbound["queue_id"] == INBOUND
    assert [(s["to"], s["status"]) for s in inbound["status"]] == [(f"customs@{D}", "sent")]
    [dsn] = inbound["notifications"]
    assert (dsn["what"], dsn["queue_id"]) == ("sender delivery status notification",
                                              BOUNCE_Q)
    assert [(s["to"], s["status"]) for s in dsn["status"]] == [(f"acme@{D}", "sent")]
    kinds = [e["kind"] for e in found["events"]]
    assert kinds.count("maildrop-deferred") == 3 and kinds[0] == "received"


def test_gather_is_find_without_the_postfix_log(logged: psycopg.Connection[Any],
                                               config: Config) -> None:
    """A company's view needs no Postfix lines: gather reads the message log only (it is
    not even given the config that names Postfix's log), with the same facts else."""
    gathered, found = trace.gather(logged, SWID), trace.find(logged, config, SWID)
    assert gathered is not None and found is not None
    assert "postfix" not in gathered
    assert all("postfix" not in r for r in [*gathered["forwards"], *gathered["notices"]])
    for row in (*found["forwards"], *found["notices"]):
        del row["postfix"]
    del found["postfix"]
    assert gathered == found
    assert [c["maildrop_deferrals"] for c in gathered["forwards"]] == [2]
    assert trace.gather(logged, "SWunknown") is None


def test_a_notice_about_no_known_message(logged: psycopg.Connection[Any],
                                         config: Config) -> None:
    _deferred_once_then_delivered(logged, messages.Notice(
        "o" * 64, None, f"acme@{D}", "edi@acme.example", "dsn", f"<SWNorphan@{D}>"),
        ORPHAN_Q)
    for ident in (ORPHAN_Q, f"<SWNorphan@{D}>"):
        found = trace.find(logged, config, ident)
        assert found is not None and found["id"] is None
        notice = found["notice"]
        assert (notice["kind"], notice["queue_id"], notice["maildrop_deferrals"]) == (
            "dsn", ORPHAN_Q, 1)
        assert notice["postfix"] == [
            {"to": f"acme@{D}", "relay": f"mail.{D}[/run/lmtp.sock]", "dsn": "4.2.1",
             "status": "deferred",
             "text": f"450 4.2.1 Maildrop of acme@{D} is in use, will retry"}]


@pytest.mark.usefixtures("logged")
@pytest.mark.parametrize("ident", ["SWunknown", "4fQXX00Aa0z1xQ", "<m1@acme.example >",
                                   "m1@acme.example", ""])
def test_an_unknown_id_is_none(logged: psycopg.Connection[Any], config: Config,
                               ident: str) -> None:
    assert trace.find(logged, config, ident) is None
