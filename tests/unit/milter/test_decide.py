"""End-of-message decisions over a fake directory (no libmilter, no database)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from singlewindow import replies
from singlewindow.identity import Refusal
from singlewindow.milter.decide import (
    Edits,
    Facts,
    Recipient,
    bare,
    decide,
    esmtp_params,
    xtext,
)
from singlewindow.origin import Origin
from singlewindow.store.directory import Address, Party

ACME = Party(1, "acme", "company", "127.0.0.1", 2601)
BRIGHT = Party(2, "bright", "company", None, None)
CUSTOMS = Party(3, "customs", "agency", "127.0.0.1", 2602)
ADDRESSES = {
    "edi@acme.example": Address(1, "acme@sw.test", "edi@acme.example", ACME, None, True),
    "clerk@bright.example": Address(2, "bright@sw.test", "clerk@bright.example", BRIGHT,
                                    "bright", True),
    "in@customs.example": Address(3, "customs@sw.test", "in@customs.example", CUSTOMS,
                                  None, True),
}


class FakeDirectory:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def address_of_physical(self, physical: str) -> Address | None:
        self.asked.append(physical)
        return ADDRESSES.get(physical.lower())

    def party_of_peer(self, peer: str) -> Party | None:
        return {"10.1.0.5": ACME, "10.9.0.1": CUSTOMS}.get(peer)

    def party_of_login(self, login: str) -> Party | None:
        return {"bright": BRIGHT}.get(login)


MTA_FACTS = Facts(
    listener="mta", peer="10.1.0.5", auth_authen="", sender="<edi@acme.example>",
    recipients=(Recipient("<customs@sw.test>"),), origin_headers=0, queue_id="4XyZ1")


def run(facts: Facts) -> Edits | Refusal:
    return decide(facts, FakeDirectory(), "sw.test", new_id=lambda: "SW1")


def edits(facts: Facts) -> Edits:
    got = run(facts)
    assert isinstance(got, Edits), got
    return got


def refusal(facts: Facts) -> replies.Reply:
    got = run(facts)
    assert isinstance(got, Refusal), got
    return got.reply


def test_mta_stamp_and_logical_sender() -> None:
    got = edits(MTA_FACTS)
    assert got.origin == Origin("SW1", "mta", "acme", "10.1.0.5", "", "4XyZ1")
    assert got.sender == "<acme@sw.test>"
    assert got.origin.header_value() == (
        "id=SW1; listener=mta; party=acme; peer=10.1.0.5; login=-; queue=4XyZ1")


def test_sender_lookup_keeps_the_clients_case_for_the_store() -> None:
    # The store lower-cases; the decision passes the bare address through.
    where = FakeDirectory()
    decide(replace(MTA_FACTS, sender="<EDI@Acme.Example>"), where, "sw.test")
    assert where.asked == ["EDI@Acme.Example"]


def test_notify_absent_is_forced_with_orcpt_of_the_recipient() -> None:
    got = edits(replace(MTA_FACTS, recipients=(
        Recipient.from_callback("<customs@sw.test>", ()),
        Recipient.from_callback("<harbour@sw.test>", ("ORCPT=rfc822;Harbour@sw.test",)),
    )))
    assert [(r.raw, r.readd_params()) for r in got.recipients] == [
        ("<customs@sw.test>", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;customs@sw.test"),
        ("<harbour@sw.test>", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Harbour@sw.test"),
    ]


@pytest.mark.parametrize("notify", ["NEVER", "FAILURE", "SUCCESS", "DELAY,FAILURE"])
def test_other_notify_values_are_overridden(notify: str) -> None:
    rcpt = Recipient.from_callback("<customs@sw.test>", (f"NOTIFY={notify}",))
    assert edits(replace(MTA_FACTS, recipients=(rcpt,))).recipients == (rcpt,)


def test_notify_already_success_failure_is_left_alone() -> None:
    # Re-adding it unchanged would hit Postfix's duplicate filter (see needs_notify).
    rcpt = Recipient.from_callback("<customs@sw.test>", ("notify=failure,Success",))
    assert edits(replace(MTA_FACTS, recipients=(rcpt,))).recipients == ()


def test_a_recipient_given_twice_is_readded_once() -> None:
    rcpt = Recipient("<customs@sw.test>")
    assert edits(replace(MTA_FACTS, recipients=(rcpt, rcpt))).recipients == (rcpt,)


def test_forged_headers_deleted_last_first() -> None:
    got = edits(replace(MTA_FACTS, origin_headers=3))
    assert got.header_deletions() == [3, 2, 1]
    assert edits(MTA_FACTS).header_deletions() == []


def test_null_sender_from_a_registered_mta_stays_null() -> None:
    got = edits(replace(MTA_FACTS, peer="10.9.0.1", sender="<>"))
    assert got.sender is None
    assert got.origin.party == "customs"


def test_msa_login_names_the_party() -> None:
    facts = replace(MTA_FACTS, listener="msa", peer="192.0.2.7", auth_authen="bright",
                    sender="<clerk@bright.example>")
    got = edits(facts)
    assert got.sender == "<bright@sw.test>"
    assert got.origin == Origin("SW1", "msa", "bright", "192.0.2.7", "bright", "4XyZ1")


def test_msa_digest_md5_login_with_realm() -> None:
    facts = replace(MTA_FACTS, listener="msa", auth_authen="bright@sw.test",
                    sender="<clerk@bright.example>")
    assert edits(facts).origin.login == "bright"


def test_unknown_sender_is_refused() -> None:
    reply = refusal(replace(MTA_FACTS, sender="<who@else.example>"))
    assert reply == replies.MILTER_SENDER_UNKNOWN
    assert reply.line() == "554 5.7.1 Sender address is not registered with Single Window"


def test_sender_of_another_party_is_refused() -> None:
    assert refusal(replace(MTA_FACTS, sender="<in@customs.example>")) == \
        replies.MILTER_SENDER_NOT_YOURS
    msa = replace(MTA_FACTS, listener="msa", auth_authen="bright")
    assert refusal(msa) == replies.MILTER_SENDER_NOT_YOURS


def test_unknown_peer_and_login_are_refused() -> None:
    assert refusal(replace(MTA_FACTS, peer="10.2.0.1")) == replies.PEER_UNKNOWN
    msa = replace(MTA_FACTS, listener="msa", auth_authen="gone",
                  sender="<clerk@bright.example>")
    assert refusal(msa) == replies.LOGIN_UNKNOWN


def test_msa_null_sender_is_refused() -> None:
    msa = replace(MTA_FACTS, listener="msa", auth_authen="bright", sender="<>")
    assert refusal(msa) == replies.MILTER_NULL_SENDER


@pytest.mark.parametrize("listener", ["", "mail.sw.test", "reinject"])
def test_unknown_listener_defers_as_misconfigured(listener: str) -> None:
    reply = refusal(replace(MTA_FACTS, listener=listener))
    assert reply.line().startswith("451 4.3.5 ")


def test_msa_without_auth_macro_defers_as_misconfigured() -> None:
    msa = replace(MTA_FACTS, listener="msa", sender="<clerk@bright.example>")
    assert refusal(msa) == replies.POLICY_MISCONFIGURED


def test_helpers() -> None:
    assert bare(" <a@b> ") == "a@b"
    assert bare("<>") == ""
    assert xtext("a+b=c d@sw.test") == "a+2Bb+3Dc+20d@sw.test"
    assert esmtp_params(["orcpt=rfc822;x", "NOTIFY=NEVER", "SMTPUTF8"]) == {
        "ORCPT": "rfc822;x", "NOTIFY": "NEVER", "SMTPUTF8": None}


@pytest.mark.parametrize("facts", [
    replace(MTA_FACTS, auto_submitted="auto-replied"),
    replace(MTA_FACTS, content_type="multipart/report; report-type=delivery-status"),
    replace(MTA_FACTS, notice="control SW2026"),
    replace(MTA_FACTS, sender="<>"),
])
def test_automatic_message_recipients_get_notify_never(facts: Facts) -> None:
    # Issue 12: no DSN answers a DSN, a notice or an auto-reply. The command filter wrote
    # SUCCESS,FAILURE into the RCPT; NEVER differs, so the recipient is re-added.
    rcpt = Recipient.from_callback("<customs@sw.test>", ("NOTIFY=SUCCESS,FAILURE",))
    got = edits(replace(facts, recipients=(rcpt,)))
    assert got.automatic is not None
    assert [(r.raw, r.readd_params(got.notify)) for r in got.recipients] == [
        ("<customs@sw.test>", "NOTIFY=NEVER ORCPT=rfc822;customs@sw.test")]


def test_auto_submitted_no_keeps_success_and_failure() -> None:
    rcpt = Recipient.from_callback("<customs@sw.test>", ("NOTIFY=SUCCESS,FAILURE",))
    got = edits(replace(MTA_FACTS, auto_submitted="no", recipients=(rcpt,)))
    assert got.automatic is None and got.recipients == ()
