"""The hub's Prometheus metrics: ``python -m singlewindow.metrics`` (``sw-metrics``).

Beside the mail flow, not in it: the exporter serves ``/metrics`` over HTTP on
``[metrics] listen`` and reads what the flow wrote. It counts nothing itself, so an
exporter that restarts, or several processes writing, never make a count wrong.

Where each metric comes from, and why:

- **PostgreSQL's message log** (:class:`StoreCollector`, one statement per scrape). The
  transport records every submission, recipient outcome, copy and delivered notice
  before it answers Postfix (SPEC D4, F5): that record is the truth, shared by every
  transport process and kept across restarts. Counters are aggregates over it:

  - ``singlewindow_submissions_total{listener,outcome}``: messages (``message``) by
    listener (mta, msa, internal) and how their recipients (``message_recipient``) came
    out: ``accepted`` every one 2xx, ``rejected`` none, ``partial`` some. A message is
    counted once its first recipient is decided. (Forged stamps, the pseudo-listener
    ``refused``, are not submissions.)
  - ``singlewindow_dsn_failures_total{reason}``: refused recipients (5xx) of
    submissions whose sender gets a failure DSN (not the null sender, not automatic
    mail, whose NOTIFY is NEVER), by the refusal's keyword recorded with it
    (``message_recipient.reason_key``, :attr:`singlewindow.replies.Reply.key`: the ten
    SPEC R5.3 reasons, e.g. ``unsupported-content-type``, ``unauthorised-link``, and
    ``routing-loop``, ``copy-too-large``, ``copy-refused``, ``cannot-process``,
    ``mig-errors``, ``report-unmatched``, ``other``); plus ``agency-failure``: each
    notice telling a submitter that an agency did not take a copy.
  - ``singlewindow_mig_findings_total{type,rule}``: MIG findings by class (SYNTAX, XSD,
    RULE, ...) and rule, repeats included, from the ``mig-validated`` event the
    transport records with each validation; once per message, however often it was
    validated.
  - ``singlewindow_copies_total{state}``: copies of submissions (``forward``, not the
    control messages and agency-failure notices kept there too) by state: pending,
    injected, refused.
  - ``singlewindow_agency_pending_copies{agency}`` and
    ``singlewindow_agency_oldest_pending_seconds{agency}`` (gauges, every party, 0 when
    none): copies the party's server has not accepted yet. A copy counts as accepted by
    an MTA party once a report about it came back (the hub's Postfix, or the party's
    MTA, answers every copy's NOTIFY=SUCCESS,FAILURE: an ``agency-dsn`` event naming its
    recipient, any action but ``delayed``); by a maildrop once dovecot-lda saved it.
    Copies of automatic mail ask for no report and count as accepted once injected; a
    copy older than ``[queue] lifetime`` has been delivered or bounced by Postfix.
  - ``singlewindow_maildrop_lock_waits_total``: ``maildrop-deferred`` events (a delivery
    deferred 4.2.1 because a POP3 session held the maildrop).
  - histograms ``singlewindow_submission_to_copy_seconds`` (from submission to the copy's
    commit by its receiver: the re-injection listener's 250 or dovecot-lda's save,
    ``forward.injected_at``) and ``singlewindow_submission_to_dsn_seconds`` (to the DSN's
    delivery to the submitter, ``notice_delivery.injected_at`` of kind ``dsn``). The
    submission's time is ``message.submitted_at``, the time in its Single Window id,
    which the milter makes when Postfix accepts the message; ``received_at`` is when the
    transport first saw it, after the queue, and would hide the time a message waited
    there.
    ``singlewindow_mig_validation_seconds_per_megabyte``: per ``mig-validated`` event,
    its seconds per million payload bytes.

  Histograms are recomputed from every row at each scrape, exactly as counters are.

- **The policy daemon's memory** (``singlewindow_policy_decisions_total{listener,action}``):
  decisions at RCPT time that accept leave no row anywhere, so the daemon counts them
  itself, in prometheus_client's multiprocess mode: one file per process under
  ``[metrics] multiprocess_dir`` (``PROMETHEUS_MULTIPROC_DIR``). The files of exited
  processes stay, so a restarted daemon's counts go on from where they were; the
  exporter adds up every file (``MultiProcessCollector``).

- ``singlewindow.health``'s ``HealthCollector`` (components up, Postfix's queue,
  certificates), when installed.

A counter can only go down when message-log rows are deleted, or, for a message whose
recipients Postfix delivered in separate attempts, when a later recipient moves it from
``accepted`` to ``partial``; Prometheus takes both as a counter reset.
"""

from __future__ import annotations

import importlib
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector

