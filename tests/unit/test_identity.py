"""Who submitted a message: listener kinds, the login, the shared refusals (no database)."""

from __future__ import annotations

import pytest

from singlewindow import identity, origin, replies
from singlewindow.identity import MSA, MTA, Refusal, identify, login_of
from singlewindow.store.directory import Party

REALM = "sw.test"
ACME = Party(1, "acme", "company", "127.0.0.1", 2601)
BRIGHT = Party(2, "bright", "company", None, None)
PEERS = {"10.1.0.5": ACME}
LOGINS = {"bright": BRIGHT}


def who(listener: str, peer: str = "10.1.0.5", login: str = "bright") -> Party | Refusal:
    return identify(listener, peer, login, PEERS.get, LOGINS.get)


def test_listeners_are_postfixs_names_for_them() -> None:
    # master.cf's policy_context / milter_macro_daemon_name values, and the stamp's field.
    assert (MTA, MSA) == ("mta", "msa")
    assert identity.LISTENERS == (MTA, MSA)
    stamp = origin.Origin("SW1", MSA, "bright", "10.0.0.1", "bright", "Q1")
    assert origin.parse(stamp.header_value()).listener == "msa"


def test_login_of_strips_the_realm_only() -> None:
    assert login_of("bright@sw.test", REALM) == "bright"
    assert login_of("bright", REALM) == "bright"
    assert login_of("bright@other.test", REALM) == "bright@other.test"
    assert login_of("bright@sw.test.evil", REALM) == "bright@sw.test.evil"


def test_the_mta_names_the_party_by_its_peer_only() -> None:
    assert who(MTA) == ACME
    assert who(MTA, login="") == ACME
    unknown = who(MTA, peer="10.2.0.1")
    assert unknown == Refusal(replies.PEER_UNKNOWN, "peer 10.2.0.1 is no party's")
    assert unknown.reply.line() == \
        "554 5.7.1 Your address is not registered with Single Window"


def test_the_msa_names_the_party_by_its_login_only() -> None:
    assert who(MSA, peer="192.0.2.7") == BRIGHT
    unknown = who(MSA, login="ghost")
    assert unknown == Refusal(replies.LOGIN_UNKNOWN, "login 'ghost' has no account")
    assert unknown.reply.line() == "554 5.7.1 Your login is not registered with Single Window"


@pytest.mark.parametrize("listener", ["", "MTA", "smtp", "reinject", "internal"])
def test_an_unknown_listener_is_deferred_as_misconfigured(listener: str) -> None:
    got = who(listener)
    assert isinstance(got, Refusal)
    assert got.reply == replies.POLICY_MISCONFIGURED
    assert got.reply.line() == "451 4.3.5 Single Window is misconfigured, will retry"
    assert repr(listener) in got.why and "master.cf" in got.why
