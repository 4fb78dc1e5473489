"""The pymilter adapter: collect the facts of a transaction, apply the decision at eom.

One :class:`SubmissionMilter` per SMTP connection (libmilter calls it from that
connection's thread). The callbacks before end of message only record; they are marked
no-reply, so Postfix does not wait for an answer to each (MILTER_README, "no reply").
HELO, DATA, end of headers, body chunks and unknown commands are not asked for at all
(pymilter's Base marks them no-callback: Postfix skips those steps), and each step
asks only for the macros it reads.
Everything that can fail happens in :meth:`SubmissionMilter.eom`, and every failure there
becomes a deferral (451), never an accept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar, cast

import Milter
import psycopg

from singlewindow import automatic, logs, replies
from singlewindow.identity import Refusal
from singlewindow.milter.decide import Directory, Edits, Facts, Recipient, decide
from singlewindow.origin import HEADER

log = logging.getLogger("sw-milter")

#: Actions negotiated with Postfix (smfi_register(3) xxfi_flags): add our header, delete
#: the client's, delete and re-add recipients with ESMTP parameters, change the sender;
#: and name the macros each step sends (smfi_setsymlist(3), Postfix >= 2.6).
ACTIONS = (Milter.ADDHDRS | Milter.CHGHDRS | Milter.ADDRCPT | Milter.ADDRCPT_PAR
           | Milter.DELRCPT | Milter.CHGFROM | Milter.SETSYMLIST)

#: Gives a :class:`Directory` for the duration of one decision (the in-memory directory).
DirectorySource = Callable[[], AbstractContextManager[Directory]]

_Callback = TypeVar("_Callback", bound=Callable[..., Any])

#: The macros each step reads (smfi_setsymlist(3)): Postfix sends these instead of its
#: whole milter_*_macros list at every step.
MACROS = {Milter.M_CONNECT: "{daemon_name}", Milter.M_ENVFROM: "{auth_authen}",
          Milter.M_EOM: "i"}

#: Headers whose first value the decision reads (:mod:`singlewindow.automatic`).
_WATCHED = frozenset({"auto-submitted", "content-type", automatic.NOTICE_HEADER.lower()})


def _noreply(func: _Callback) -> _Callback:
    # pymilter's decorator, typed: it keeps the signature and swaps CONTINUE for NOREPLY
    # when Postfix agreed to skip the reply.
    return cast(_Callback, Milter.noreply(func))


def _peer_ip(hostaddr: object) -> str:
    # pymilter passes (ip, port[, flow, scope]) for AF_INET/AF_INET6 and a path for AF_UNIX.
    if isinstance(hostaddr, tuple) and hostaddr:
        return str(hostaddr[0])
    return str(hostaddr)


class SubmissionMilter(Milter.Base):  # type: ignore[misc]  # pymilter ships no types
    """Collects one transaction at a time and applies :func:`decide` at eom."""

    def __init__(self, source: DirectorySource, realm: str, key: bytes) -> None:
        self.source = source
        self.realm = realm
        #: The origin stamp's MAC key (issue 12): the transport trusts only stamps it signs.
        self.key = key
        self.peer = ""
        self.listener = ""
        self._reset()

    def _reset(self) -> None:
        self.sender = ""
        self.auth_authen = ""
        self.recipients: list[Recipient] = []
        self.origin_headers = 0
        # The first of each: what decides whether the message is automatic.
        self.seen: dict[str, str] = {}

    # --- negotiation --------------------------------------------------------------------

    def negotiate(self, opts: list[int]) -> int:
        offered = opts[0]
        if offered & ACTIONS != ACTIONS:
            # An MTA that cannot re-add recipients with NOTIFY cannot run Single Window;
            # refusing makes Postfix apply milter_default_action (tempfail).
            log.error("MTA offers milter actions %#x, need %#x", offered, ACTIONS)
            return cast(int, Milter.REJECT)
        rc = cast(int, super().negotiate(opts))
        opts[0] = self._actions = ACTIONS
        # Directly, not with pymilter's @symlist: its Base.setsymlist hands libmilter
        # bytes where the extension takes str (pymilter 1.0.5), and fails.
        for stage, names in MACROS.items():
            self._ctx.setsymlist(stage, names)
        return rc

    # --- collecting ---------------------------------------------------------------------

    @_noreply
    def connect(self, hostname: str, family: int, hostaddr: object) -> int:
        self.peer = _peer_ip(hostaddr)
        self.listener = self.getsymval("{daemon_name}") or ""
        return cast(int, Milter.CONTINUE)

    @_noreply
    def envfrom(self, sender: str, *params: str) -> int:
        self._reset()  # a new transaction on the same connection
        self.sender = sender
        self.auth_authen = self.getsymval("{auth_authen}") or ""
        return cast(int, Milter.CONTINUE)

    @_noreply
    def envrcpt(self, recipient: str, *params: str) -> int:
        self.recipients.append(Recipient.from_callback(recipient, params))
        return cast(int, Milter.CONTINUE)

    @_noreply
    def header(self, name: str, value: str) -> int:
        key = name.lower()
        if key == HEADER.lower():
            self.origin_headers += 1
        elif key in _WATCHED:
            self.seen.setdefault(key, value)
        return cast(int, Milter.CONTINUE)

    def abort(self) -> int:
        self._reset()
        return cast(int, Milter.CONTINUE)

    # --- deciding -----------------------------------------------------------------------

    def facts(self) -> Facts:
        return Facts(listener=self.listener, peer=self.peer, auth_authen=self.auth_authen,
                     sender=self.sender, recipients=tuple(self.recipients),
                     origin_headers=self.origin_headers,
                     queue_id=self.getsymval("i") or "",
                     auto_submitted=self.seen.get("auto-submitted"),
                     content_type=self.seen.get("content-type"),
                     notice=self.seen.get(automatic.NOTICE_HEADER.lower()))

    def eom(self) -> int:
        facts: Facts | None = None
        try:
            facts = self.facts()
            with self.source() as where:
                verdict = decide(facts, where, self.realm)
            if isinstance(verdict, Refusal):
                logs.decision(log, "milter", sw_id=None, queue_id=facts.queue_id,
                              level=logging.WARNING, action="reject",
                              listener=facts.listener, peer=facts.peer,
                              sender=facts.sender, reply=verdict.reply.line(),
                              why=verdict.why)
                return self._reply(verdict.reply)
            self.apply(verdict)
        except psycopg.Error as exc:
            logs.decision(log, "milter", sw_id=None, queue_id=facts.queue_id if facts else None,
                          level=logging.ERROR, action="defer",
                          reply=replies.MILTER_TEMPFAIL.line(),
                          why=f"store unavailable: {exc.__class__.__name__}")
            return self._reply(replies.MILTER_TEMPFAIL)
        except Exception:
            log.exception("deferring queue=%s after an internal error",
                          facts.queue_id if facts else "-")
            return self._reply(replies.MILTER_TEMPFAIL)
        finally:
            self._reset()
        origin = verdict.origin
        logs.decision(log, "milter", sw_id=origin.message_id, queue_id=origin.queue_id,
                      action="accept", listener=origin.listener, party=origin.party,
                      peer=origin.peer, login=origin.login or None,
                      sender=verdict.sender or "<>", rcpts_renotified=len(verdict.recipients),
                      notify=",".join(verdict.notify),
                      forged_headers_removed=verdict.forged_headers,
                      automatic=verdict.automatic)
        return cast(int, Milter.ACCEPT)

    def apply(self, edits: Edits) -> None:
        """Make the edits through libmilter (only valid inside eom)."""
        for index in edits.header_deletions():
            self.chgheader(HEADER, index, None)
        self.addheader(HEADER, edits.origin.signed(self.key))
        if edits.sender is not None:
            self.chgfrom(edits.sender)
        for rcpt in edits.recipients:
            self.delrcpt(rcpt.raw)
            self.addrcpt(rcpt.raw, rcpt.readd_params(edits.notify))

    def _reply(self, reply: replies.Reply) -> int:
        self.setreply(str(reply.code), reply.enhanced, reply.text)
        return cast(int, Milter.TEMPFAIL if reply.transient else Milter.REJECT)


def factory(source: DirectorySource, realm: str, key: bytes
            ) -> Callable[[], SubmissionMilter]:
    """What ``Milter.factory`` calls once per SMTP connection."""
    def make() -> SubmissionMilter:
        return SubmissionMilter(source, realm, key)
    return make
