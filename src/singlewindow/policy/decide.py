"""RCPT-time and end-of-DATA decisions: may this client send this message? Plain
functions over the directory (an in-memory snapshot, :mod:`singlewindow.store.snapshot`:
no statement for an MTA request) and, for the MSA's allowance, the store.

SPEC F1 and R1.3/R2.3/R2.4. Each function returns a policy action: ``DUNNO`` (no
objection; the rest of Postfix's restrictions, e.g. the recipient table, still apply) or a
reply from :mod:`singlewindow.replies`. The listener is named by ``policy_context`` in
master.cf (``check_policy_service { ..., policy_context=mta }``), so a request cannot
claim to come from another listener; the stage by Postfix's own ``protocol_state``.
The MSA asks twice: at RCPT (who, which sender, is the party over its allowance) and at
the end of DATA, where an accepted message is charged (issue 12).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg

from singlewindow import replies
from singlewindow.config import Policy
from singlewindow.identity import MSA, Refusal, identify, login_of
from singlewindow.store.snapshot import Lookups

Conn = psycopg.Connection[Any]
#: A store connection for the MSA allowance, taken only when needed (a pooled one).
ConnSource = Callable[[], AbstractContextManager[Conn]]

#: ``protocol_state`` of a request from ``smtpd_end_of_data_restrictions``
#: (SMTPD_POLICY_README): the whole message is in, ``recipient`` is empty.
END_OF_MESSAGE = "END-OF-MESSAGE"


@dataclass(frozen=True, slots=True)
class Request:
    """The attributes of a policy request that the decisions use."""

    context: str
    client_address: str
    sender: str
    recipient: str
    sasl_username: str
    instance: str
    protocol_state: str = "RCPT"
    #: Postfix's queue id: it joins this decision to the Single Window id the milter
    #: gives the message (``smtpd_delay_open_until_valid_rcpt = no`` makes it known
    #: from the first RCPT on).
    queue_id: str = ""

    @classmethod
    def from_attrs(cls, attrs: dict[str, str]) -> Request:
        return cls(
            context=attrs.get("policy_context", ""),
            client_address=attrs.get("client_address", ""),
            sender=attrs.get("sender", ""),
            recipient=attrs.get("recipient", ""),
            sasl_username=attrs.get("sasl_username", ""),
            instance=attrs.get("instance", ""),
            protocol_state=attrs.get("protocol_state", ""),
            queue_id=attrs.get("queue_id", ""),
        )


def action(reply: replies.Reply) -> str:
    return reply.line()


def outcome(result: str) -> str:
    """A policy answer as the log and the metrics name it: accept, defer or reject."""
    if result == replies.POLICY_DUNNO:
        return "accept"
    return "defer" if result[:1] == "4" or result.upper().startswith("DEFER") else "reject"


def decide(where: Lookups, store: ConnSource, request: Request, policy: Policy,
           realm: str) -> str:
    if request.context == MSA:
        return decide_msa(where, store, request, policy, realm)
    return decide_mta(where, request)


def decide_mta(where: Lookups, request: Request) -> str:
    """I1: the peer IP names the party; the envelope sender must be one of its addresses.

    A request from a listener that is neither (``policy_context``) is deferred as a
    configuration fault (:func:`singlewindow.identity.identify`).
    """
    party = identify(request.context, request.client_address, "", where.party_by_peer,
                     where.party_by_login)
    if isinstance(party, Refusal):
        return action(party.reply)
    # The null sender (RFC 5321 4.5.5) is how an MTA returns a DSN, e.g. an agency's MTA
    # about a copy Single Window forwarded; it is allowed from a registered peer.
    if request.sender and not where.owns_physical(party, request.sender):
        return action(replies.SENDER_NOT_YOURS)
    return replies.POLICY_DUNNO


def decide_msa(where: Lookups, store: ConnSource, request: Request, policy: Policy,
               realm: str) -> str:
    """I2: the login names the party; its own sender only; at most N messages a window.

    The allowance is charged for an accepted message only, at the end of DATA: a clerk's
    mistyped recipient (550) or an abandoned transaction costs nothing (issue 12). At RCPT
    a party already at its limit is refused before it sends the message.
    """
    if not request.sasl_username:
        return action(replies.AUTH_REQUIRED)
    party = identify(MSA, request.client_address, login_of(request.sasl_username, realm),
                     where.party_by_peer, where.party_by_login)
    if isinstance(party, Refusal):
        return action(party.reply)
    if not request.sender or not where.owns_physical(party, request.sender):
        return action(replies.SENDER_NOT_YOURS)
    with store() as conn:
        if request.protocol_state == END_OF_MESSAGE:
            allowed = claim_submission(conn, party.id, request.instance, policy)
        else:
            allowed = not over_limit(conn, party.id, request.instance, policy)
    return replies.POLICY_DUNNO if allowed else action(replies.RATE_LIMITED)


def over_limit(conn: Conn, party_id: int, instance: str, policy: Policy) -> bool:
    """Has the party used its allowance for the window already? Charges nothing: a
    message claimed already (``instance``) does not count against itself."""
    row = conn.execute(
        "SELECT count(*) AS n FROM msa_claim WHERE party_id = %s AND instance <> %s"
        " AND claimed_at >= now() - %s::interval",
        (party_id, instance, f"{policy.msa_window_seconds} seconds")).fetchone()
    return row is not None and row["n"] >= policy.msa_rate_limit


#: First key of the advisory lock of MSA claims (any constant unused elsewhere; the
#: second key is the party's id).
_MSA_CLAIM_LOCK = 0x5357_4D43  # "SWMC"


def claim_submission(conn: Conn, party_id: int, instance: str, policy: Policy) -> bool:
    """Count this message against the party's MSA window, once; False when over the limit.

    Called at the end of DATA, once per message; should Postfix repeat the query, it has
    the same ``instance`` (one per mail transaction), so a message is claimed once. A
    transaction-scoped advisory lock per party serialises concurrent claims of one party
    across smtpd processes and nodes: of two messages ending at once, the second sees the
    first's claim (a row lock on party would need UPDATE on the directory, which the
    daemons' role does not have).
    """
    window = f"{policy.msa_window_seconds} seconds"
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s::integer, %s::integer)",
                     (_MSA_CLAIM_LOCK, party_id))
        if conn.execute("SELECT 1 FROM msa_claim WHERE instance = %s AND party_id = %s",
                        (instance, party_id)).fetchone():
            return True
        # Claims older than the window no longer count; drop them so the table stays small.
        conn.execute("DELETE FROM msa_claim WHERE party_id = %s"
                     " AND claimed_at < now() - %s::interval", (party_id, window))
        if over_limit(conn, party_id, instance, policy):
            return False
        conn.execute("INSERT INTO msa_claim (instance, party_id) VALUES (%s, %s)",
                     (instance, party_id))
        return True
