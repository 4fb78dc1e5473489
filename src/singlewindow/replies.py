"""Every reply Single Window gives to Postfix, as named constants.

Policy actions (RCPT time), LMTP per-recipient statuses (after the queue) and the enhanced
status codes in them all come from here, so a reader sees in one place what a submitter can
be told. Enhanced status codes are RFC 3463 (class.subject.detail); reply codes are
RFC 5321 section 4.2 and RFC 2033 section 4.2 (LMTP: one reply per accepted recipient).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP/LMTP reply: basic code, enhanced code and the human sentence."""

    code: int
    enhanced: str
    text: str
    #: Why a recipient was refused, as one kebab-case word (SPEC R5.3's ten reasons and
    #: the refusals Single Window added): the ``reason`` label of
    #: ``singlewindow_dsn_failures_total``, recorded with the outcome (migration 0011).
    #: Empty for replies that refuse no recipient.
    key: str = ""

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    def line(self) -> str:
        """The reply as one wire line without CRLF, e.g. ``554 5.7.1 text``."""
        return f"{self.code} {self.enhanced} {self.text}"

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.enhanced, text, self.key)


# --- Postfix policy delegation actions (access(5) actions, SMTPD_POLICY_README) ----------
# "DUNNO": no decision here, let the rest of smtpd_recipient_restrictions decide
# (access(5) "DUNNO"). Used when the policy has no objection.
POLICY_DUNNO = "DUNNO"

# I1 (SPEC R1.3): the peer IP is in no party's peer networks (:mod:`singlewindow.identity`;
# the policy at RCPT, the milter at end of message). 554 = transaction failed
# (RFC 5321 4.2.3); 5.7.1 = delivery not authorized (RFC 3463 3.8).
PEER_UNKNOWN = Reply(554, "5.7.1", "Your address is not registered with Single Window")

# I1/I2: the envelope sender is not one of the identified party's physical addresses.
# 553 = mailbox name not allowed (RFC 5321 4.2.3); 5.7.1 = not authorized (RFC 3463 3.8).
SENDER_NOT_YOURS = Reply(553, "5.7.1", "Sender address is not registered for your party")

# I2: an MSA submission without SASL login (Postfix should have refused it already).
# 5.7.0 = other security status (RFC 3463 3.8).
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")

# I2 (SPEC R2.4): more submissions in the window than allowed. 450 = mailbox unavailable,
# try later (RFC 5321 4.2.3); 4.7.1 = delivery not authorized, transient (RFC 3463 3.8).
RATE_LIMITED = Reply(450, "4.7.1", "Submission rate limit reached, try again later")

# The store is unreachable or failed: defer, never accept blindly, never reject.
# 451 = local error in processing (RFC 5321 4.2.3); 4.3.0 = other mail system status.
STORE_UNAVAILABLE = Reply(451, "4.3.0", "Single Window is temporarily unable to decide")


# --- LMTP per-recipient statuses from the routing transport (RFC 2033 4.2) ---------------
DELIVERED = Reply(250, "2.0.0", "Delivered to Single Window")

# SPEC R5.3, the ten failure reasons. The text is what the submitter reads in the DSN.
# 1. 5.6.1 = media not supported (RFC 3463 3.7)
UNSUPPORTED_CONTENT_TYPE = Reply(554, "5.6.1", "Unsupported Content-Type",
                                 key="unsupported-content-type")
# 2. 5.6.0 = other or undefined media error (RFC 3463 3.7)
NO_BODY_PART = Reply(554, "5.6.0", "The message has no body part", key="no-body-part")
# 3.
MULTIPLE_BODY_PARTS = Reply(554, "5.6.0", "The message has more than one body part",
                            key="multiple-body-parts")
# 4.
INVALID_ENCODING = Reply(554, "5.6.0", "Invalid Base64 or quoted-printable encoding",
                         key="invalid-encoding")
# 5.
EIGHT_BIT_IN_7BIT = Reply(554, "5.6.0", "8-bit bytes in a part declared 7bit",
                          key="eight-bit-in-7bit")
# 6. an encoding Single Window cannot decode: 5.6.1 media not supported (RFC 3463 3.7)
UNKNOWN_TRANSFER_ENCODING = Reply(554, "5.6.1", "Unknown Content-Transfer-Encoding",
                                  key="unknown-transfer-encoding")
# 7.
UNPARSABLE_MULTIPART = Reply(554, "5.6.0", "A multipart MIME part cannot be parsed",
                             key="unparsable-multipart")
# 8. 5.1.0 = other address status (RFC 3463 3.2)
UNKNOWN_ADDRESS = Reply(554, "5.1.0", "An address in the message is unknown to Single Window",
                        key="unknown-address")