from singlewindow import daemon, identity
from singlewindow.config import DAEMON_ROLE, Config, ConfigError
from singlewindow.store import connect

log = logging.getLogger("sw-metrics")

#: Seconds: from under a second (a copy re-injected at once) to a day (an agency's
#: server unreachable, retried by Postfix).
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                   14400.0, 86400.0)
#: Seconds per million payload bytes (the MIG validates a few MB a second).
PER_MB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: The listeners a submission comes in by (``message.listener``): the public ones and
#: ``internal``, the third value migration 0002 allows.
LISTENERS = (*identity.LISTENERS, "internal")
#: A statement that takes longer fails the scrape rather than piling up behind it.
STATEMENT_TIMEOUT_MS = 10_000

#: When the message was submitted (migration 0011), else when the transport saw it.
_SUBMITTED = "coalesce(m.submitted_at, m.received_at)"


def _histogram(source: str, bounds: Sequence[float]) -> str:
    """A subquery: per bucket index (the first bound ``s`` is at most), the number and
    the sum of the values ``s`` of ``source``, as a JSON array of [index, count, sum]."""
    case = " ".join(f"WHEN s <= {bound!r} THEN {i}" for i, bound in enumerate(bounds))
    return ("(SELECT coalesce(json_agg(json_build_array(i, n, total)), '[]') FROM"
            f" (SELECT CASE {case} ELSE {len(bounds)} END AS i, count(*) AS n,"
            f" sum(s) AS total FROM {source} GROUP BY 1) x)")


#: Everything a scrape reads, in one statement (one round trip). ``%(lifetime)s``:
#: Postfix's queue lifetime in seconds.
QUERY = f"""
WITH outcomes AS (
    SELECT m.listener,
           CASE WHEN count(*) FILTER (WHERE r.status LIKE '2%%') = count(*) THEN 'accepted'
                WHEN count(*) FILTER (WHERE r.status LIKE '2%%') = 0 THEN 'rejected'
                ELSE 'partial' END AS outcome
    FROM message m JOIN message_recipient r ON r.message_id = m.id
    WHERE m.listener IN ('mta', 'msa', 'internal')
    GROUP BY m.id
), to_copy AS MATERIALIZED (
    SELECT greatest(extract(epoch FROM f.injected_at - {_SUBMITTED})::float8, 0) AS s
    FROM forward f JOIN message m ON m.id = f.message_id
    WHERE f.state = 'injected' AND f.recipient NOT LIKE '*%%'
), to_dsn AS MATERIALIZED (
    SELECT greatest(extract(epoch FROM n.injected_at - {_SUBMITTED})::float8, 0) AS s
    FROM notice_delivery n JOIN message m ON m.id = n.message_id
    WHERE n.kind = 'dsn' AND n.state = 'injected'
), answered AS MATERIALIZED (
    -- Copies a report came back about (any action but delayed), within the lifetime.
    SELECT e.message_id, lower(x->>'recipient') AS recipient
    FROM event e, jsonb_array_elements(e.detail->'recipients') x
    WHERE e.kind = 'agency-dsn' AND e.at > now() - make_interval(secs => %(lifetime)s)
      AND x->>'action' <> 'delayed'
), quiet AS MATERIALIZED (
    -- Automatic submissions: their copies ask for no report.
    SELECT message_id FROM event
    WHERE kind = 'automatic' AND at > now() - make_interval(secs => %(lifetime)s)
), waiting AS MATERIALIZED (
    -- Copies not accepted yet: not sent, or sent to an MTA and not answered.
    SELECT f.destination, f.created_at FROM forward f
    WHERE f.state = 'pending' AND f.recipient NOT LIKE '*%%'
      AND f.created_at > now() - make_interval(secs => %(lifetime)s)
    UNION ALL
    SELECT f.destination, f.created_at FROM forward f
    WHERE f.state = 'injected' AND f.recipient NOT LIKE '*%%' AND f.queue_id <> 'maildrop'
      AND f.created_at > now() - make_interval(secs => %(lifetime)s)
      AND NOT EXISTS (SELECT FROM quiet q WHERE q.message_id = f.message_id)
      AND NOT EXISTS (SELECT FROM answered a WHERE a.message_id = f.message_id
                      AND a.recipient = f.destination)
      AND NOT EXISTS (SELECT FROM answered a WHERE a.message_id = f.message_id
                      AND a.recipient = f.physical)
), per_mb AS MATERIALIZED (
    SELECT (detail->>'seconds')::float8 / ((detail->>'bytes')::float8 / 1e6) AS s
    FROM event WHERE kind = 'mig-validated' AND (detail->>'bytes')::float8 > 0
)
SELECT
  (SELECT coalesce(json_agg(json_build_array(listener, outcome, n)), '[]')
     FROM (SELECT listener, outcome, count(*) AS n FROM outcomes GROUP BY 1, 2) x)
     AS submissions,
  (SELECT coalesce(json_agg(json_build_array(reason, n)), '[]') FROM (
     SELECT coalesce(r.reason_key, 'other') AS reason, count(*) AS n
     FROM message_recipient r JOIN message m ON m.id = r.message_id
     WHERE r.status LIKE '5%%' AND m.envelope_from <> '' AND m.listener <> 'refused'
       AND NOT EXISTS (SELECT FROM event e WHERE e.message_id = m.id
                       AND e.kind = 'automatic')
     GROUP BY 1
     UNION ALL
     SELECT 'agency-failure', count(*) FROM forward WHERE recipient = '*agency-failure*'
     HAVING count(*) > 0) x) AS dsn_failures,
  (SELECT coalesce(json_agg(json_build_array(type, rule, n)), '[]') FROM (
     SELECT f->>0 AS type, f->>1 AS rule, sum((f->>2)::bigint) AS n
     FROM (SELECT DISTINCT ON (message_id) detail FROM event
           WHERE kind = 'mig-validated' AND detail ? 'findings'
           ORDER BY message_id, id) v,
          jsonb_array_elements(v.detail->'findings') f
     GROUP BY 1, 2) x) AS findings,
  (SELECT coalesce(json_object_agg(state, n), '{{}}') FROM (
     SELECT state, count(*) AS n FROM forward WHERE recipient NOT LIKE '*%%'
     GROUP BY state) x) AS copies,
  (SELECT coalesce(json_agg(json_build_array(name, pending, oldest)), '[]') FROM (
     SELECT p.name, count(w.destination) AS pending,
            coalesce(extract(epoch FROM now() - min(w.created_at))::float8, 0) AS oldest
     FROM party p
     LEFT JOIN address a ON a.party_id = p.id
     LEFT JOIN waiting w ON w.destination = a.logical
     GROUP BY p.name) x) AS parties,
  (SELECT count(*) FROM event WHERE kind = 'maildrop-deferred') AS lock_waits,
  {_histogram("to_copy", LATENCY_BUCKETS)} AS to_copy,
  {_histogram("to_dsn", LATENCY_BUCKETS)} AS to_dsn,
  {_histogram("per_mb", PER_MB_BUCKETS)} AS per_mb
"""

