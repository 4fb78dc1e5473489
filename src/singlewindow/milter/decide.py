"""End-of-message decisions of the milter: plain functions, no libmilter.

Given what the milter collected during one SMTP transaction (:class:`Facts`) and a
:class:`Directory` to look parties and addresses up in, :func:`decide` returns either the
edits to make (:class:`Edits`) or a :class:`Refusal`. The policy daemon has already
checked peer, login and sender at RCPT time; the milter looks them up again because it
needs the logical address and the party name, and refuses when the store changed since.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from singlewindow import automatic, replies
from singlewindow.identity import MSA, Refusal, identify, login_of
from singlewindow.origin import Origin, new_message_id
from singlewindow.store.directory import Address, Party
from singlewindow.store.snapshot import Lookups

#: RFC 3461 4.1: the NOTIFY value Single Window enforces on every recipient (SPEC R5.2).
NOTIFY = ("SUCCESS", "FAILURE")
#: RFC 3461 4.1: what an automatic message's recipients get (:mod:`singlewindow.automatic`):
#: no DSN in answer to a DSN, a notice or an auto-reply (RFC 3834 2, RFC 5321 4.5.5).
NOTIFY_NEVER = ("NEVER",)


def bare(address: str) -> str:
    """The address of a MAIL FROM / RCPT TO argument without its ``<>`` (RFC 5321 4.1.2)."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


def xtext(text: str) -> str:
    """RFC 3461 4: ``+``, ``=`` and anything outside ``!``..``~`` as ``+HH``."""
    out = []
    for byte in text.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def esmtp_params(params: tuple[str, ...] | list[str]) -> dict[str, str | None]:
    """``NAME=VALUE`` words (RFC 5321 4.1.2 esmtp-param) keyed by upper-case name."""
    result: dict[str, str | None] = {}
    for word in params:
        name, sep, value = word.partition("=")
        result.setdefault(name.strip().upper(), value if sep else None)
    return result


