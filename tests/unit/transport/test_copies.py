"""Sending each copy exactly once (:mod:`singlewindow.transport.copies`): what a claim
already settled, how a refusal reads, the fault-injection points. The crash recovery
itself runs against real Postfix and Dovecot in tests/integration/test_faults.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from singlewindow import replies
from singlewindow.config import Config
from singlewindow.store import messages
from singlewindow.transport import copies
from singlewindow.transport.context import Context
from singlewindow.transport.forward import Injector


def claim(outcome: str, **fields: Any) -> messages.Claim:
    values: dict[str, Any] = dict(table="forward", row_id=1, copy_message_id="<c@sw.test>",
                                  outcome=outcome, state="pending", queue_id=None,
                                  refusal=None, since=0.0, attempt=1)
    return messages.Claim(**{**values, **fields})


@pytest.fixture
def ctx() -> Context:
    return Context(Config(), Injector("127.0.0.1", 1, "hub.sw.test"))


def never(*_: object) -> bytes:
    raise AssertionError("a settled copy is not built again")


ROUTE = copies.Route(sender="", physical="edi@acme.example", maildrop_login=None)


def test_a_copy_already_settled_is_not_sent_again(ctx: Context) -> None:
    conn = cast(Any, None)  # nothing is asked of the store
    done = claim("done", state="injected", queue_id="4fQ1")
    assert copies.deliver_once(ctx, conn, done, never, ROUTE) == copies.Sent(
        "4fQ1", None, fresh=False)
    refused = claim("done", state="refused", refusal="552 5.3.4 too big")
    assert copies.deliver_once(ctx, conn, refused, never, ROUTE) == copies.Sent(
        None, "552 5.3.4 too big", fresh=False)


def test_a_copy_another_attempt_holds_defers(ctx: Context) -> None:
    with pytest.raises(copies.Deferred) as caught:
        copies.deliver_once(ctx, cast(Any, None), claim("busy"), never, ROUTE)
    assert caught.value.reply == replies.COPY_IN_PROGRESS
    assert isinstance(caught.value, replies.ReplyError)
    assert (caught.value.lock, caught.value.remote) == (None, False)


@pytest.mark.parametrize("refusal,reply,text", [
    ("552 5.3.4 Message size exceeds fixed limit", replies.COPY_TOO_LARGE,
     "larger than the copy size Single Window may forward (Postfix: 552 5.3.4 Message"),
    ("550 5.1.1 no such user",
     replies.Reply(554, "5.1.1", replies.COPY_REFUSED.text, replies.COPY_REFUSED.key),
     "the copy was refused (Postfix: 550 5.1.1 no such user)"),
    ("garbled", replies.COPY_REFUSED, "the copy was refused (Postfix: garbled)"),
])
def test_a_refusal_reads_as_its_reply(refusal: str, reply: replies.Reply, text: str) -> None:
    assert copies.refusal_reply(refusal) == reply
    assert text in copies.refusal_text(refusal)


def test_a_refusal_text_is_one_short_line() -> None:
    shown = copies.refusal_text("554 5.7.1 " + "no\r\n" * 100)
    assert "\n" not in shown and len(shown) < 260


def test_a_fault_point_pauses_only_where_it_is_set(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    flag = tmp_path / "paused"
    monkeypatch.setattr(copies, "FAULT_FLAG", str(flag))
    monkeypatch.setattr(copies, "FAULT", "")
    copies.fault("after-inject", "forward")
    assert not flag.exists()
    monkeypatch.setattr(copies, "FAULT", "after-inject@notice_delivery:pause=0")
    copies.fault("after-inject", "forward")  # another table
    copies.fault("after-record", "notice_delivery")  # another point
    assert not flag.exists()
    copies.fault("after-inject", "notice_delivery")
    assert flag.exists()
    flag.unlink()
    monkeypatch.setattr(copies, "FAULT", "during-data:pause=0")  # any table
    copies.fault("during-data", "forward")
    assert flag.exists()
