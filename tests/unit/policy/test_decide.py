"""Policy decisions over a real database (no socket, no Postfix)."""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
import pytest
from tests.unit.parties import seed

from singlewindow import replies
from singlewindow.config import Policy
from singlewindow.policy import decide as policy
from singlewindow.policy.decide import END_OF_MESSAGE, Request
from singlewindow.store import snapshot

D = "sw.test"
REALM = "sw.test"


@pytest.fixture
def parties(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    return seed(conn)


def req(context: str, sender: str, client: str = "10.1.0.5", login: str = "",
        instance: str = "i1", recipient: str = f"customs@{D}") -> Request:
    return Request(context, client, sender, recipient, login, instance)


def eod(instance: str, sender: str = "clerk@bright.example", login: str = "bright"
        ) -> Request:
    """The end-of-DATA request (SMTPD_POLICY_README: no recipient, the same instance)."""
    return Request("msa", "10.1.0.5", sender, "", login, instance, END_OF_MESSAGE)


def decide(conn: psycopg.Connection[Any], request: Request, policy_: Policy, realm: str
           ) -> str:
    """The decision over a snapshot of the directory as it is now, and ``conn`` for the
    MSA's allowance."""
    return policy.decide(snapshot.load(conn), lambda: contextlib.nullcontext(conn), request,
                         policy_, realm)


def claims(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) AS n FROM msa_claim").fetchone()
    assert row is not None
    return int(row["n"])


def test_mta_registered_peer_own_sender(parties: psycopg.Connection[Any]) -> None:
    assert decide(parties, req("mta", "edi@acme.example"), Policy(), REALM) == "DUNNO"


def test_mta_sender_match_ignores_case(parties: psycopg.Connection[Any]) -> None:
    assert decide(parties, req("mta", "EDI@Acme.Example"), Policy(), REALM) == "DUNNO"


def test_mta_unknown_peer(parties: psycopg.Connection[Any]) -> None:
    got = decide(parties, req("mta", "edi@acme.example", client="10.2.0.1"), Policy(), REALM)
    assert got == "554 5.7.1 Your address is not registered with Single Window"


def test_mta_sender_of_another_party(parties: psycopg.Connection[Any]) -> None:
    got = decide(parties, req("mta", "in@customs.example"), Policy(), REALM)
    assert got == replies.SENDER_NOT_YOURS.line()
    assert got.startswith("553 5.7.1 ")


def test_mta_null_sender_from_registered_peer(parties: psycopg.Connection[Any]) -> None:
    assert decide(parties, req("mta", "", client="10.9.0.1"), Policy(), REALM) == "DUNNO"


def test_msa_own_sender_then_rate_limited(parties: psycopg.Connection[Any]) -> None:
    first = req("msa", "clerk@bright.example", login="bright", instance="a")
    assert decide(parties, first, Policy(), REALM) == "DUNNO"
    # Same message, second recipient or repeated query: nothing charged at RCPT.
    again = req("msa", "clerk@bright.example", login="bright", instance="a",
                recipient=f"acme@{D}")
    assert decide(parties, again, Policy(), REALM) == "DUNNO"
    assert claims(parties) == 0
    # Charged once the message is in, once however often Postfix asks.
    assert decide(parties, eod("a"), Policy(), REALM) == "DUNNO"
    assert decide(parties, eod("a"), Policy(), REALM) == "DUNNO"
    assert claims(parties) == 1
    second = req("msa", "clerk@bright.example", login="bright", instance="b")
    assert decide(parties, second, Policy(), REALM) == replies.RATE_LIMITED.line()
    assert decide(parties, second, Policy(msa_rate_limit=2), REALM) == "DUNNO"


def test_msa_refused_or_abandoned_recipients_cost_nothing(
        parties: psycopg.Connection[Any]) -> None:
    """A clerk's mistyped recipient (Postfix answers 550 after the policy's DUNNO) and a
    transaction given up after RCPT: no end of DATA, so no charge (issue 12)."""
    for instance in ("typo", "rset", "quit"):
        typo = req("msa", "clerk@bright.example", login="bright", instance=instance,
                   recipient=f"custms@{D}")
        assert decide(parties, typo, Policy(), REALM) == "DUNNO"
    assert claims(parties) == 0
    ok = req("msa", "clerk@bright.example", login="bright", instance="sent")
    assert decide(parties, ok, Policy(), REALM) == "DUNNO"
    assert decide(parties, eod("sent"), Policy(), REALM) == "DUNNO"


def test_msa_second_message_refused_at_end_of_data(parties: psycopg.Connection[Any]) -> None:
    """Two transactions pass RCPT together; the one that ends second is over the limit."""
    for instance in ("a", "b"):
        rcpt = req("msa", "clerk@bright.example", login="bright", instance=instance)
        assert decide(parties, rcpt, Policy(), REALM) == "DUNNO"
    assert decide(parties, eod("a"), Policy(), REALM) == "DUNNO"
    assert decide(parties, eod("b"), Policy(), REALM) == replies.RATE_LIMITED.line()
    assert claims(parties) == 1


def test_msa_only_the_end_of_data_charges_and_checks_the_sender_again(
        parties: psycopg.Connection[Any]) -> None:
    rcpt = req("msa", "clerk@bright.example", login="bright", instance="x")
    assert decide(parties, rcpt, Policy(), REALM) == "DUNNO"
    assert claims(parties) == 0
    got = decide(parties, eod("x", sender="edi@acme.example"), Policy(), REALM)
    assert got == replies.SENDER_NOT_YOURS.line()
    assert decide(parties, eod("x", login=""), Policy(), REALM) == \
        replies.AUTH_REQUIRED.line()
    assert claims(parties) == 0
    assert decide(parties, eod("x"), Policy(), REALM) == "DUNNO"
    assert claims(parties) == 1


def test_msa_window_expires(parties: psycopg.Connection[Any]) -> None:
    assert decide(parties, eod("a"), Policy(), REALM) == "DUNNO"
    parties.execute("UPDATE msa_claim SET claimed_at = now() - interval '61 seconds'")
    second = req("msa", "clerk@bright.example", login="bright", instance="b")
    assert decide(parties, second, Policy(), REALM) == "DUNNO"
    assert decide(parties, eod("b"), Policy(), REALM) == "DUNNO"
    assert claims(parties) == 1


def test_msa_sender_not_the_logins(parties: psycopg.Connection[Any]) -> None:
    got = decide(parties, req("msa", "edi@acme.example", login="bright"), Policy(), REALM)
    assert got == replies.SENDER_NOT_YOURS.line()
    # A refused sender does not use up the rate limit.
    ok = req("msa", "clerk@bright.example", login="bright", instance="z")
    assert decide(parties, ok, Policy(), REALM) == "DUNNO"


def test_msa_without_login_or_unknown_login(parties: psycopg.Connection[Any]) -> None:
    assert decide(parties, req("msa", "clerk@bright.example"), Policy(), REALM) == \
        replies.AUTH_REQUIRED.line()
    assert decide(parties, req("msa", "clerk@bright.example", login="ghost"), Policy(),
                  REALM) == replies.LOGIN_UNKNOWN.line()


def test_msa_digest_md5_login_with_realm(parties: psycopg.Connection[Any]) -> None:
    got = decide(parties, req("msa", "clerk@bright.example", login="bright@sw.test"),
                 Policy(), REALM)
    assert got == "DUNNO"


def test_unknown_context_defers(parties: psycopg.Connection[Any]) -> None:
    got = decide(parties, req("", "edi@acme.example"), Policy(), REALM)
    assert got.startswith("451 4.3.5")


def test_end_of_data_request_is_told_apart_by_postfixs_protocol_state() -> None:
    attrs = {"policy_context": "msa", "protocol_state": "END-OF-MESSAGE", "recipient": "",
             "recipient_count": "1", "sender": "clerk@bright.example",
             "sasl_username": "bright", "instance": "2f47.6b0adad0.69f4.0"}
    assert Request.from_attrs(attrs).protocol_state == END_OF_MESSAGE
    # A request without the attribute never charges the allowance.
    del attrs["protocol_state"]
    assert Request.from_attrs(attrs).protocol_state != END_OF_MESSAGE
