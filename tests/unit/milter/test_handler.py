"""Whole milter conversations through pymilter's TestCtx, over the real store.

TestCtx stands in for libmilter: it calls the same module-level callbacks that
``Milter.runmilter`` registers, with the macros we give it, and records the actions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import Milter
import psycopg
import pytest
from Milter import testctx

from singlewindow.config import Config, Database
from singlewindow.milter import handler
from singlewindow.milter.server import MilterService
from singlewindow.origin import HEADER, verify
from singlewindow.store import directory
from tests.unit import parties

D = "sw.test"
#: The protocol steps an MTA can skip or leave unanswered (SMFIP_NR_*): left out of what
#: our TestCtx offers, because TestCtx stops a conversation at the first NOREPLY.
NO_REPLY_BITS = (Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT
                 | Milter.P_NR_DATA | Milter.P_NR_UNKN | Milter.P_NR_EOH | Milter.P_NR_BODY
                 | Milter.P_NR_HDR)


class Ctx(testctx.TestCtx):  # type: ignore[misc]  # pymilter ships no types
    """TestCtx that passes RCPT TO parameters and records every header edit."""

    def __init__(self) -> None:
        super().__init__()
        self.added: list[tuple[str, str, int]] = []
        self.changed: list[tuple[str, int, str | None]] = []

    def addheader(self, field: str, value: str, idx: int) -> None:
        assert self._body is not None, "addheader outside eom"
        self.added.append((field, value, idx))

    def chgheader(self, field: str, idx: int, value: str | None) -> None:
        assert self._body is not None, "chgheader outside eom"
        self.changed.append((field, idx, value))

    def _envrcpt(self, *args: str) -> int:
        self._stage = Milter.M_ENVRCPT
        rc: int = self._priv.envrcpt(*args)
        self._stage = None
        return rc

    def message(self, *, listener: str, ip: str, sender: str,
                rcpts: list[tuple[str, ...]], headers: list[tuple[str, str]] = [],  # noqa: B006
                auth: str = "", queue_id: str = "4XyZ1", connect: bool = True) -> int:
        """One transaction (after a new connection unless ``connect`` is False)."""
        self._setsymval("{daemon_name}", listener)
        self._setsymval("{auth_authen}", auth)
        self._setsymval("i", queue_id)
        if connect:
            assert self._connect(host="client.example", helo="client.example", ip=ip) == \
                Milter.CONTINUE
        self._body = None
        for step in (lambda: self._envfrom(sender),
                     *(lambda r=r: self._envrcpt(*r) for r in rcpts),
                     self._data,
                     *(lambda h=h: self._header(*h) for h in headers),
                     self._eoh):
            assert step() == Milter.CONTINUE
        self.added.clear()
        self.changed.clear()
        self._delrcpt.clear()
        self._addrcpt.clear()
        self._envfromchanged = False
        self._reply = None
        rc: int = self._eom()
        return rc


@pytest.fixture
def store(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    parties.seed(conn)
    directory.add_party(conn, "harbour", "agency", ["10.9.0.2/32"], "127.0.0.1:2603")
    directory.add_address(conn, f"harbour@{D}", "harbour", "in@harbour.example", None, D)
    return conn


#: The origin stamp's MAC key in these tests (the daemons read it from its file).
KEY = b"k" * 32


def _serve(monkeypatch: pytest.MonkeyPatch, config: Config) -> Iterator[Ctx]:
    offered = [Milter.CURR_ACTS, 0x1FFFFF & ~NO_REPLY_BITS, 0, 0]
    monkeypatch.setattr(testctx.TestCtx, "default_opts", offered)
    service = MilterService(config)
    # No start(): the first look-up loads the directory (or fails: the store is down).
    monkeypatch.setattr(Milter, "factory", handler.factory(service.directory, D, KEY))
    try:
        yield Ctx()
    finally:
        service.close()


@pytest.fixture
def ctx(monkeypatch: pytest.MonkeyPatch, database_config: Config,
        store: psycopg.Connection[Any]) -> Iterator[Ctx]:
    yield from _serve(monkeypatch, database_config)


@pytest.fixture
def ctx_store_down(monkeypatch: pytest.MonkeyPatch, database_config: Config) -> Iterator[Ctx]:
    down = Database(conninfo="host=/nonexistent/sw dbname=singlewindow", connect_timeout=1)
    yield from _serve(monkeypatch, replace(database_config, database=down))


def our_header(ctx: Ctx) -> str:
    assert [(f, i) for f, _, i in ctx.added] == [(HEADER, -1)]
    return ctx.added[0][1]


def test_mta_submission(ctx: Ctx) -> None:
    rc = ctx.message(
        listener="mta", ip="10.1.0.5", sender="<edi@acme.example>",
        rcpts=[("<customs@sw.test>",),
               ("<harbour@sw.test>", "ORCPT=rfc822;Harbour@sw.test")],
        headers=[("From", "edi@acme.example"),
                 (HEADER, "id=SWforged; listener=msa; party=customs; peer=1.1.1.1; "
                          "login=x; queue=-"),
                 ("Subject", "declaration"),
                 (HEADER.lower(), "party=customs")])
    assert rc == Milter.ACCEPT
    assert ctx._reply is None
    # Both recipients come back with NOTIFY forced and ORCPT kept (or made).
    assert ctx._delrcpt == ["<customs@sw.test>", "<harbour@sw.test>"]
    assert ctx._addrcpt == [
        ("<customs@sw.test>", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;customs@sw.test"),
        ("<harbour@sw.test>", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Harbour@sw.test"),
    ]
    # Both forged copies removed, last first; ours added once.
    assert ctx.changed == [(HEADER, 2, None), (HEADER, 1, None)]
    origin = verify(our_header(ctx), KEY)
    assert (origin.listener, origin.party, origin.peer, origin.login, origin.queue_id) == \
        ("mta", "acme", "10.1.0.5", "", "4XyZ1")
    assert origin.message_id.startswith("SW")
    # The envelope sender becomes the logical address.
    assert ctx._envfromchanged
    assert ctx._sender == "<acme@sw.test>"


def test_msa_submission_with_login(ctx: Ctx) -> None:
    rc = ctx.message(listener="msa", ip="192.0.2.7", auth="bright",
                     sender="<clerk@bright.example>",
                     rcpts=[("<customs@sw.test>", "NOTIFY=NEVER")])
    assert rc == Milter.ACCEPT
    assert ctx._sender == "<bright@sw.test>"
    assert ctx._addrcpt == [
        ("<customs@sw.test>", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;customs@sw.test")]
    assert ctx.changed == []
    origin = verify(our_header(ctx), KEY)
    assert (origin.listener, origin.party, origin.peer, origin.login) == \
        ("msa", "bright", "192.0.2.7", "bright")


def test_null_sender_stays_null(ctx: Ctx) -> None:
    rc = ctx.message(listener="mta", ip="10.9.0.1", sender="<>", rcpts=[("<acme@sw.test>",)])
    assert rc == Milter.ACCEPT
    assert not ctx._envfromchanged
    assert verify(our_header(ctx), KEY).party == "customs"
    assert ctx._delrcpt == ["<acme@sw.test>"]


def test_unknown_sender_is_rejected(ctx: Ctx) -> None:
    rc = ctx.message(listener="mta", ip="10.1.0.5", sender="<who@else.example>",
                     rcpts=[("<customs@sw.test>",)])
    assert rc == Milter.REJECT
    assert ctx._reply == ("554", "5.7.1", "Sender address is not registered with Single Window")
    assert (ctx.added, ctx.changed, ctx._addrcpt, ctx._delrcpt) == ([], [], [], [])
    assert not ctx._envfromchanged


def test_unknown_listener_is_deferred(ctx: Ctx) -> None:
    rc = ctx.message(listener="mail.sw.test", ip="10.1.0.5", sender="<edi@acme.example>",
                     rcpts=[("<customs@sw.test>",)])
    assert rc == Milter.TEMPFAIL
    assert ctx._reply is not None
    assert ctx._reply[:2] == ("451", "4.3.5")


def test_store_down_is_deferred(ctx_store_down: Ctx) -> None:
    rc = ctx_store_down.message(listener="mta", ip="10.1.0.5", sender="<edi@acme.example>",
                                rcpts=[("<customs@sw.test>",)])
    assert rc == Milter.TEMPFAIL
    assert ctx_store_down._reply == (
        "451", "4.3.0", "Single Window is temporarily unable to accept this")
    assert ctx_store_down.added == []


def test_second_transaction_starts_clean(ctx: Ctx) -> None:
    ctx.message(listener="mta", ip="10.1.0.5", sender="<edi@acme.example>",
                rcpts=[("<customs@sw.test>",)], headers=[(HEADER, "forged")])
    assert ctx.changed == [(HEADER, 1, None)]
    first = verify(our_header(ctx), KEY)
    ctx.message(listener="mta", ip="10.1.0.5", sender="<edi@acme.example>",
                rcpts=[("<harbour@sw.test>",)], connect=False)
    assert ctx.changed == []
    assert ctx._delrcpt == ["<harbour@sw.test>"]
    second = verify(our_header(ctx), KEY)
    assert second.message_id != first.message_id


def no_lookup() -> Any:
    pytest.fail("negotiation must not touch the store")


class MacroLists:
    """The libmilter context of a negotiation: records the macro lists asked for."""

    def __init__(self) -> None:
        self.lists: dict[int, str] = {}

    def setsymlist(self, stage: int, macros: str) -> None:
        self.lists[stage] = macros

    def setpriv(self, milter: object) -> None:
        pass


def test_negotiation_asks_for_our_actions_and_skips_replies() -> None:
    milter = handler.SubmissionMilter(no_lookup, D, KEY)
    lists = MacroLists()
    milter._setctx(lists)
    opts = [Milter.CURR_ACTS, 0x1FFFFF, 0, 0]
    assert milter.negotiate(opts) == Milter.CONTINUE
    assert opts[0] == handler.ACTIONS
    # Issue 13: Postfix skips every step the milter does not read, and waits for no
    # reply to the steps it only records.
    for bit in (Milter.P_NR_CONN, Milter.P_NR_MAIL, Milter.P_NR_RCPT, Milter.P_NR_HDR,
                Milter.P_NOHELO, Milter.P_NOBODY, Milter.P_NODATA, Milter.P_NOEOH,
                Milter.P_NOUNKNOWN):
        assert opts[1] & bit, hex(bit)
    for bit in (Milter.P_NOCONNECT, Milter.P_NOMAIL, Milter.P_NORCPT, Milter.P_NOHDRS):
        assert not opts[1] & bit, hex(bit)
    # ... and sends only the macros each step reads.
    assert lists.lists == {Milter.M_CONNECT: "{daemon_name}", Milter.M_ENVFROM: "{auth_authen}",
                           Milter.M_EOM: "i"}


def test_negotiation_refuses_an_mta_without_addrcpt_par() -> None:
    milter = handler.SubmissionMilter(no_lookup, D, KEY)
    milter._setctx(None)
    opts = [Milter.CURR_ACTS & ~Milter.ADDRCPT_PAR, 0x1FFFFF, 0, 0]
    assert milter.negotiate(opts) == Milter.REJECT


@pytest.mark.parametrize("header", [("Auto-Submitted", "auto-replied"),
                                    ("auto-submitted", "Auto-Generated"),
                                    ("Content-Type", "multipart/report; "
                                     "report-type=delivery-status; boundary=x"),
                                    ("X-SingleWindow-Notice", "control SW1")])
def test_automatic_message_recipients_are_readded_with_notify_never(
        ctx: Ctx, header: tuple[str, str]) -> None:
    # Issue 12: the RCPT as the command filter rewrote it, then an automatic message.
    rc = ctx.message(listener="mta", ip="10.1.0.5", sender="<edi@acme.example>",
                     rcpts=[("<customs@sw.test>", "NOTIFY=SUCCESS,FAILURE")],
                     headers=[("From", "edi@acme.example"), header])
    assert rc == Milter.ACCEPT
    assert ctx._delrcpt == ["<customs@sw.test>"]
    assert ctx._addrcpt == [("<customs@sw.test>", "NOTIFY=NEVER ORCPT=rfc822;customs@sw.test")]


def test_only_the_transaction_marked_automatic_gets_notify_never(ctx: Ctx) -> None:
    automatic = ctx.message(listener="mta", ip="10.1.0.5", sender="<edi@acme.example>",
                            rcpts=[("<customs@sw.test>", "NOTIFY=SUCCESS,FAILURE")],
                            headers=[("Auto-Submitted", "auto-replied")])
    assert automatic == Milter.ACCEPT
    assert ctx._addrcpt == [("<customs@sw.test>", "NOTIFY=NEVER ORCPT=rfc822;customs@sw.test")]
    # The next transaction on the connection: "Auto-Submitted: no" is a person's message.
    assert ctx.message(listener="mta", ip="10.1.0.5", sender="<edi@acme.example>",
                       rcpts=[("<customs@sw.test>", "NOTIFY=SUCCESS,FAILURE")],
                       headers=[("Auto-Submitted", "no")], connect=False) == Milter.ACCEPT
    assert ctx._delrcpt == [] and ctx._addrcpt == []
    assert ctx.message(listener="mta", ip="10.1.0.5", sender="<edi@acme.example>",
                       rcpts=[("<customs@sw.test>",)], connect=False) == Milter.ACCEPT
    assert ctx._addrcpt == [
        ("<customs@sw.test>", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;customs@sw.test")]