@dataclass(frozen=True, slots=True)
class Recipient:
    """One RCPT TO as the client gave it."""

    #: The argument exactly as libmilter passed it (``<a@b>``): what delrcpt must match.
    raw: str
    #: The client's ORCPT parameter value (RFC 3461 4.2), still xtext-encoded, if any.
    orcpt: str | None = None
    #: The client's NOTIFY parameter value (RFC 3461 4.1), if any.
    notify: str | None = None

    @classmethod
    def from_callback(cls, raw: str, params: tuple[str, ...] | list[str]) -> Recipient:
        found = esmtp_params(params)
        return cls(raw, found.get("ORCPT"), found.get("NOTIFY"))

    @property
    def address(self) -> str:
        return bare(self.raw)

    def needs_notify(self, notify: tuple[str, ...] = NOTIFY) -> bool:
        """False when the client already asked for exactly ``notify``.

        Such a recipient is left alone: Postfix's cleanup keeps a duplicate filter keyed on
        (ORCPT, NOTIFY, recipient) that delrcpt does not clear (cleanup_milter.c), so
        re-adding an identical recipient would be dropped as a duplicate of the deleted one.
        NOTIFY=NEVER differs from the SUCCESS,FAILURE the command filter writes into every
        RCPT, so an automatic message's recipients are re-added.
        """
        if self.notify is None:
            return True
        asked = {word.strip().upper() for word in self.notify.split(",")}
        return asked != set(notify)

    def readd_params(self, notify: tuple[str, ...] = NOTIFY) -> str:
        """ESMTP parameters for SMFIR_ADDRCPT_PAR, space separated (Postfix ≥ 3.0).

        The ORCPT keeps the address the client typed in the DSN's Original-Recipient
        (RFC 3464 2.3.1); without one from the client, it is the recipient itself.
        """
        orcpt = self.orcpt if self.orcpt else "rfc822;" + xtext(self.address)
        return f"NOTIFY={','.join(notify)} ORCPT={orcpt}"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the milter collected during one mail transaction."""

    #: ``{daemon_name}``: which listener (``mta`` or ``msa``).
    listener: str
    #: The client's IP address (xxfi_connect hostaddr).
    peer: str
    #: ``{auth_authen}`` at MAIL FROM: the SASL login, empty on the MTA.
    auth_authen: str
    #: MAIL FROM argument as given (``<a@b>``, ``<>`` for the null sender).
    sender: str
    recipients: tuple[Recipient, ...]
    #: How many copies of the origin header the client wrote.
    origin_headers: int
    #: ``i``: the Postfix queue id at end of message.
    queue_id: str
    #: The first ``Auto-Submitted`` header's value (RFC 3834), if any.
    auto_submitted: str | None = None
    #: The first ``Content-Type`` header's value, if any.
    content_type: str | None = None
    #: The first Single Window notice header's value, if any (a notice sent back).
    notice: str | None = None

    def automatic(self) -> str | None:
        """Why no DSN may answer this message (:mod:`singlewindow.automatic`), or None."""
        return automatic.reason(null_sender=not bare(self.sender),
                                auto_submitted=self.auto_submitted,
                                content_type=self.content_type, notice=self.notice)


@dataclass(frozen=True, slots=True)
class Edits:
    """What to change at end of message."""

    origin: Origin
    #: New MAIL FROM argument (``<logical>``), or None to keep the null sender.
    sender: str | None
    #: Recipients to delete and add back with :meth:`Recipient.readd_params` (``notify``).
    recipients: tuple[Recipient, ...]
    #: Client copies of the origin header to delete.
    forged_headers: int
    #: The NOTIFY the recipients get: SUCCESS,FAILURE, or NEVER for an automatic message.
    notify: tuple[str, ...] = NOTIFY
    #: Why the message is automatic (for the log), or None.
    automatic: str | None = None

    def header_deletions(self) -> list[int]:
        """chgheader indices (1-based per header name), highest first.

        Deleting from the last copy backwards removes every copy whether the MTA renumbers
        the remaining copies after a deletion (Postfix) or not (Sendmail).
        """
        return list(range(self.forged_headers, 0, -1))


class Directory(Protocol):
    """The three lookups the decision needs."""

    def address_of_physical(self, physical: str) -> Address | None: ...

    def party_of_peer(self, peer: str) -> Party | None: ...

    def party_of_login(self, login: str) -> Party | None: ...


class SnapshotDirectory:
    """:class:`Directory` over the process's in-memory directory (no statement; a miss
    first checks for a newer directory, :mod:`singlewindow.store.snapshot`)."""

    def __init__(self, where: Lookups) -> None:
        self.where = where

    def address_of_physical(self, physical: str) -> Address | None:
        return self.where.find_physical(physical)

    def party_of_peer(self, peer: str) -> Party | None:
        return self.where.party_by_peer(peer)

    def party_of_login(self, login: str) -> Party | None:
        return self.where.party_by_login(login)


def decide(facts: Facts, where: Directory, realm: str,
           new_id: Callable[[], str] = new_message_id) -> Edits | Refusal:
    """The end-of-message decision for one transaction."""
    login = ""
    if facts.listener == MSA:
        if not facts.auth_authen:
            return Refusal(replies.POLICY_MISCONFIGURED,
                           "msa listener sent no {auth_authen}: check milter_mail_macros")
        login = login_of(facts.auth_authen, realm)
    party = identify(facts.listener, facts.peer, login, where.party_of_peer,
                     where.party_of_login)
    if isinstance(party, Refusal):
        return party

    sender = bare(facts.sender)
    new_sender: str | None = None
    if sender:
        address = where.address_of_physical(sender)
        if address is None:
            return Refusal(replies.MILTER_SENDER_UNKNOWN, f"sender <{sender}> is unknown")
        if address.party.id != party.id:
            return Refusal(replies.MILTER_SENDER_NOT_YOURS,
                           f"sender <{sender}> is {address.party.name}'s, "
                           f"the {facts.listener} client is {party.name}")
        new_sender = f"<{address.logical}>"
    elif facts.listener == MSA:
        return Refusal(replies.MILTER_NULL_SENDER, "null sender on the msa listener")
    # else: the null sender of a DSN from a registered MTA (RFC 5321 4.5.5) stays null:
    # a DSN must never cause another one.

    origin = Origin(message_id=new_id(), listener=facts.listener, party=party.name,
                    peer=facts.peer, login=login, queue_id=facts.queue_id)
    why = facts.automatic()
    notify = NOTIFY_NEVER if why else NOTIFY
    seen: set[str] = set()
    readd = []
    for rcpt in facts.recipients:
        # The same RCPT TO twice: one delrcpt removes both records, so add it back once.
        if rcpt.raw in seen or not rcpt.needs_notify(notify):
            continue
        seen.add(rcpt.raw)
        readd.append(rcpt)
    return Edits(origin=origin, sender=new_sender, recipients=tuple(readd),
                 forged_headers=facts.origin_headers, notify=notify, automatic=why)