def read(conn: psycopg.Connection[Any], queue_lifetime: float) -> dict[str, Any]:
    """What a scrape reports, from the message log (one statement)."""
    row = conn.execute(QUERY, {"lifetime": queue_lifetime}).fetchone()
    assert row is not None
    return {k: json.loads(v) if isinstance(v, str) else v for k, v in dict(row).items()}


def _histogram_family(name: str, doc: str, rows: list[list[Any]],
                      bounds: Sequence[float]) -> HistogramMetricFamily:
    counts = [0] * (len(bounds) + 1)
    total = 0.0
    for index, n, part in rows:
        counts[int(index)] += int(n)
        total += float(part or 0)
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip([*map(str, bounds), "+Inf"], counts, strict=True):
        running += n
        buckets.append((bound, running))
    family = HistogramMetricFamily(name, doc)
    family.add_metric([], buckets, total)
    return family


def families(data: dict[str, Any]) -> list[Metric]:
    """The metric families of one scrape, from :func:`read`'s result."""
    submissions = CounterMetricFamily(
        "singlewindow_submissions", "Submissions by listener and outcome (accepted: every "
        "recipient delivered, rejected: none, partial: some)", labels=["listener", "outcome"])
    seen = {(listener, outcome): n for listener, outcome, n in data["submissions"]}
    for listener in LISTENERS:
        for outcome in ("accepted", "rejected", "partial"):
            submissions.add_metric([listener, outcome], seen.get((listener, outcome), 0))
    failures = CounterMetricFamily(
        "singlewindow_dsn_failures", "Failure DSNs to submitters by reason (SPEC R5.3 "
        "keyword)", labels=["reason"])
    for reason, n in data["dsn_failures"]:
        failures.add_metric([reason], n)
    findings = CounterMetricFamily(
        "singlewindow_mig_findings", "MIG findings by type (error class) and rule, once "
        "per message", labels=["type", "rule"])
    for type_, rule, n in data["findings"]:
        findings.add_metric([type_, rule], n)
    copies = CounterMetricFamily(
        "singlewindow_copies", "Copies of submissions by state (injected and refused are "
        "final)", labels=["state"])
    for state in ("pending", "injected", "refused"):
        copies.add_metric([state], data["copies"].get(state, 0))
    pending = GaugeMetricFamily(
        "singlewindow_agency_pending_copies", "Copies the party's server has not accepted "
        "yet", labels=["agency"])
    oldest = GaugeMetricFamily(
        "singlewindow_agency_oldest_pending_seconds", "Age of the oldest copy the party's "
        "server has not accepted yet (0: none)", labels=["agency"])
    for name, n, age in data["parties"]:
        pending.add_metric([name], n)
        oldest.add_metric([name], float(age))
    waits = CounterMetricFamily(
        "singlewindow_maildrop_lock_waits", "Deliveries deferred (4.2.1) because a POP3 "
        "session held the maildrop", value=data["lock_waits"])
    return [
        submissions, failures, findings, copies, pending, oldest, waits,
        _histogram_family("singlewindow_submission_to_copy_seconds",
                          "From submission to the copy's commit by its receiver",
                          data["to_copy"], LATENCY_BUCKETS),
        _histogram_family("singlewindow_submission_to_dsn_seconds",
                          "From submission to the DSN's delivery to the submitter",
                          data["to_dsn"], LATENCY_BUCKETS),
        _histogram_family("singlewindow_mig_validation_seconds_per_megabyte",
                          "MIG validation seconds per million payload bytes",
                          data["per_mb"], PER_MB_BUCKETS),
    ]


