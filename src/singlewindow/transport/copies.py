"""Each copy the hub sends, sent exactly once (SPEC D4, issue 10), and its crash recovery.

Every path of the router (:mod:`.submission`, :mod:`.agency_report`, :mod:`.generated`)
claims a copy in the store, then hands it to :func:`deliver_once`: it re-injects the copy
into Postfix (:mod:`.forward`) or saves it in a maildrop, locally with dovecot-lda
(:mod:`.maildrop`) or on the POP3 backend (:mod:`.hop`), and marks the claim. A copy that
an interrupted attempt already committed is found in its receiver's log
(:mod:`.evidence`, :func:`sent_before`) and recorded, not sent again. What a recipient
must wait for raises :class:`Deferred`, which the router answers (:mod:`.router`).

Everything here is blocking and runs in the router's worker threads.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from singlewindow import replies
from singlewindow.replies import Reply, ReplyError
from singlewindow.store import messages
from singlewindow.transport import evidence, maildrop, translate
from singlewindow.transport.context import Context
from singlewindow.transport.forward import InjectError, Refused

log = logging.getLogger("sw-transport")

Conn = psycopg.Connection[Any]
#: An event recorded with a claim's mark: (Single Window id, kind, detail).
Event = tuple[str, str, dict[str, Any]]
#: A recipient's outcome recorded with a claim's mark: (id, recipient, status, text).
Outcome = tuple[str, str, str, str]

#: Test-only fault injection (SPEC D4 crash tests): kill this process with SIGKILL at one
#: step of a copy's delivery: ``before-claim``, ``during-data`` (half the copy sent to
#: Postfix), ``after-inject`` (Postfix answered 250, nothing recorded yet) or
#: ``after-record``. ``POINT@TABLE`` fires only for copies of submissions (``forward``) or
#: for generated mail (``notice_delivery``); ``POINT:pause=SECONDS`` pauses there instead,
#: after creating the file named by ``SW_TRANSPORT_FAULT_FLAG``. Never set in production.
FAULT = os.environ.get("SW_TRANSPORT_FAULT", "")
FAULT_FLAG = os.environ.get("SW_TRANSPORT_FAULT_FLAG", "")


class Deferred(ReplyError):
    """This recipient must wait (e.g. its maildrop is locked); Postfix retries."""

    def __init__(self, reply: Reply, lock: Path | None = None, remote: bool = False) -> None:
        super().__init__(reply)
        self.lock = lock
        """The maildrop lock that held it: retried as soon as that is gone (D6)."""
        self.remote = remote
        """A POP3 session held the maildrop on the backend (the maildrop hop): retried
        on a timer (:meth:`.retry.Retrier.retry_later`)."""


@dataclass(frozen=True, slots=True)
class Sent:
    """How a claimed copy ended in this attempt."""

    queue_id: str | None
    refusal: str | None
    """Postfix's permanent refusal as recorded, e.g. ``552 5.3.4 ...``."""
    fresh: bool
    """This attempt sent it (or found the proof that an interrupted one did)."""
    recovered: bool = False
    outcome_recorded: bool = False
    """The recipient's outcome went with the mark."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where and how a claimed copy goes."""

    sender: str
    """The envelope sender: the submitter's, or ``""`` for the hub's own mail."""
    physical: str
    maildrop_login: str | None
    envid: str | None = None
    notify: str = "NEVER"
    orcpt: str | None = None


def recovered(conn: Conn, claim: messages.Claim, queue_id: str,
              on_sent: Callable[[str, bool], Event] | None,
              outcome: Outcome | None, proof: str) -> Sent:
    """A copy an interrupted attempt already committed (``proof`` says how we know):
    recorded as sent, not sent again."""
    messages.mark_injected(conn, claim, queue_id,
                           on_sent(queue_id, True) if on_sent else None, outcome)
    log.warning("copy %s was committed by an interrupted attempt (%s, %s); not sent again",
                claim.copy_message_id, queue_id, proof)
    return Sent(queue_id, None, fresh=True, recovered=True,
                outcome_recorded=outcome is not None)


def deliver_once(ctx: Context, conn: Conn, claim: messages.Claim,
                 build: Callable[[], bytes | translate.Copy], route: Route, *,
                 on_sent: Callable[[str, bool], Event] | None = None,
                 outcome: Outcome | None = None) -> Sent:
    """Send the claimed copy unless it went out already (SPEC D4, issue 10).

    A copy counts as sent on proof that its receiver committed it: the 250 Postfix
    gave this attempt, dovecot-lda's success, or — for a copy an interrupted attempt
    left pending — the receiver's log (:mod:`.evidence`). A claim another attempt
    still holds defers; a permanent refusal is recorded and never retried.
    ``on_sent(queue_id, recovered)`` names the event recorded with the mark, and
    ``outcome`` a recipient's outcome recorded with it (:func:`messages.mark_injected`).

    The claim was just taken with a full lease: when the copy is built within a
    quarter of it, the lease is not renewed (one statement less), and the copy is
    still sent within half of it.
    """
    entered = time.monotonic()
    if claim.outcome == "done":
        return Sent(claim.queue_id, claim.refusal, fresh=False)
    if claim.outcome == "busy":
        raise Deferred(replies.COPY_IN_PROGRESS)
    if claim.outcome == "retry":
        found = sent_before(ctx, route.maildrop_login, claim)
        if found is not None:
            return recovered(conn, claim, found, on_sent, outcome, "the receiver's log")
    data = build()
    # Building a copy (or, for a streamed one, encoding it while it is sent) takes a
    # while: the lease counts from here, and the end of DATA is not sent after half of
    # it, so it never commits outside the lease.
    started = time.monotonic()
    if started - entered > ctx.lease / 4:
        if not messages.renew(conn, claim, ctx.lease):
            raise Deferred(replies.COPY_IN_PROGRESS)
    else:
        started = entered
    deadline = started + ctx.lease / 2
    if route.maildrop_login:
        if not _to_maildrop(ctx, conn, claim, route.maildrop_login, route.sender, data,
                            deadline):
            return recovered(conn, claim, "maildrop", on_sent, outcome,
                             "the maildrop backend's log")
        queue_id = "maildrop"
    else:
        injected = _inject(ctx, conn, claim, route, data, deadline)
        if isinstance(injected, Sent):
            return injected
        queue_id = injected
    fault("after-inject", claim.table)
    messages.mark_injected(conn, claim, queue_id,
                           on_sent(queue_id, False) if on_sent else None, outcome)
    fault("after-record", claim.table)
    return Sent(queue_id, None, fresh=True, outcome_recorded=outcome is not None)


