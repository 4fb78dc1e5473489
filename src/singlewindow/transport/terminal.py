"""A terminal answer for every input (issue 10): which failures may defer, which may not.

After the queue, the router answers Postfix once per recipient. An exception there used to
defer the recipient (4.3.0), so a message that always raises the same exception waited in
Postfix's queue until the queue lifetime and only then bounced, with a text that said
nothing. Only a *transient* cause may defer now: the store unreachable or overloaded,
Postfix's re-injection listener unreachable, the disk. Anything else is a bug or an input
nobody foresaw; retrying cannot cure it, so the recipient gets a permanent answer at once
and the operator the traceback. No I/O here except :func:`record`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool

from singlewindow import replies
from singlewindow.mig.validate import Result
from singlewindow.replies import Reply
from singlewindow.store import messages
from singlewindow.transport.forward import InjectError

# SQLSTATE class 42 errors that mean the schema or the grants are not what this code
# expects (a deployment half done: `swctl db migrate` not yet run, a role without its
# grants). The operator's fix makes the retry succeed, so these wait too.
_DEPLOYMENT = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn,
               psycopg.errors.UndefinedFunction, psycopg.errors.InsufficientPrivilege)
# Room for the constant's own words and the Single Window id in one reply line
# (RFC 5321 4.5.3.1.5: 512 octets with the code).
_MAX_DETAIL = 250


def deferral(exc: BaseException) -> Reply | None:
    """The transient answer for ``exc``, or None when a retry cannot cure it.

    (An origin stamp that does not verify never gets here: the router refuses it,
    issue 12.)
    """
    return replies.INTERNAL_ERROR if transient(exc) else None


def transient(exc: BaseException) -> bool:
    """Whether retrying later can succeed where this attempt failed with ``exc``.

    Transient: psycopg's OperationalError (connection refused or lost, server shutdown,
    pool timeout, too many connections, disk full, serialization failure, statement
    timeout) except a program limit (SQLSTATE 54: the same statement fails again), its
    InterfaceError, a read-only server (25006: during a failover), a schema or grant
    missing (see ``_DEPLOYMENT``); the re-injection listener not taking the copy
    (InjectError); any OSError (the disk, a file, the maildrop's delivery agent: no message
    content names a file here) and MemoryError. Everything else is permanent.
    """
    if isinstance(exc, psycopg.errors.ProgramLimitExceeded):
        return False
    return isinstance(exc, (
        psycopg.OperationalError, psycopg.InterfaceError,
        psycopg.errors.ReadOnlySqlTransaction, *_DEPLOYMENT,
        InjectError, OSError, MemoryError))


def _clip(text: str, limit: int = _MAX_DETAIL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def cannot_process(exc: BaseException, message_id: str | None) -> Reply:
    """The permanent answer for a failure that is not transient."""
    where = f" (Single Window message {message_id})" if message_id else ""
    return replies.CANNOT_PROCESS.with_text(
        f"{replies.CANNOT_PROCESS.text}: {type(exc).__name__} while processing it; "
        f"the operator has the details{where}")


def mig_refusal(result: Result, message_id: str, automatic: str | None = None) -> Reply:
    """SPEC R6.1 for the null sender: the errors go into the refusal itself.

    The same for any other automatic submission (``automatic``: why it is one, issue 12):
    no control message answers an auto-responder, and its recipients asked for no DSN,
    so the refusal is what ``swctl trace`` shows.

    A message with the null reverse-path gets no control message, nor any other mail
    (RFC 5321 4.5.5, RFC 3461 6.2: nothing is sent to <>, so that no loop can start).
    Without a control message the 250 "delivered, not forwarded" would leave the
    submitter no way to learn why nothing arrived: the recipient fails instead, and the
    reply names the errors where the submitter's operator can ask for them (Postfix logs
    it; no DSN goes to <> either, RFC 3461 6.2).
    """
    count = len(result.errors)
    first = _clip(str(result.errors[0])) if result.errors else "none named"
    return replies.MIG_ERRORS_NULL_SENDER.with_text(
        f"Not forwarded: {count} MIG error{'' if count == 1 else 's'}, the first: {first}; "
        + ("no control message is sent to the null sender" if automatic is None else
           f"no control message is sent, as {automatic}")
        + f" (Single Window message {message_id})")


def record(pool: ConnectionPool[Any], message_id: str | None, rcpt: str,
           reply: Reply) -> None:
    """Record ``reply`` as the recipient's outcome, if the store takes it (the message
    may not be recorded at all: the failure may have been that very insert)."""
    if message_id is None:
        return
    with contextlib.suppress(psycopg.Error), pool.connection(timeout=5) as conn:
        conn.autocommit = True
        messages.record_outcome(conn, message_id, rcpt.lower(),
                                f"{reply.code} {reply.enhanced}", reply.text, reply.key)