# 8, refined (issue 12): an address in From, Sender or Reply-To is known to Single Window
# but belongs to another party than the submitter. Reason #8 names the header; the code is
# #9's 5.7.1 (delivery not authorized, RFC 3463 3.8), as for an envelope sender that is
# not the party's own (SENDER_NOT_YOURS): the address exists, the submitter may not use it.
HEADER_SENDER_NOT_YOURS = Reply(554, "5.7.1", "An address in From, Sender or Reply-To is "
                                "not one of your addresses",
                                key="address-not-yours")
# 9. 5.7.1 = delivery not authorized, message refused (RFC 3463 3.8)
UNAUTHORISED_LINK = Reply(554, "5.7.1", "This link is not authorised", key="unauthorised-link")
# Issue 12: a delivery report (RFC 3464) from a party's MTA that is about no copy Single
# Window sent to that party (its ENVID and returned Message-ID name none, or one sent to
# another party): refused, never forwarded nor recorded on any message but the reporter's
# own. Closest to #9: 5.7.1 = delivery not authorized, message refused (RFC 3463 3.8).
REPORT_UNMATCHED = Reply(554, "5.7.1", "This delivery report is about no message Single "
                         "Window sent to your party; not forwarded",
                         key="report-unmatched")
# 10. 5.2.1 = mailbox disabled, not accepting messages (RFC 3463 3.3)
ADDRESS_NOT_ACTIVATED = Reply(554, "5.2.1", "The logical address is not yet activated",
                              key="address-not-activated")

# SPEC R6.1 when the envelope sender is null (RFC 5321 4.5.5): a control message cannot be
# sent, so the recipient fails and the reply names the MIG errors. 554 = transaction
# failed (RFC 5321 4.2.3); 5.6.0 = other or undefined media error (RFC 3463 3.7): the
# content breaks the message rules.
MIG_ERRORS_NULL_SENDER = Reply(554, "5.6.0", "Not forwarded: the message breaks the MIG",
                               key="mig-errors")

# A transient failure (store, re-injection listener, disk): Postfix keeps the message and
# retries. 451 = local error in processing (RFC 5321 4.2.3); 4.3.0 = other or undefined
# mail system status (RFC 3463 3.5).
INTERNAL_ERROR = Reply(451, "4.3.0", "Temporary failure in Single Window, will retry")
# SPEC D4: another attempt (e.g. one Postfix gave up waiting for) holds the claim on a copy
# of this message and may be sending it; this one must not. 4.3.0 (RFC 3463 3.5).
COPY_IN_PROGRESS = Reply(451, "4.3.0", "A copy of this message is being sent by another "
                         "attempt, will retry")
# Issue 10: Postfix refused a copy for good. The message as converted for the agency is
# larger than Single Window may forward: 5.3.4 = message too big for system (RFC 3463
# 3.4); 554 = transaction failed (RFC 5321 4.2.3), as for the R5.3 reasons.
COPY_TOO_LARGE = Reply(554, "5.3.4", "The converted message is too large to forward",
                       key="copy-too-large")
# Issue 12: the submission has made more hops than ``transport.hop_limit`` (a loop through
# Single Window, e.g. a party that sends every copy back). 5.4.6 = routing loop detected
# (RFC 3463 3.5); 554 = transaction failed (RFC 5321 4.2.3). The text names the count.
ROUTING_LOOP = Reply(554, "5.4.6", "Routing loop detected", key="routing-loop")
# Any other permanent refusal of a copy; the text quotes Postfix. 5.3.0 = other mail
# system status (RFC 3463 3.4).
COPY_REFUSED = Reply(554, "5.3.0", "A copy of the message was refused", key="copy-refused")
# Any other failure (issue 10): an input or a bug that a retry cannot cure, so the
# recipient fails at once instead of waiting in the queue for its lifetime; the operator
# has the traceback. 554 = transaction failed (RFC 5321 4.2.3); 5.3.0 = other or undefined
# mail system status, permanent (RFC 3463 3.5).
CANNOT_PROCESS = Reply(554, "5.3.0", "Single Window cannot process this message",
                       key="cannot-process")
# Issue 12: the origin stamp did not verify (no MAC, a wrong one, two stamps, malformed):
# the message did not come through the milter, so nobody vouches for its sender. 5.7.1 =
# delivery not authorized, message refused (RFC 3463 3.8). Nothing is forwarded.
STAMP_REFUSED = Reply(554, "5.7.1",
                      "Refused: the message's origin stamp is not Single Window's",
                      key="stamp-refused")
