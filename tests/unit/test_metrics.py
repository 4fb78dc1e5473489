"""The exporter's collectors over a real PostgreSQL, and the policy daemon's counters in
prometheus_client's multiprocess mode across real processes (issue 14)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from singlewindow import metrics, replies
from singlewindow.config import Config, Database, Metrics, Queue, postfix_seconds
from singlewindow.origin import new_message_id
from singlewindow.policy import server
from singlewindow.policy.decide import Request
from singlewindow.store import directory, messages
from tests.support.local import short_state_dir

Conn = psycopg.Connection[Any]
DOMAIN = "sw.test"


@pytest.fixture
def store(conn: Conn) -> Conn:
    """Two companies (one with a maildrop) and two agencies."""
    directory.add_party(conn, "acme", "company", ["10.1.0.0/24"], "10.1.0.25:25")
    directory.add_party(conn, "customs", "agency", ["10.9.0.0/28"], "10.9.0.5:25")
    directory.add_party(conn, "coastguard", "agency", ["10.9.1.0/28"], "10.9.1.5:25")
    directory.add_address(conn, "acme@sw.test", "acme", "edi@acme.example", None, DOMAIN)
    directory.add_address(conn, "customs@sw.test", "customs", "in@customs.example", None,
                          DOMAIN)
    directory.add_address(conn, "coastguard@sw.test", "coastguard", "in@coastguard.example",
                          None, DOMAIN)
    return conn


def scrape(config: Config) -> CollectorRegistry:
    registry = CollectorRegistry()
    collector = metrics.StoreCollector(config)
    registry.register(collector)
    return registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    assert found is not None, f"{name}{labels} is not exported"
    return found


def submit(conn: Conn, outcomes: list[tuple[str, Any]], *, listener: str = "mta",
           sender: str = "acme@sw.test", events: list[tuple[str, dict[str, Any]]] | None = None,
           at: float | None = None) -> str:
    """A submission as the transport records it: the message, then each recipient's
    outcome (a reply)."""
    swid = new_message_id(at)
    messages.record_message(conn, messages.Received(
        id=swid, listener=listener, party="acme", sasl_login=None, peer_address="10.1.0.1",
        envelope_from=sender, header_message_id=None, queue_id=None,
        payload_sha256="0" * 64), events or [])
    for rcpt, reply in outcomes:
        messages.record_outcome(conn, swid, rcpt, f"{reply.code} {reply.enhanced}",
                                reply.text, reply.key)
    return swid


def copy(conn: Conn, swid: str, destination: str, physical: str) -> messages.Claim:
    return messages.claim_forward(conn, messages.Forward(
        swid, "customs@sw.test", destination, physical, f"<{swid}.{destination}>"), 60)


def test_submissions_by_listener_and_outcome_and_failures_by_reason(
        store: Conn, database_config: Config) -> None:
    ok, link = replies.DELIVERED, replies.UNAUTHORISED_LINK.with_text("not this link")
    submit(store, [("customs@sw.test", ok), ("coastguard@sw.test", ok)])
    submit(store, [("customs@sw.test", ok), ("acme@sw.test", link)])
    submit(store, [("customs@sw.test", replies.UNSUPPORTED_CONTENT_TYPE)], listener="msa")
    # Refused too, but nobody gets a failure DSN: the null sender, automatic mail.
    submit(store, [("customs@sw.test", replies.REPORT_UNMATCHED)], sender="")
    submit(store, [("customs@sw.test", replies.MIG_ERRORS_NULL_SENDER)],
           events=[("automatic", {"reason": "it is marked Auto-Submitted"})])
    submit(store, [])  # no recipient decided yet: not counted

    registry = scrape(database_config)
    total = "singlewindow_submissions_total"
    assert value(registry, total, listener="mta", outcome="accepted") == 1
    assert value(registry, total, listener="mta", outcome="partial") == 1
    assert value(registry, total, listener="mta", outcome="rejected") == 2
    assert value(registry, total, listener="msa", outcome="rejected") == 1
    assert value(registry, total, listener="internal", outcome="accepted") == 0
    failures = "singlewindow_dsn_failures_total"
    assert value(registry, failures, reason="unauthorised-link") == 1
    assert value(registry, failures, reason="unsupported-content-type") == 1
    assert registry.get_sample_value(failures, {"reason": "report-unmatched"}) is None
    assert registry.get_sample_value(failures, {"reason": "mig-errors"}) is None
    assert value(registry, "singlewindow_metrics_store_up") == 1


def test_copies_by_state_and_what_each_party_has_not_accepted(
        store: Conn, database_config: Config) -> None:
    swid = submit(store, [("customs@sw.test", replies.DELIVERED)])
    answered = copy(store, swid, "customs@sw.test", "in@customs.example")
    messages.mark_injected(store, answered, "Q1")
    waiting = copy(store, swid, "coastguard@sw.test", "in@coastguard.example")
    messages.mark_injected(store, waiting, "Q2")
    # The report about the first copy came back (relayed: Postfix handed it on).
    messages.event(store, swid, "agency-dsn", {"digest": "d", "recipients": [
        {"recipient": "customs@sw.test", "action": "relayed", "status": "2.0.0"}]})
    later = submit(store, [("customs@sw.test", replies.DELIVERED)])
    copy(store, later, "customs@sw.test", "in@customs.example")  # still pending
    refused = copy(store, later, "coastguard@sw.test", "in@coastguard.example")
    messages.mark_refused(store, refused, "552 5.3.4 too big")
    # A delayed report is no answer.
    messages.event(store, later, "agency-dsn", {"digest": "e", "recipients": [
        {"recipient": "in@customs.example", "action": "delayed", "status": "4.4.1"}]})
    # A control message is no copy.
    messages.claim_forward(store, messages.Forward(
        later, "*control*", "acme@sw.test", "acme@sw.test", f"<{later}.control>"), 60)
    store.execute("UPDATE forward SET created_at = now() - interval '90 seconds'"
                  " WHERE destination = 'coastguard@sw.test' AND state = 'injected'")

    registry = scrape(database_config)
    assert value(registry, "singlewindow_copies_total", state="injected") == 2
    assert value(registry, "singlewindow_copies_total", state="pending") == 1
    assert value(registry, "singlewindow_copies_total", state="refused") == 1
    pending = "singlewindow_agency_pending_copies"
    assert value(registry, pending, agency="customs") == 1
    assert value(registry, pending, agency="coastguard") == 1
    assert value(registry, pending, agency="acme") == 0
    oldest = "singlewindow_agency_oldest_pending_seconds"
    assert 90 <= value(registry, oldest, agency="coastguard") < 120
    assert 0 <= value(registry, oldest, agency="customs") < 30
    assert value(registry, oldest, agency="acme") == 0

    # Beyond Postfix's queue lifetime a copy has been delivered or bounced.
    short = replace(database_config, queue=Queue(lifetime="60s"))
    assert value(scrape(short), pending, agency="coastguard") == 0


def test_latency_from_the_submission_time_in_the_id(store: Conn,
                                                    database_config: Config) -> None:
    now = time.time()
    swid = submit(store, [("customs@sw.test", replies.DELIVERED)], at=now - 3.2)
    messages.mark_injected(store, copy(store, swid, "customs@sw.test", "in@customs.example"),
                           "Q1")
    claim = messages.claim_notice(store, messages.Notice(
        "k1", swid, "acme@sw.test", "edi@acme.example", "dsn", "<n1>"), 60)
    messages.mark_injected(store, claim, "Q3")
    # The transport saw it only now (after the queue): not when it was submitted.
    store.execute("UPDATE message SET received_at = now() WHERE id = %s", (swid,))
    # As PostgreSQL tells its time, to the clock of this test (the id's time is ours).
    store.execute("UPDATE forward SET injected_at = to_timestamp(%s)", (now - 0.2,))
    store.execute("UPDATE notice_delivery SET injected_at = to_timestamp(%s)", (now + 6.3,))

    registry = scrape(database_config)
    copy_h = "singlewindow_submission_to_copy_seconds"
    assert value(registry, f"{copy_h}_count") == 1
    assert value(registry, f"{copy_h}_sum") == pytest.approx(3.0, abs=0.01)
    assert value(registry, f"{copy_h}_bucket", le="2.5") == 0
    assert value(registry, f"{copy_h}_bucket", le="5.0") == 1
    assert value(registry, f"{copy_h}_bucket", le="+Inf") == 1
    dsn_h = "singlewindow_submission_to_dsn_seconds"
    assert value(registry, f"{dsn_h}_sum") == pytest.approx(9.5, abs=0.01)
    assert value(registry, f"{dsn_h}_bucket", le="5.0") == 0
    assert value(registry, f"{dsn_h}_bucket", le="10.0") == 1


def test_mig_findings_once_per_message_and_seconds_per_megabyte(
        store: Conn, database_config: Config) -> None:
    invalid = submit(store, [("customs@sw.test", replies.DELIVERED)])
    findings = {"bytes": 2_000_000, "seconds": 0.5,
                "findings": [["XSD", "cvc-complex-type", 2], ["RULE", "R12", 1]]}
    messages.event(store, invalid, "mig-validated", findings)
    messages.event(store, invalid, "mig-validated", findings)  # validated again on a retry
    valid = submit(store, [("customs@sw.test", replies.DELIVERED)])
    messages.event(store, valid, "mig-validated", {"bytes": 500_000, "seconds": 0.01})
    messages.event(store, valid, "maildrop-deferred", {"recipient": "acme@sw.test",
                                                       "login": "acme", "status": "4.2.1",
                                                       "leg": "copy"})

    registry = scrape(database_config)
    total = "singlewindow_mig_findings_total"
    assert value(registry, total, type="XSD", rule="cvc-complex-type") == 2
    assert value(registry, total, type="RULE", rule="R12") == 1
    per_mb = "singlewindow_mig_validation_seconds_per_megabyte"
    assert value(registry, f"{per_mb}_count") == 3
    assert value(registry, f"{per_mb}_sum") == pytest.approx(0.25 + 0.25 + 0.02)
    assert value(registry, f"{per_mb}_bucket", le="0.025") == 1
    assert value(registry, f"{per_mb}_bucket", le="0.25") == 3
    assert value(registry, "singlewindow_maildrop_lock_waits_total") == 1


def test_an_unreachable_store_is_reported_not_raised(database_config: Config) -> None:
    gone = replace(database_config, database=Database(
        conninfo="host=/nonexistent dbname=singlewindow", connect_timeout=1))
    registry = scrape(gone)
    assert value(registry, "singlewindow_metrics_store_up") == 0
    assert registry.get_sample_value("singlewindow_copies_total", {"state": "injected"}) \
        is None


def test_postfix_time_values() -> None:
    assert postfix_seconds("5d") == 432000
    assert postfix_seconds("300s") == postfix_seconds("5m") == postfix_seconds("300") == 300


def test_a_scrape_of_10k_messages_is_cheap(store: Conn, database_config: Config,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Ten thousand submissions as the transport leaves them (message, two recipients,
    a copy, a delivered DSN, six events): one scrape's statement, measured."""
    store.execute("""
        WITH m AS (
            INSERT INTO message (id, listener, envelope_from, received_at, submitted_at)
            SELECT 'SW' || to_char(now() - make_interval(secs => i), 'YYYYMMDDHH24MISSMS')
                   || lpad(to_hex(i), 8, '0'), 'mta', 'acme@sw.test',
                   now() - make_interval(secs => i), now() - make_interval(secs => i + 1)
            FROM generate_series(1, 10000) i RETURNING id),
        r AS (INSERT INTO message_recipient (message_id, logical, status, reason, reason_key,
                                             decided_at)
              SELECT id, rcpt, CASE WHEN rcpt LIKE 'c%%' OR right(id, 1) < '4'
                                    THEN '250 2.0.0' ELSE '554 5.7.1' END, 'x',
                     CASE WHEN rcpt LIKE 'c%%' OR right(id, 1) < '4' THEN NULL
                          ELSE 'unauthorised-link' END, now()
              FROM m, (VALUES ('customs@sw.test'), ('acme@sw.test')) v(rcpt)),
        f AS (INSERT INTO forward (message_id, recipient, destination, physical,
                                   copy_message_id, state, queue_id, injected_at)
              SELECT id, 'customs@sw.test', 'customs@sw.test', 'in@customs.example',
                     '<' || id || '.c>', 'injected', 'Q', now() FROM m),
        n AS (INSERT INTO notice_delivery (key, message_id, recipient, physical, kind,
                                           copy_message_id, state, injected_at)
              SELECT id, id, 'acme@sw.test', 'edi@acme.example', 'dsn', '<' || id || '.n>',
                     'injected', now() FROM m)
        INSERT INTO event (message_id, kind, detail)
        SELECT id, kind, CASE kind
            WHEN 'mig-validated' THEN '{"bytes": 40000, "seconds": 0.004}'::jsonb
            WHEN 'agency-dsn' THEN '{"recipients": [{"recipient": "customs@sw.test",
                                                     "action": "relayed"}]}'::jsonb
            ELSE '{}'::jsonb END
        FROM m, (VALUES ('received'), ('hops'), ('mig-validated'), ('forwarded'),
                        ('outcome'), ('agency-dsn')) k(kind)
    """)
    store.execute("ANALYZE")
    collector = metrics.StoreCollector(database_config)
    registry = CollectorRegistry()
    registry.register(collector)
    value(registry, "singlewindow_metrics_store_up")  # connected, plans warm
    took = []
    for _ in range(5):
        started = time.perf_counter()
        accepted = value(registry, "singlewindow_submissions_total", listener="mta",
                         outcome="accepted")
        took.append(time.perf_counter() - started)
    collector.close()
    assert accepted == 2500  # the ids whose last hex digit is 0-3: a quarter
    best, worst = min(took), max(took)
    with capsys.disabled():
        print(f"\nscrape of 10k messages: best {best * 1000:.0f} ms, worst "
              f"{worst * 1000:.0f} ms")
    assert worst < 1.0


