"""Who submitted a message: the listener kinds, the login, and the refusals when nobody is.

Below both the RCPT-time policy (:mod:`singlewindow.policy.decide`) and the end-of-message
milter (:mod:`singlewindow.milter.decide`): each names the submitting party the same way,
the MTA listener by the client's address (SPEC R1.3), the MSA listener by its SASL login
(SPEC R2.3), and refuses with the same reply when neither names one. The milter looks
again because the store may have changed since RCPT time. Plain functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from singlewindow import replies
from singlewindow.store.directory import Party

#: The public listeners, as Postfix names them in master.cf: the policy daemon receives
#: the name as ``policy_context``, the milter as ``{daemon_name}``
#: (``milter_macro_daemon_name``), and the origin stamp records it.
MTA = "mta"
MSA = "msa"
LISTENERS = (MTA, MSA)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A decision not to take a message, and why."""

    reply: replies.Reply
    #: For the log: what exactly was wrong (may name addresses; never sent to the client).
    why: str


def login_of(sasl_username: str, realm: str) -> str:
    """The account login: Dovecot may report ``login@realm`` for DIGEST-MD5 (RFC 2831)."""
    suffix = "@" + realm
    return sasl_username[: -len(suffix)] if sasl_username.endswith(suffix) else sasl_username


def identify(listener: str, peer: str, login: str,
             party_by_peer: Callable[[str], Party | None],
             party_by_login: Callable[[str], Party | None]) -> Party | Refusal:
    """The submitting party on ``listener``, or the refusal when none is known.

    On the MTA the peer address names the party, on the MSA the login (already
    :func:`login_of`); a listener Single Window does not know is a configuration fault on
    this side (master.cf), deferred rather than refused.
    """
    if listener == MTA:
        party = party_by_peer(peer)
        if party is None:
            return Refusal(replies.PEER_UNKNOWN, f"peer {peer} is no party's")
        return party
    if listener == MSA:
        party = party_by_login(login)
        if party is None:
            return Refusal(replies.LOGIN_UNKNOWN, f"login {login!r} has no account")
        return party
    return Refusal(replies.POLICY_MISCONFIGURED,
                   f"unknown listener {listener!r}: check policy_context and "
                   "milter_macro_daemon_name in master.cf")
