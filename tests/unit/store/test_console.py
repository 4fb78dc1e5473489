"""What the web console reads and keeps (:mod:`singlewindow.store.console`, issue 18):
logins, sessions and their lifetimes, failed logins, the message search with its
outcomes and a company's scope, responses, the parties' pages, and what the console's
own PostgreSQL role may do (only that)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from singlewindow import passwords
from singlewindow.config import ADMIN_ROLE, CONSOLE_ROLE, Config
from singlewindow.store import StoreError, connect, console, directory, messages

D = "sw.test"
HASH = passwords.strong_hash("correct horse battery")
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture
def db(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The shared fixture's connection, with the console's own tables emptied too."""
    conn.execute("TRUNCATE operator, console_session, console_login_failure")
    return conn


def _party(conn: psycopg.Connection[Any], name: str, kind: str) -> None:
    directory.add_party(conn, name, kind, [], None)
    directory.add_address(conn, f"{name}@{D}", name, f"edi@{name}.example", None, D)


@pytest.fixture
def world(db: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """Companies acme and bright, agencies customs and coast, one address each; an
    account for each company."""
    for name, kind in (("acme", "company"), ("bright", "company"), ("customs", "agency"),
                       ("coast", "agency")):
        _party(db, name, kind)
    for login, party in (("acme-clerk", "acme"), ("bright-desk", "bright")):
        directory.add_account(db, login, party, HASH,
                              passwords.digest_md5_hash(login, D, "correct horse battery"))
    return db


def party_id(conn: psycopg.Connection[Any], name: str) -> int:
    return directory.get_party(conn, name).id


# --- who may log in ----------------------------------------------------------------------

def test_credential_is_an_operators_or_a_companys(world: psycopg.Connection[Any]) -> None:
    console.add_operator(world, "night-op", HASH)
    assert console.credential(world, "night-op") == console.Credential(
        "operator", "night-op", HASH, None, None)
    assert console.credential(world, "acme-clerk") == console.Credential(
        "company", "acme-clerk", HASH, party_id(world, "acme"), "acme")
    assert console.credential(world, "nobody") is None
    assert passwords.verify_strong("correct horse battery",
                                   console.credential(world, "night-op").password_hash)  # type: ignore[union-attr]


def test_operators_are_added_listed_and_removed(world: psycopg.Connection[Any]) -> None:
    console.add_operator(world, "zed", HASH)
    console.add_operator(world, "amy", HASH)
    assert console.list_operators(world) == ["amy", "zed"]
    with pytest.raises(StoreError, match="operator 'amy': already exists"):
        console.add_operator(world, "amy", HASH)
    with pytest.raises(StoreError, match="is an account's login"):
        console.add_operator(world, "acme-clerk", HASH)
    for bad in ("Amy", "-x", "a b", "", "x" * 65, "a@b"):
        with pytest.raises(StoreError, match="invalid operator name"):
            console.add_operator(world, bad, HASH)
    console.remove_operator(world, "zed")
    assert console.list_operators(world) == ["amy"]
    with pytest.raises(StoreError, match="unknown operator 'zed'"):
        console.remove_operator(world, "zed")


def test_an_operators_password_is_changed_and_its_sessions_end(
        world: psycopg.Connection[Any]) -> None:
    console.add_operator(world, "amy", HASH)
    console.add_operator(world, "bob", HASH)
    _open(world, "a" * 64, "amy")
    _open(world, "c" * 64, "amy")
    _open(world, "b" * 64, "bob")
    _open(world, "d" * 64, "acme-clerk")
    new = passwords.strong_hash("a brand new secret")
    console.set_operator_password(world, "amy", new)
    assert console.credential(world, "amy").password_hash == new  # type: ignore[union-attr]
    assert console.credential(world, "bob").password_hash == HASH  # type: ignore[union-attr]
    assert console.session(world, "a" * 64, 1800, 43200) is None
    assert console.session(world, "c" * 64, 1800, 43200) is None
    assert console.session(world, "b" * 64, 1800, 43200) is not None
    assert console.session(world, "d" * 64, 1800, 43200) is not None
    with pytest.raises(StoreError, match="unknown operator 'zed'"):
        console.set_operator_password(world, "zed", new)
    with pytest.raises(StoreError, match="unknown operator 'acme-clerk'"):
        console.set_operator_password(world, "acme-clerk", new)


def test_ending_a_logins_sessions_ends_that_kind_and_login_only(
        world: psycopg.Connection[Any]) -> None:
    console.add_operator(world, "amy", HASH)
    _open(world, "a" * 64, "amy")
    _open(world, "b" * 64, "amy")
    _open(world, "c" * 64, "acme-clerk")
    assert console.end_sessions(world, "company", "amy") == 0
    assert console.end_sessions(world, "operator", "amy") == 2
    assert console.session(world, "a" * 64, 1800, 43200) is None
    assert console.session(world, "c" * 64, 1800, 43200) is not None


def test_removing_an_operator_ends_its_sessions(world: psycopg.Connection[Any]) -> None:
    console.add_operator(world, "amy", HASH)
    console.add_operator(world, "bob", HASH)
    for token, login in (("a" * 64, "amy"), ("b" * 64, "bob")):
        who = console.credential(world, login)
        assert who is not None
        console.open_session(world, token, who, "csrf-" + login)
    console.remove_operator(world, "amy")
    assert console.session(world, "a" * 64, 1800, 43200) is None
    assert console.session(world, "b" * 64, 1800, 43200) is not None


# --- sessions ----------------------------------------------------------------------------

def _open(conn: psycopg.Connection[Any], token: str, login: str) -> None:
    who = console.credential(conn, login)
    assert who is not None
    console.open_session(conn, token, who, "csrf-token")


def test_a_session_is_found_by_its_token_and_touched(world: psycopg.Connection[Any]) -> None:
    _open(world, "c" * 64, "acme-clerk")
    world.execute("UPDATE console_session SET last_seen_at = now() - interval '10 minutes'")
    found = console.session(world, "c" * 64, 1800, 43200)
    assert found is not None
    assert (found.kind, found.login, found.party_id, found.party, found.csrf) == (
        "company", "acme-clerk", party_id(world, "acme"), "acme", "csrf-token")
    assert found.last_seen_at - found.created_at < timedelta(minutes=1)  # touched now
    assert console.session(world, "d" * 64, 1800, 43200) is None
    console.close_session(world, "c" * 64)
    assert console.session(world, "c" * 64, 1800, 43200) is None


@pytest.mark.parametrize("column,age", [("last_seen_at", 1801), ("created_at", 43201)])
def test_an_expired_session_is_refused_and_deleted(
        world: psycopg.Connection[Any], column: str, age: int) -> None:
    """Idle too long, or older than the longest a session may last (by the database's
    clock), however recently it was used."""
    _open(world, "e" * 64, "acme-clerk")
    _open(world, "f" * 64, "bright-desk")  # another expired one goes with it
    world.execute(f"UPDATE console_session SET {column} = now() - make_interval("  # type: ignore[arg-type]
                  "secs => %s)", (age,))
    assert console.session(world, "e" * 64, 1800, 43200) is None
    assert world.execute("SELECT count(*) AS n FROM console_session").fetchone() == {"n": 0}


def test_a_session_just_within_both_lifetimes_lives(world: psycopg.Connection[Any]) -> None:
    _open(world, "e" * 64, "acme-clerk")
    world.execute("UPDATE console_session SET created_at = now() - interval '11 hours',"
                  " last_seen_at = now() - interval '29 minutes'")
    assert console.session(world, "e" * 64, 1800, 43200) is not None


# --- failed logins -----------------------------------------------------------------------

def test_failures_are_counted_by_login_and_by_source(db: psycopg.Connection[Any]) -> None:
    assert console.failures(db, "amy", "192.0.2.1", 900) == console.Failures(0, 0, 0.0)
    console.record_failure(db, "amy", "192.0.2.1")
    console.record_failure(db, "amy", "192.0.2.2")
    console.record_failure(db, "bob", "192.0.2.1")
    db.execute("UPDATE console_login_failure SET at = now() - interval '100 seconds'"
               " WHERE id = 1")
    found = console.failures(db, "amy", "192.0.2.1", 900)
    assert (found.by_login, found.by_source) == (2, 2)
    # The oldest counted one (100 s old) leaves the 900 s window in about 800 s.
    assert 790 < found.retry_after <= 800
    assert console.failures(db, "bob", "2001:db8::1", 900).by_login == 1
    # Outside the window they no longer count.
    assert console.failures(db, "amy", "192.0.2.1", 60) == console.Failures(1, 1, pytest.approx(
        60, abs=5))


def test_a_good_login_clears_its_logins_failures_only(db: psycopg.Connection[Any]) -> None:
    for login in ("amy", "amy", "bob"):
        console.record_failure(db, login, "192.0.2.1")
    console.clear_failures(db, "amy")
    found = console.failures(db, "amy", "192.0.2.1", 900)
    assert (found.by_login, found.by_source) == (0, 1)  # the address's count stays


def test_a_client_without_an_ip_address_shares_one_count(db: psycopg.Connection[Any]) -> None:
    console.record_failure(db, "amy", "testclient")
    console.record_failure(db, "bob", "")
    assert console.failures(db, "carl", "unix-socket", 900).by_source == 2
    assert console.failures(db, "carl", "192.0.2.1", 900).by_source == 0


def test_a_long_name_tried_is_kept_cut(db: psycopg.Connection[Any]) -> None:
    console.record_failure(db, "x" * 100_000, "192.0.2.1")
    assert db.execute("SELECT length(login) AS n FROM console_login_failure").fetchone() \
        == {"n": console.LOGIN_KEPT}
    assert console.failures(db, "x" * 100_000, "192.0.2.9", 900).by_login == 1
    console.clear_failures(db, "x" * 100_000)
    assert console.failures(db, "x" * 100_000, "192.0.2.1", 900).by_login == 0


def test_old_failures_are_deleted_when_one_is_recorded(db: psycopg.Connection[Any]) -> None:
    console.record_failure(db, "amy", "192.0.2.1")
    db.execute("UPDATE console_login_failure SET at = now() - interval '2 days'")
    console.record_failure(db, "amy", "192.0.2.1")
    assert db.execute("SELECT count(*) AS n FROM console_login_failure").fetchone() == {"n": 1}


# --- the log the searches run over -------------------------------------------------------

#: Single Window ids of the log below, one per outcome and a few more.
FWD, NOTFWD, REFUSED, PARTIAL, PENDING, DEFERRED, RESPONSE = (
    f"SW2026113008{n:05d}000abc" for n in range(7))
OK, NO, LATER = "250 2.0.0", "554 5.7.1", "451 4.3.0"


def _message(conn: psycopg.Connection[Any], swid: str, party: str, minutes: int, *,
             outcomes: dict[str, str], message_type: str | None = None,
             subject: str | None = None, in_reply_to: str | None = None) -> None:
    messages.record_message(conn, messages.Received(
        id=swid, listener="mta", party=party, sasl_login=None, peer_address="10.1.0.1",
        envelope_from=f"{party}@{D}", header_message_id=f"<{swid.lower()}@{party}.example>",
        queue_id="Q" + swid[-8:], payload_sha256="0" * 64, subject=subject,
        in_reply_to=in_reply_to))
    conn.execute("UPDATE message SET received_at = %s, message_type = %s WHERE id = %s",
                 (T0 + timedelta(minutes=minutes), message_type, swid))
    for rcpt, status in outcomes.items():
        messages.record_outcome(conn, swid, f"{rcpt}@{D}", status, "why " + status)


def _copy(conn: psycopg.Connection[Any], swid: str, recipient: str, destination: str,
          queue_id: str) -> str:
    copy_id = f"<{swid}.{destination.split('@')[0]}@{D}>"
    claim = messages.claim_forward(conn, messages.Forward(
        swid, recipient, destination, f"edi@{destination}.example", copy_id), lease=60)
    messages.mark_injected(conn, claim, queue_id)
    return copy_id


@pytest.fixture
def log(world: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """acme and bright submit to the agencies, one message per outcome; customs answers
    acme's forwarded message; a DSN (a notice) went back to bright."""
    w = world
    _message(w, FWD, "acme", 0, outcomes={"customs": OK}, message_type="PAXLST-D03B",
             subject="Manifest BA123")
    copy_id = _copy(w, FWD, f"customs@{D}", f"customs@{D}", "QCOPYFWD")
    _message(w, NOTFWD, "acme", 10, outcomes={"customs": OK}, message_type="PAXLST-D05B")
    claim = messages.claim_forward(w, messages.Forward(
        NOTFWD, "*control*", f"acme@{D}", f"acme@{D}", f"<{NOTFWD}.control@{D}>"), 60)
    messages.mark_injected(w, claim, "QCONTROL")
    _message(w, REFUSED, "bright", 20, outcomes={"customs": NO}, message_type="GENDEC-1")
    _message(w, PARTIAL, "acme", 30, outcomes={"customs": OK, "coast": NO},
             message_type="GENDEC-1")
    _copy(w, PARTIAL, f"customs@{D}", f"customs@{D}", "QCOPYPART")
    _message(w, PENDING, "bright", 40, outcomes={})
    _message(w, DEFERRED, "bright", 50, outcomes={"customs": OK, "coast": LATER})
    _copy(w, DEFERRED, f"customs@{D}", f"customs@{D}", "maildrop")  # into a maildrop
    notice = messages.claim_notice(w, messages.Notice(
        "k" * 64, REFUSED, f"bright@{D}", f"edi@bright.{D}", "dsn", f"<dsn.{REFUSED}@{D}>"),
        60)
    messages.mark_injected(w, notice, "QNOTICE")
    _message(w, RESPONSE, "customs", 60, outcomes={"acme": OK}, message_type="CUSRES-1",
             subject="Re: Manifest BA123", in_reply_to=copy_id)
    return w


def ids(conn: psycopg.Connection[Any], **criteria: Any) -> list[str]:
    return [r["id"] for r in console.search(conn, console.Query(**criteria))]


def test_search_lists_newest_first_with_outcome_and_recipients(
        log: psycopg.Connection[Any]) -> None:
    rows = console.search(log, console.Query())
    assert [r["id"] for r in rows] == [RESPONSE, DEFERRED, PENDING, PARTIAL, REFUSED,
                                       NOTFWD, FWD]
    first = rows[-1]
    assert {k: first[k] for k in ("listener", "party", "envelope_from", "subject",
                                  "message_type", "queue_id", "header_message_id",
                                  "outcome")} == {
        "listener": "mta", "party": "acme", "envelope_from": f"acme@{D}",
        "subject": "Manifest BA123", "message_type": "PAXLST-D03B",
        "queue_id": "Q" + FWD[-8:], "header_message_id": f"<{FWD.lower()}@acme.example>",
        "outcome": "forwarded"}
    assert first["received_at"] == T0
    assert rows[3]["recipients"] == [
        {"recipient": f"coast@{D}", "status": NO, "reason": "why " + NO},
        {"recipient": f"customs@{D}", "status": OK, "reason": "why " + OK}]
    assert ids(log, limit=2) == [RESPONSE, DEFERRED]


@pytest.mark.parametrize("outcome,found", [
    ("forwarded", [RESPONSE, FWD]), ("not-forwarded", [NOTFWD]), ("refused", [REFUSED]),
    ("partial", [PARTIAL]), ("pending", [DEFERRED, PENDING])])
def test_each_outcome(log: psycopg.Connection[Any], outcome: str, found: list[str]) -> None:
    assert ids(log, outcome=outcome) == found
    assert all(r["outcome"] == outcome
               for r in console.search(log, console.Query(outcome=outcome)))


def test_one_messages_outcome_is_the_searchs(log: psycopg.Connection[Any]) -> None:
    rows = console.search(log, console.Query())
    assert len({r["outcome"] for r in rows}) == len(console.OUTCOMES)
    assert {r["id"]: console.outcome(log, r["id"]) for r in rows} == {
        r["id"]: r["outcome"] for r in rows}
    assert console.outcome(log, "SWunknown") is None


def test_an_unknown_outcome_is_refused(log: psycopg.Connection[Any]) -> None:
    with pytest.raises(StoreError, match="unknown outcome 'lost'"):
        console.search(log, console.Query(outcome="lost"))


@pytest.mark.parametrize("text,found", [
    (FWD, FWD), ("Q" + FWD[-8:], FWD),  # its id, its inbound leg's queue id
    (f"<{FWD.lower()}@acme.example>", FWD), (f"{FWD.lower()}@acme.example", FWD),
    ("QCOPYFWD", FWD), (f"<{FWD}.customs@{D}>", FWD), (f"{FWD}.customs@{D}", FWD),
    ("QCONTROL", NOTFWD), (f"<{NOTFWD}.control@{D}>", NOTFWD),  # its control message
    ("QNOTICE", REFUSED), (f"dsn.{REFUSED}@{D}", REFUSED),  # the DSN back
    (f"  {FWD}\t", FWD), (f" <{FWD}.customs@{D}> ", FWD),  # as pasted
])
def test_text_finds_a_message_by_either_legs_ids(
        log: psycopg.Connection[Any], text: str, found: str) -> None:
    assert ids(log, text=text) == [found]


@pytest.mark.parametrize("text", ["SW2026", "QCOPY", "acme", "<>", "", FWD.lower(),
                                  "maildrop"])
def test_text_matches_exactly(log: psycopg.Connection[Any], text: str) -> None:
    assert ids(log, text=text) == []


def test_party_is_the_submitter_or_a_recipients_party(log: psycopg.Connection[Any]) -> None:
    assert ids(log, party="acme") == [RESPONSE, PARTIAL, NOTFWD, FWD]  # to acme: RESPONSE
    assert ids(log, party="bright") == [DEFERRED, PENDING, REFUSED]
    assert ids(log, party="coast") == [DEFERRED, PARTIAL]
    assert ids(log, party="nobody") == []


@pytest.mark.parametrize("message_type,found", [
    ("PAXLST", [NOTFWD, FWD]), ("PAXLST-D03B", [FWD]), ("PAXLST-D01B", []),
    ("GENDEC", [PARTIAL, REFUSED]), ("GENDEC-1", [PARTIAL, REFUSED]), ("PAX", []),
    ("D03B", [])])
def test_message_type_is_a_message_or_one_release(
        log: psycopg.Connection[Any], message_type: str, found: list[str]) -> None:
    assert ids(log, message_type=message_type) == found


def test_time_window(log: psycopg.Connection[Any]) -> None:
    since, until = T0 + timedelta(minutes=10), T0 + timedelta(minutes=30)
    assert ids(log, since=since) == [RESPONSE, DEFERRED, PENDING, PARTIAL, REFUSED, NOTFWD]
    assert ids(log, until=until) == [REFUSED, NOTFWD, FWD]  # until is exclusive
    assert ids(log, since=since, until=until) == [REFUSED, NOTFWD]


def test_criteria_combine(log: psycopg.Connection[Any]) -> None:
    assert ids(log, party="acme", outcome="forwarded") == [RESPONSE, FWD]
    assert ids(log, party="acme", outcome="forwarded", message_type="PAXLST") == [FWD]
    assert ids(log, party="customs", message_type="GENDEC",
               since=T0 + timedelta(minutes=25)) == [PARTIAL]
    assert ids(log, text=FWD, outcome="refused") == []
    assert ids(log, text=FWD, party="bright") == []
    acme = party_id(log, "acme")
    assert ids(log, party_id=acme, outcome="partial", party="coast",
               until=T0 + timedelta(hours=1)) == [PARTIAL]


def test_a_company_finds_only_its_own_submissions(log: psycopg.Connection[Any]) -> None:
    acme, bright = party_id(log, "acme"), party_id(log, "bright")
    assert ids(log, party_id=acme) == [PARTIAL, NOTFWD, FWD]  # not customs' answer to it
    assert ids(log, party_id=bright) == [DEFERRED, PENDING, REFUSED]
    # Whatever bright asks, acme's messages never come back.
    for criteria in ({"text": FWD}, {"text": "QCOPYFWD"}, {"text": f"<{FWD}.customs@{D}>"},
                     {"text": "Q" + FWD[-8:]}, {"text": f"{FWD.lower()}@acme.example"},
                     {"text": "QCONTROL"}, {"text": RESPONSE}, {"party": "acme"},
                     {"party": "customs"}, {"message_type": "PAXLST"},
                     {"outcome": "forwarded"}, {"outcome": "partial"},
                     {"since": T0}, {"limit": 1000}):
        found = ids(log, party_id=bright, **criteria)
        assert set(found) <= {DEFERRED, PENDING, REFUSED}, criteria
    assert console.owned(log, FWD, acme) and not console.owned(log, FWD, bright)
    assert not console.owned(log, "SWunknown", acme)


def pages(conn: psycopg.Connection[Any], **criteria: Any) -> list[list[str]]:
    """Every page of a search, following each page's ``next_before`` to the last."""
    found: list[list[str]] = []
    before = None
    while True:
        page = console.search_page(conn, console.Query(before=before, **criteria))
        found.append([r["id"] for r in page.rows])
        if page.next_before is None:
            return found
        assert page.next_before == found[-1][-1]
        before = page.next_before


@pytest.mark.parametrize("criteria", [
    {}, {"party": "acme"}, {"outcome": "pending"}, {"message_type": "GENDEC"},
    {"since": T0 + timedelta(minutes=10), "until": T0 + timedelta(minutes=55)}])
@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
def test_pages_partition_the_search(log: psycopg.Connection[Any], criteria: dict[str, Any],
                                    limit: int) -> None:
    whole = ids(log, **criteria)
    got = pages(log, limit=limit, **criteria)
    assert [i for page in got for i in page] == whole  # no gap, no duplicate, in order
    assert all(len(page) == limit for page in got[:-1])
    assert 0 < len(got[-1]) <= limit or whole == []
    assert len(got) == max(1, -(-len(whole) // limit))  # no empty page after a full one


def test_equal_received_at_is_paged_by_id(log: psycopg.Connection[Any]) -> None:
    log.execute("UPDATE message SET received_at = %s WHERE id IN (%s, %s, %s)",
                (T0 + timedelta(minutes=30), PENDING, PARTIAL, REFUSED))
    tied = sorted([PENDING, PARTIAL, REFUSED], reverse=True)
    assert ids(log) == [RESPONSE, DEFERRED, *tied, NOTFWD, FWD]
    assert pages(log, limit=2) == [[RESPONSE, DEFERRED], tied[:2], [tied[2], NOTFWD],
                                   [FWD]]
    assert ids(log, before=tied[0]) == [*tied[1:], NOTFWD, FWD]


def test_a_companys_later_pages_keep_its_scope(log: psycopg.Connection[Any]) -> None:
    acme, bright = party_id(log, "acme"), party_id(log, "bright")
    assert pages(log, party_id=acme, limit=1) == [[PARTIAL], [NOTFWD], [FWD]]
    assert pages(log, party_id=bright, limit=2) == [[DEFERRED, PENDING], [REFUSED]]
    # bright's own message as the cursor, acme's search: none of acme's older ones
    # come back, just as for an id that is no message.
    for before in (DEFERRED, RESPONSE, "SWunknown", ""):
        assert ids(log, party_id=acme, before=before) == [], before
        assert console.search_page(log, console.Query(party_id=acme, before=before)) \
            == console.Page([], None)
    assert ids(log, party_id=acme, before=PARTIAL) == [NOTFWD, FWD]
    # An operator pages from any message, whatever else it searches for.
    assert ids(log, before=RESPONSE, party="acme") == [PARTIAL, NOTFWD, FWD]
    assert ids(log, before="SWunknown") == []


def test_responses_are_the_messages_answering_its_copies(log: psycopg.Connection[Any]) -> None:
    [answer] = console.responses(log, FWD)
    assert {k: answer[k] for k in ("id", "party", "subject", "message_type", "outcome")} == {
        "id": RESPONSE, "party": "customs", "subject": "Re: Manifest BA123",
        "message_type": "CUSRES-1", "outcome": "forwarded"}
    assert answer["recipients"] == [{"recipient": f"acme@{D}", "status": OK,
                                     "reason": "why " + OK}]
    assert console.responses(log, PARTIAL) == []
    # A reply to its control message is no agency's response.
    _message(log, "SW20261130090000000def", "acme", 90, outcomes={},
             in_reply_to=f"<{NOTFWD}.control@{D}>")
    assert console.responses(log, NOTFWD) == []


# --- the audit log -----------------------------------------------------------------------

def test_views_are_recorded_and_read_newest_first(db: psycopg.Connection[Any]) -> None:
    console.record_view(db, "operator", "amy", "192.0.2.1", "message", FWD)
    console.record_view(db, "company", "acme-clerk", "2001:db8::1", "search",
                        detail='text="x"')
    console.record_view(db, "operator", "amy", "testclient", "party", detail="acme")
    rows = console.views(db)
    assert [(r["kind"], r["login"], r["source"], r["action"], r["message_id"],
             r["detail"]) for r in rows] == [
        ("operator", "amy", console.UNKNOWN_SOURCE, "party", None, "acme"),
        ("company", "acme-clerk", "2001:db8::1", "search", None, 'text="x"'),
        ("operator", "amy", "192.0.2.1", "message", FWD, None)]
    assert all(isinstance(r["at"], datetime) and r["at"].tzinfo for r in rows)
    assert rows[0]["at"] >= rows[1]["at"] >= rows[2]["at"]
    assert rows[0]["id"] > rows[1]["id"] > rows[2]["id"]


def test_views_are_found_by_login_message_and_time(db: psycopg.Connection[Any]) -> None:
    for login, message_id in (("amy", FWD), ("bob", FWD), ("amy", REFUSED),
                              ("acme-clerk", FWD)):
        console.record_view(db, "operator", login, "192.0.2.1", "message", message_id)
    db.execute("UPDATE console_view SET at = %s + make_interval(mins => id::int)", (T0,))

    def found(**criteria: Any) -> list[tuple[str, str]]:
        return [(r["login"], r["message_id"]) for r in console.views(db, **criteria)]
    assert found(message_id=FWD) == [("acme-clerk", FWD), ("bob", FWD), ("amy", FWD)]
    assert found(login="amy") == [("amy", REFUSED), ("amy", FWD)]
    assert found(login="amy", message_id=FWD) == [("amy", FWD)]
    assert found(since=T0 + timedelta(minutes=3)) == [("acme-clerk", FWD), ("amy", REFUSED)]
    assert found(message_id=FWD, limit=1) == [("acme-clerk", FWD)]
    assert found(login="nobody") == [] and found(message_id="SWunknown") == []


def test_a_view_keeps_its_long_texts_cut(db: psycopg.Connection[Any]) -> None:
    console.record_view(db, "operator", "x" * 100_000, "192.0.2.1", "search",
                        detail="y" * 100_000)
    [row] = console.views(db)
    assert (len(row["login"]), len(row["detail"])) == (console.LOGIN_KEPT,
                                                       console.DETAIL_KEPT)


@pytest.mark.parametrize("kind,action,error", [
    ("operator", "delete", "unknown action 'delete'"),
    ("admin", "message", "unknown kind of login 'admin'")])
def test_an_unknown_action_or_kind_is_refused(db: psycopg.Connection[Any], kind: str,
                                              action: str, error: str) -> None:
    with pytest.raises(StoreError, match=error):
        console.record_view(db, kind, "amy", "192.0.2.1", action)
    assert console.views(db) == []


def test_the_audit_log_outlives_its_message(log: psycopg.Connection[Any]) -> None:
    """No foreign key: a message deleted (a purge) leaves who looked at it."""
    console.record_view(log, "operator", "amy", "192.0.2.1", "message", REFUSED)
    log.execute("DELETE FROM message WHERE id = %s", (REFUSED,))
    assert [r["login"] for r in console.views(log, message_id=REFUSED)] == ["amy"]


# --- the directory -----------------------------------------------------------------------

def test_parties_lists_each_with_its_addresses_and_accounts(
        world: psycopg.Connection[Any]) -> None:
    directory.add_party(world, "harbour", "agency", ["10.9.0.0/28", "10.8.0.1"],
                        "127.0.0.1:2601")
    rows = {r["name"]: r for r in console.parties(world)}
    assert list(rows) == ["acme", "bright", "coast", "customs", "harbour"]
    assert rows["acme"] == {"name": "acme", "kind": "company", "relay": None, "peers": [],
                            "addresses": [f"acme@{D}"], "accounts": ["acme-clerk"]}
    assert rows["harbour"] == {"name": "harbour", "kind": "agency",
                               "relay": "127.0.0.1:2601",
                               "peers": ["10.8.0.1/32", "10.9.0.0/28"], "addresses": [],
                               "accounts": []}


def test_party_shows_addresses_links_and_routes(world: psycopg.Connection[Any]) -> None:
    directory.add_address(world, f"acme-2@{D}", "acme", "two@acme.example", "acme-clerk",
                          D, active=False)
    directory.set_link(world, "acme", "coast", False)
    directory.set_link(world, "bright", "customs", False)  # not acme's
    directory.add_route(world, f"acme@{D}", "PAXLST", [f"customs@{D}", f"coast@{D}"])
    directory.add_route(world, f"customs@{D}", "GENDEC", [f"coast@{D}"])  # not acme's
    found = console.party(world, "acme")
    assert found is not None
    assert (found["name"], found["kind"], found["accounts"]) == ("acme", "company",
                                                                  ["acme-clerk"])
    assert found["addresses"] == [
        {"logical": f"acme-2@{D}", "physical": "two@acme.example",
         "maildrop_login": "acme-clerk", "active": False},
        {"logical": f"acme@{D}", "physical": "edi@acme.example", "maildrop_login": None,
         "active": True}]
    assert found["links"] == [
        {"sender": "acme", "recipient": "coast", "allowed": False},
        {"sender": "agency", "recipient": "company", "allowed": True},
        {"sender": "company", "recipient": "agency", "allowed": True}]
    assert found["routes"] == [{"logical": f"acme@{D}", "message_type": "PAXLST",
                                "destinations": [f"coast@{D}", f"customs@{D}"]}]
    assert console.party(world, "nobody") is None


# --- the console's role: what it needs, nothing more -------------------------------------

@pytest.fixture
def as_console(database_config: Config) -> Iterator[psycopg.Connection[Any]]:
    with connect(database_config.database, autocommit=True, role=CONSOLE_ROLE) as c:
        yield c


def test_the_console_role_does_what_the_console_needs(
        log: psycopg.Connection[Any], as_console: psycopg.Connection[Any]) -> None:
    assert as_console.execute("SELECT current_user AS u").fetchone() == {"u": CONSOLE_ROLE}
    console.add_operator(log, "amy", HASH)
    who = console.credential(as_console, "amy")
    company = console.credential(as_console, "acme-clerk")
    assert who is not None and company is not None and company.party == "acme"
    console.open_session(as_console, "a" * 64, company, "csrf")
    assert console.session(as_console, "a" * 64, 1800, 43200) is not None
    console.close_session(as_console, "a" * 64)
    console.record_failure(as_console, "amy", "192.0.2.1")
    assert console.failures(as_console, "amy", "192.0.2.1", 900).by_login == 1
    console.clear_failures(as_console, "amy")
    assert len(console.search(as_console, console.Query(text="QCOPYFWD"))) == 1
    assert console.owned(as_console, FWD, company.party_id)  # type: ignore[arg-type]
    assert len(console.responses(as_console, FWD)) == 1
    assert console.party(as_console, "acme") is not None and console.parties(as_console)
    assert console.list_operators(as_console) == ["amy"]
    console.record_view(as_console, "operator", "amy", "192.0.2.1", "message", FWD)
    assert [r["login"] for r in console.views(as_console, message_id=FWD)] == ["amy"]


def test_the_console_role_changes_the_password_hashes(
        world: psycopg.Connection[Any], as_console: psycopg.Connection[Any]) -> None:
    """What a change of password in the console writes, as sw_console: an operator's
    strong hash, an account's two hashes; it still reads no DIGEST-MD5 hash."""
    console.add_operator(world, "amy", HASH)
    _open(world, "a" * 64, "amy")
    _open(world, "c" * 64, "acme-clerk")
    new = passwords.strong_hash("a brand new secret")
    digest = passwords.digest_md5_hash("acme-clerk", D, "a brand new secret")
    console.set_operator_password(as_console, "amy", new)
    directory.set_account_password(as_console, "acme-clerk", new, digest)
    assert world.execute("SELECT password_hash FROM operator").fetchone() == {
        "password_hash": new}
    assert world.execute("SELECT password_hash, digest_md5_hash FROM account"
                         " WHERE login = 'acme-clerk'").fetchone() == {
        "password_hash": new, "digest_md5_hash": digest}
    assert world.execute("SELECT count(*) AS n FROM console_session").fetchone() == {"n": 0}
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_console.execute("SELECT digest_md5_hash FROM account")


@pytest.mark.usefixtures("log")
@pytest.mark.parametrize("sql", [
    "SELECT digest_md5_hash FROM account", "SELECT * FROM account",
    "SELECT * FROM message_id_alias", "SELECT * FROM msa_claim",
    "INSERT INTO message (id, listener, envelope_from) VALUES ('x', 'mta', 'a@b')",
    "UPDATE message SET subject = 'x'", "DELETE FROM event",
    "UPDATE message_recipient SET status = '250 2.0.0'", "UPDATE forward SET state = 'x'",
    "INSERT INTO party (name, kind) VALUES ('evil', 'company')",
    "UPDATE party SET relay_host = 'evil.example'", "DELETE FROM address",
    "UPDATE account SET party_id = party_id", "UPDATE account SET login = 'evil'",
    "UPDATE route SET message_type = 'x'",
    "UPDATE account SET password_hash = '{PLAIN}x' WHERE digest_md5_hash LIKE '%'",
    "UPDATE account SET digest_md5_hash = '{PLAIN}x' RETURNING digest_md5_hash",
    "INSERT INTO account (login, party_id, password_hash, digest_md5_hash)"
    " SELECT 'evil', party_id, password_hash, '{PLAIN}x' FROM account",
    "DELETE FROM account",
    "INSERT INTO operator (name, password_hash) VALUES ('evil', '{PLAIN}x')",
    "UPDATE operator SET name = 'evil'", "UPDATE operator SET created_at = now()",
    "DELETE FROM operator",
    "CREATE TABLE evil (x int)", "CREATE TEMP TABLE evil (x int)",
    # The audit log is append-only.
    "UPDATE console_view SET login = 'someone-else'", "DELETE FROM console_view",
    "TRUNCATE console_view", "ALTER TABLE console_view DISABLE TRIGGER ALL",
    "SELECT setval('console_view_id_seq', 1)"])
def test_the_console_role_can_do_nothing_more(
        as_console: psycopg.Connection[Any], sql: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_console.execute(sql)  # type: ignore[arg-type]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM operator", "SELECT * FROM console_session",
    "SELECT * FROM console_login_failure",
    "INSERT INTO operator (name, password_hash) VALUES ('evil', '{PLAIN}x')",
    "INSERT INTO console_session (token_sha256, kind, login, csrf)"
    " VALUES (repeat('a', 64), 'operator', 'evil', 'x')",
    "SELECT * FROM console_view", "DELETE FROM console_view",
    "INSERT INTO console_view (kind, login, source, action)"
    " VALUES ('operator', 'evil', '0.0.0.0', 'queue')",
    "SELECT nextval('console_view_id_seq')"])
def test_the_daemons_have_no_business_with_the_console(
        database_config: Config, db: psycopg.Connection[Any], sql: str) -> None:
    with connect(database_config.database, autocommit=True) as daemon, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        daemon.execute(sql)  # type: ignore[arg-type]


def test_swctl_keeps_operators_and_may_end_sessions(
        database_config: Config, world: psycopg.Connection[Any]) -> None:
    with connect(database_config.database, autocommit=True, role=ADMIN_ROLE) as admin:
        console.add_operator(admin, "amy", HASH)
        _open(world, "a" * 64, "amy")
        console.remove_operator(admin, "amy")
    assert console.session(world, "a" * 64, 1800, 43200) is None


def test_swctl_reads_the_audit_log_and_never_rewrites_it(
        database_config: Config, db: psycopg.Connection[Any]) -> None:
    console.record_view(db, "operator", "amy", "192.0.2.1", "queue")
    with connect(database_config.database, autocommit=True, role=ADMIN_ROLE) as admin:
        assert [r["action"] for r in console.views(admin)] == ["queue"]
        for sql in ("UPDATE console_view SET login = 'bob'", "DELETE FROM console_view",
                    "INSERT INTO console_view (kind, login, source, action)"
                    " VALUES ('operator', 'evil', '0.0.0.0', 'queue')",
                    "TRUNCATE console_view"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                admin.execute(sql)  # type: ignore[arg-type]


def test_a_time_given_to_a_search_is_iso_and_utc_without_an_offset() -> None:
    """One reading of a person's time for the console's since/until and swctl audit."""
    assert console.when("2026-11-30T21:00", "since") == datetime(2026, 11, 30, 21, tzinfo=UTC)
    assert console.when(" 2026-11-30T22:00+01:00 ", "until") == datetime(
        2026, 11, 30, 21, tzinfo=UTC)
    assert console.when(None, "since") is None and console.when("  ", "since") is None
    with pytest.raises(ValueError, match=r"^--since: not a date and time: 'yesterday'$"):
        console.when("yesterday", "--since")