# --- the policy daemon's decisions, counted in files ----------------------------------

@pytest.fixture
def metrics_dir() -> Iterator[Path]:
    state = short_state_dir()
    yield state / "metrics"
    shutil.rmtree(state, ignore_errors=True)


_DAEMON = """
import sys
from pathlib import Path
from singlewindow import daemon
from singlewindow.policy import server
from singlewindow.policy.decide import outcome
assert daemon.count_in_files(Path(sys.argv[1]))
decisions = server.decision_counter()
for result in sys.argv[2:]:
    decisions.labels("mta", outcome(result)).inc()
"""


def policy_process(directory: Path, *results: str) -> None:
    """A policy daemon's process that decided ``results`` and exited."""
    subprocess.run([sys.executable, "-c", _DAEMON, str(directory), *results], check=True,
                   timeout=60)


def test_decisions_add_up_across_processes_restarts_and_exporters(
        metrics_dir: Path, database_config: Config) -> None:
    config = replace(database_config, metrics=Metrics(multiprocess_dir=metrics_dir))
    policy_process(metrics_dir, "DUNNO", "DUNNO", "554 5.7.1 no")
    policy_process(metrics_dir, "DUNNO", "450 4.7.1 later")  # a second worker, or a restart
    total = "singlewindow_policy_decisions_total"
    first = metrics.registry(config)
    assert value(first, total, listener="mta", action="accept") == 3
    assert value(first, total, listener="mta", action="reject") == 1
    assert value(first, total, listener="mta", action="defer") == 1
    # The exporter restarted: the same counts, read again from the files.
    assert value(metrics.registry(config), total, listener="mta", action="accept") == 3
    policy_process(metrics_dir, "DUNNO", "DEFER_IF_PERMIT busy")  # restarted daemon
    assert value(first, total, listener="mta", action="accept") == 4
    assert value(first, total, listener="mta", action="defer") == 2


def test_each_answer_is_counted_by_listener_and_action(database_config: Config) -> None:
    service = server.PolicyService(database_config)
    try:
        request = Request("msa", "10.1.0.1", "a@b", "c@d", "login", "i1", "RCPT")
        service.logged(request, replies.POLICY_DUNNO)
        service.logged(request, replies.RATE_LIMITED.line())
        service.logged(replace(request, context="mta"), replies.PEER_UNKNOWN.line())
    finally:
        service.close()
    counted = {tuple(s.labels.values()): s.value for m in service.decisions.collect()
               for s in m.samples if s.name.endswith("_total")}
    assert counted == {("msa", "accept"): 1, ("msa", "defer"): 1, ("mta", "reject"): 1}
