"""The console tests' small world: an MTA company (acme), a mail-client company (bright)
and an agency (customs) from tests/unit/parties.py, logins for each, and messages made
with the store's own functions; the fixtures that build it are in conftest.py."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool
from starlette.testclient import TestClient

from singlewindow import passwords
from singlewindow.config import Config
from singlewindow.console import app as appmod
from singlewindow.store import messages
from tests.unit.parties import D

PASSWORD = "correct horse battery"
#: Acme (an MTA company: edi@acme.example) submits to customs (an agency); bright (a
#: mail client company) submits a message the MIG found errors in; customs answers acme.
SW_A = "SW20261130170000000aaaa0001"
SW_B = "SW20261130170500000bbbb0002"
SW_C = "SW20261130171000000cccc0003"
SW_R = "SW20261130172000000dddd0004"
#: What a company must never see: the agency's physical address, its MTA's host name and
#: address, the submitting peer's address.
AGENCY_PHYSICAL = "in@customs.example"
AGENCY_HOST = "mx.customs.example"
AGENCY_IP = "10.9.0.7"
PEER_IP = "10.1.0.5"
MAILLOG = (
    f"Nov 30 17:00:01 hub postfix/smtp[41]: QC1: to=<{AGENCY_PHYSICAL}>, "
    f"relay={AGENCY_HOST}[{AGENCY_IP}]:25, delay=0.2, delays=0/0/0/0.1, dsn=2.0.0, "
    f"status=sent (250 2.0.0 Ok: queued as 77 by {AGENCY_HOST}[{AGENCY_IP}])\n")


@functools.cache
def strong_hash() -> str:
    return passwords.strong_hash(PASSWORD)


@dataclass
class World:
    conn: psycopg.Connection[Any]
    config: Config
    pool: ConnectionPool[Any]

    def client(self, source: str = "192.0.2.1", config: Config | None = None) -> TestClient:
        app = appmod.create_app(config or self.config, self.pool)
        return TestClient(app, base_url="https://testserver", client=(source, 50000),
                          follow_redirects=False)

    def logged_in(self, login: str, source: str = "192.0.2.1") -> tuple[TestClient, str]:
        """A client with a session (by the API) and its CSRF token."""
        client = self.client(source)
        answer = client.post("/api/session", json={"login": login, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return client, answer.json()["csrf"]


def received(conn: psycopg.Connection[Any], swid: str, party: str, sender: str,
             subject: str, **kw: Any) -> None:
    fields = {"listener": "mta", "sasl_login": None, "peer_address": PEER_IP,
              "header_message_id": f"<{swid.lower()}@{party}.example>",
              "queue_id": "Q" + swid[-4:], **kw}
    messages.record_message(conn, messages.Received(
        id=swid, party=party, envelope_from=sender, payload_sha256="0" * 64,
        subject=subject, **fields))


def make_messages(conn: psycopg.Connection[Any]) -> None:
    paxlst = "PAXLST-D05B"
    # SW_A: acme -> customs, forwarded, the agency's DSN back, a DSN to acme, a response.
    received(conn, SW_A, "acme", "edi@acme.example", "Flight LH400 passengers")
    messages.record_outcome(conn, SW_A, f"customs@{D}", "250 2.0.0",
                            f"Delivered to Single Window as {SW_A}", message_type=paxlst)
    claim = messages.claim_forward(conn, messages.Forward(
        SW_A, f"customs@{D}", f"customs@{D}", AGENCY_PHYSICAL, f"<{SW_A}.cust@{D}>"), 60)
    messages.mark_injected(conn, claim, "QC1")
    messages.event(conn, SW_A, "agency-dsn", {"digest": "d1", "recipients": [
        {"recipient": AGENCY_PHYSICAL, "action": "delivered", "status": "2.0.0",
         "diagnostic": f"smtp; 250 ok from {AGENCY_HOST}[{AGENCY_IP}]"}]})
    notice = messages.claim_notice(conn, messages.Notice(
        "n" * 64, SW_A, "edi@acme.example", "edi@acme.example", "dsn",
        f"<{SW_A}.dsn@{D}>"), 60)
    messages.mark_injected(conn, notice, "QN1")
    # SW_B: bright's message with MIG errors: a control message, not forwarded.
    received(conn, SW_B, "bright", "clerk@bright.example", "Crew list", listener="msa",
             sasl_login="bright", peer_address="127.0.0.1")
    messages.record_outcome(conn, SW_B, f"customs@{D}", "250 2.0.0",
                            f"Delivered to Single Window as {SW_B}; not forwarded",
                            message_type=paxlst)
    claim = messages.claim_forward(conn, messages.Forward(
        SW_B, "*control*", "clerk@bright.example", "clerk@bright.example",
        f"<{SW_B}.control@{D}>"), 60)
    messages.mark_injected(conn, claim, "QCTL")
    messages.event(conn, SW_B, "control-message", {"message_type": paxlst,
                                                   "queue_id": "QCTL", "errors": [
        {"code": "SW-2", "class": "2", "rule": "BGM-1", "text": "BGM is missing",
         "place": "segment 2 UNH"}]})
    # SW_C: acme's second, refused by customs' MTA for good.
    received(conn, SW_C, "acme", "edi@acme.example", "Cargo manifest")
    messages.record_outcome(conn, SW_C, f"customs@{D}", "550 5.1.1",
                            f"Not forwarded: <{AGENCY_PHYSICAL}> unknown at "
                            f"{AGENCY_HOST}[{AGENCY_IP}]")
    # SW_R: customs answers SW_A's copy.
    received(conn, SW_R, "customs", AGENCY_PHYSICAL, "Re: Flight LH400 passengers",
             peer_address="10.9.0.1", in_reply_to=f"<{SW_A}.cust@{D}>")
    messages.record_outcome(conn, SW_R, f"acme@{D}", "250 2.0.0",
                            f"Delivered to Single Window as {SW_R}")


def orphan_notice(conn: psycopg.Connection[Any]) -> None:
    """A DSN notice about no known message, injected as queue id ``QORPH`` (its
    Message-ID ``<SWNorphan@sw.test>``)."""
    notice = messages.claim_notice(conn, messages.Notice(
        "u" * 64, None, "edi@acme.example", "edi@acme.example", "dsn", "<SWNorphan@sw.test>"),
        60)
    messages.mark_injected(conn, notice, "QORPH")