class StoreCollector:
    """The message log's metrics (see the module's docstring); one connection, kept
    between scrapes, as the daemons' role, read-only."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.lifetime = config.queue.lifetime_seconds
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()  # scrapes may come in concurrently

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = connect(self.config.database, autocommit=True, role=DAEMON_ROLE,
                           application_name="sw-metrics")
            conn.execute("SET default_transaction_read_only = on")
            conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            # Compiling this statement costs more than running it.
            conn.execute("SET jit = off")
            self._conn = conn
        return self._conn

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        data: dict[str, Any] | None = None
        with self._lock:
            try:
                data = read(self._connection(), self.lifetime)
            except psycopg.Error as exc:
                log.error("message log unreadable, its metrics left out: %s: %s",
                          type(exc).__name__, exc)
                self.close()
        up = GaugeMetricFamily("singlewindow_metrics_store_up", "1 if the exporter read "
                               "the message log at this scrape", value=0 if data is None else 1)
        took = GaugeMetricFamily("singlewindow_metrics_store_seconds", "Seconds this "
                                 "scrape's statement took", value=time.perf_counter() - started)
        yield from [up, took, *(families(data) if data is not None else [])]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def health_collector(config: Config) -> Any | None:
    """``singlewindow.health.HealthCollector(config)``, if that module is installed."""
    try:
        module = importlib.import_module("singlewindow.health")
    except ImportError:
        return None
    return module.HealthCollector(config)


def registry(config: Config) -> CollectorRegistry:
    """Every collector the exporter serves."""
    found = CollectorRegistry()
    found.register(StoreCollector(config))
    try:
        config.metrics_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("the daemons' counters are left out: cannot make %s: %s",
                    config.metrics_dir, exc.strerror)
    else:
        # Registers itself; prometheus_client leaves its constructor unannotated.
        MultiProcessCollector(found, path=str(config.metrics_dir))  # type: ignore[no-untyped-call]
    health = health_collector(config)
    if health is not None:
        found.register(health)
    return found


def serve(config: Config, stop: threading.Event) -> None:
    """Serve ``/metrics`` until ``stop`` is set."""
    host, port = config.metrics.address
    server, thread = start_http_server(port, host, registry(config))
    log.info("serving /metrics on %s", config.metrics.listen)
    daemon.notify("READY=1")
    interval = daemon.watchdog_interval()
    pinged = time.monotonic()
    try:
        while not stop.wait(0.2):  # short waits: a signal handler runs between them
            # The watchdog (systemd's WatchdogSec=, the local stack's supervisor) hears
            # from us only while the thread that answers scrapes is alive.
            if interval is not None and thread.is_alive() \
                    and time.monotonic() - pinged >= interval:
                daemon.notify("WATCHDOG=1")
                pinged = time.monotonic()
    finally:
        daemon.notify("STOPPING=1")
        server.shutdown()
        server.server_close()
        thread.join(5)


def main(argv: list[str] | None = None) -> None:
    args = daemon.argument_parser("Single Window Prometheus exporter").parse_args(argv)
    daemon.setup_logging("sw-metrics", args.verbose)
    config = daemon.load_config(args)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve(config, stop)
    except (OSError, ConfigError) as exc:
        raise SystemExit(f"sw-metrics: cannot serve on {config.metrics.listen}: {exc}") \
            from None


if __name__ == "__main__":
    main()