# SPEC R3.2/D6: a POP3 session holds the maildrop. 4.2.1 = mailbox disabled, transient
# (RFC 3463 3.3): Postfix retries after the session ends.
MAILDROP_LOCKED = Reply(450, "4.2.1", "Maildrop is in use by a POP3 session, will retry")
# Delivery into a POP3 maildrop failed (dovecot-lda, the disk): Postfix retries. The text
# may reach a DSN, so it names no path, login or dovecot-lda output (issue 12; the log
# has them). 451 / 4.3.0 as INTERNAL_ERROR (RFC 5321 4.2.3, RFC 3463 3.5).
MAILDROP_FAILED = Reply(451, "4.3.0", "Delivery into the POP3 maildrop failed, will retry")

# --- the maildrop hop (issue 15): an edge's transport and the backend's sw-maildrop ------
# The backend held a delivery ``[maildrop] lock_wait`` seconds while a POP3 session held
# the maildrop (RFC 2033 4.2, per recipient): 451 = local error, try later (RFC 5321
# 4.2.3), 4.2.1 as MAILDROP_LOCKED (RFC 3463 3.3), whose text it keeps.
MAILDROP_BUSY = Reply(451, "4.2.1", MAILDROP_LOCKED.text)
# The backend found that an interrupted attempt had saved this copy already (dovecot-lda's
# log, asked because the edge sent XSINCE): success, nothing saved twice (SPEC D4).
MAILDROP_SAVED_BEFORE = Reply(250, "2.0.0", "Already saved into the maildrop")
# A connection from an address not in ``[maildrop] clients``: 554 = transaction failed
# (RFC 5321 4.2.3, the greeting's refusal, 3.1), 5.7.1 = not authorized (RFC 3463 3.8).
MAILDROP_CLIENT_REFUSED = Reply(554, "5.7.1",
                                "Your address may not deliver to the maildrop service")
# MAIL before STARTTLS on the maildrop service: 530 5.7.0 (RFC 3207 4, RFC 3463 3.8).
STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
# A recipient that is no maildrop login (``LOGIN@maildrop``, see transport/backend.py):
# 550 = mailbox unavailable, 5.1.1 = bad destination mailbox (RFC 3463 3.2).
MAILDROP_NO_LOGIN = Reply(550, "5.1.1", "No such maildrop")
# The edge could not hand a maildrop delivery to the backend (no connection, TLS refused,
# any answer but success or a held maildrop): the transport defers. 4.4.1 = no answer
# from host (RFC 3463 3.5); the text names no host: it may reach a DSN (the log has it).
MAILDROP_HOP_FAILED = Reply(451, "4.4.1",
                            "The maildrop backend did not take the message, will retry")

# I2 (SPEC R2.3): the SASL login has no account (deleted while the session was open;
# :mod:`singlewindow.identity`, the policy and the milter).
LOGIN_UNKNOWN = Reply(554, "5.7.1", "Your login is not registered with Single Window")
# A policy request or a message from a listener Single Window does not know
# (``policy_context``, the milter's ``{daemon_name}``), or an MSA message without the
# milter's ``{auth_authen}``: master.cf or its macro lists are wrong. A configuration
# error on this side, so defer (RFC 3463 3.5, 4.3.5 system incorrectly configured).
POLICY_MISCONFIGURED = Reply(451, "4.3.5", "Single Window is misconfigured, will retry")


# --- Milter replies at end of message (smfi_setreply(3); Postfix MILTER_README) --------
# The policy daemon has already checked the same facts at RCPT time, so these only fire
# when the store changed in between or Postfix is wired wrongly. After DATA, 554 is the
# permanent "transaction failed" reply and 451 the transient one (RFC 5321 4.2.3, 4.3.2).

# The envelope sender is no physical address Single Window knows. 5.7.1 = delivery not
# authorized (RFC 3463 3.8).
MILTER_SENDER_UNKNOWN = Reply(554, "5.7.1", "Sender address is not registered with Single Window")
# The sender's address belongs to another party than the peer (I1) or login (I2) names.
MILTER_SENDER_NOT_YOURS = Reply(554, "5.7.1", "Sender address is registered for another party")
# I2 needs a sender: the null sender (RFC 5321 4.5.5) is for MTAs returning DSNs only.
MILTER_NULL_SENDER = Reply(554, "5.7.1", "The null sender is not allowed on submission")
# An unknown peer or login, a listener Single Window does not know: PEER_UNKNOWN,
# LOGIN_UNKNOWN and POLICY_MISCONFIGURED above, as at RCPT time.

# Store unreachable or any internal failure at end of message: Postfix keeps the client
# retrying, never accepting blindly. 4.3.0 = other mail system status (RFC 3463 3.5).
MILTER_TEMPFAIL = Reply(451, "4.3.0", "Single Window is temporarily unable to accept this")


class ReplyError(Exception):
    """A step that cannot go on, carrying the reply a recipient gets for it."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.line())
        self.reply = reply