def _to_maildrop(ctx: Context, conn: Conn, claim: messages.Claim, login: str, sender: str,
                 data: bytes | translate.Copy, deadline: float) -> bool:
    """Save the copy in ``login``'s maildrop: True once saved now, False when the backend
    found an interrupted attempt's save; a maildrop that cannot take it now defers."""
    config = ctx.config
    if ctx.hop is not None:
        # The backend looks for an interrupted attempt's copy itself (XSINCE).
        reply = ctx.hop.deliver(login, sender, data,
                                since=claim.since if claim.outcome == "retry" else None,
                                deadline=deadline)
    else:
        reply = maildrop.deliver(config.transport.dovecot_lda, config.dovecot_config,
                                 config.paths.maildrop_dir, login, sender, bytes(data))
    if reply.code != 250:
        # dovecot-lda exits 0 only after the save; any other end may still have
        # saved it, which the log tells the next attempt (a retry looks first).
        locked = reply == replies.MAILDROP_LOCKED
        if locked:  # each wait for a POP3 session shows in trace (issue 14)
            messages.release_locked(conn, claim, login, reply.enhanced)
        else:
            messages.release(conn, claim)
        lock = maildrop.lock_path(config.paths.maildrop_dir, login) \
            if locked and ctx.hop is None else None
        raise Deferred(reply, lock, remote=locked and ctx.hop is not None)
    return reply != replies.MAILDROP_SAVED_BEFORE


def _inject(ctx: Context, conn: Conn, claim: messages.Claim, route: Route,
            data: bytes | translate.Copy, deadline: float) -> str | Sent:
    """Re-inject the copy into Postfix: its queue id, or how a permanent refusal ended."""
    try:
        return ctx.injector.send(
            route.sender, route.physical, data, envid=route.envid, notify=route.notify,
            orcpt=route.orcpt, deadline=deadline,
            checkpoint=lambda point: fault(point, claim.table))
    except Refused as refusal:
        messages.mark_refused(conn, claim, refusal.reply)
        log.error("copy %s refused by Postfix: %s", claim.copy_message_id, refusal)
        return Sent(None, refusal.reply, fresh=True)
    except InjectError as exc:
        if not exc.uncertain:
            messages.release(conn, claim)
        raise


def sent_before(ctx: Context, maildrop_login: str | None, claim: messages.Claim
                ) -> str | None:
    """The queue id (or "maildrop") of a copy an interrupted attempt committed.
    None for a maildrop on the backend: its log is there, and the backend looks it
    up when the retry says XSINCE (:mod:`.backend`)."""
    if maildrop_login and ctx.hop is not None:
        return None
    if maildrop_login:
        saved = evidence.maildrop_saved(ctx.config.dovecot_log, claim.copy_message_id,
                                        claim.since)
        return "maildrop" if saved else None
    return evidence.postfix_committed(ctx.config.postfix_maillog, claim.copy_message_id,
                                      claim.since)


def refusal_reply(refusal: str) -> Reply:
    """The recipient's reply for a copy Postfix refused for good (as recorded)."""
    code, enhanced = _code_of(refusal)
    if code == 552 or enhanced == "5.3.4":
        return replies.COPY_TOO_LARGE
    if enhanced == "5.0.0":
        return replies.COPY_REFUSED
    return Reply(554, enhanced, replies.COPY_REFUSED.text, replies.COPY_REFUSED.key)


def refusal_text(refusal: str) -> str:
    """Why a copy was refused, in words the submitter reads."""
    shown = " ".join(refusal.split())[:200]
    if refusal_reply(refusal).enhanced == "5.3.4":
        return (f"the message as converted for the agency is larger than the copy size "
                f"Single Window may forward (Postfix: {shown})")
    return f"the copy was refused (Postfix: {shown})"


def _code_of(refusal: str) -> tuple[int, str]:
    """(code, enhanced code) of a refusal as recorded: ``552 5.3.4 text``."""
    parts = refusal.split()
    code = int(parts[0]) if parts and parts[0].isdigit() else 554
    enhanced = parts[1] if len(parts) > 1 and re.fullmatch(r"5\.\d+\.\d+", parts[1]) \
        else "5.0.0"
    return code, enhanced


def fault(point: str, table: str) -> None:
    """The test-only fault injection point ``point`` (:data:`FAULT`)."""
    if not FAULT:
        return
    where, _, action = FAULT.partition(":")
    if where not in (point, f"{point}@{table}"):
        return
    if action.startswith("pause="):
        log.warning("fault injection %s: pausing %s s", point, action[6:])
        if FAULT_FLAG:
            Path(FAULT_FLAG).touch()
        time.sleep(float(action[6:]))
        return
    log.warning("fault injection %s: killing myself", point)
    os.kill(os.getpid(), signal.SIGKILL)
