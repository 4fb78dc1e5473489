"""The stack's metrics exporter after real submissions through Postfix, its counts after
restarts, and a real Prometheus server scraping it (issue 14)."""

from __future__ import annotations

import os
import signal
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from singlewindow import services, stack
from singlewindow.config import ADMIN_ROLE, Config
from singlewindow.store import connect
from tests.support import factory
from tests.support.prometheus import METRICS, Prometheus
from tests.support.prometheus import prometheus as running_prometheus
from tests.support.world import World, message, wait_until

Sample = tuple[str, tuple[tuple[str, str], ...]]


@pytest.fixture(scope="module")
def world(sw_stack: Config) -> Iterator[World]:
    with World(sw_stack) as world:
        world.add("co", "company")
        world.add("ag", "agency")
        world.add("off", "agency", active=False)
        yield world


def scrape(config: Config) -> dict[Sample, float]:
    """Every sample the stack's exporter serves now."""
    host, port = config.metrics.address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=30) as response:
        assert response.status == 200
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def get(samples: dict[Sample, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def submissions(samples: dict[Sample, float], outcome: str) -> float:
    return get(samples, "singlewindow_submissions_total", listener="mta", outcome=outcome)


def submitted_in_store(config: Config) -> int:
    """Submissions with a decided recipient, counted in the message log directly."""
    with connect(config.database, role=ADMIN_ROLE) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT m.id) AS n FROM message m JOIN message_recipient r"
            " ON r.message_id = m.id WHERE m.listener IN ('mta', 'msa', 'internal')"
        ).fetchone()
    assert row is not None
    return int(row["n"])


def submit(world: World, *to: str) -> None:
    co = world["co"]
    data = message(co, to[0], "metrics " + os.urandom(4).hex(), factory.gendec())
    assert world.submit(co, list(to), data) == {}


def test_the_exporter_counts_what_was_submitted_through_postfix(world: World) -> None:
    config, ag, off = world.config, world["ag"], world["off"]
    assert dict(stack.status(config.paths.state_dir))["metrics"] is not None
    before = scrape(config)
    submit(world, ag.logical)
    submit(world, ag.logical)
    submit(world, off.logical)  # not activated: refused by the transport (R5.3 #10)
    submit(world, ag.logical, off.logical)

    def counted() -> bool:
        now = scrape(config)
        return [submissions(now, o) - submissions(before, o)
                for o in ("accepted", "rejected", "partial")] == [2, 1, 1]
    wait_until(counted, timeout=60)
    after = scrape(config)

    def delta(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)
    assert delta("singlewindow_dsn_failures_total", reason="address-not-activated") == 2
    assert delta("singlewindow_copies_total", state="injected") == 3
    assert delta("singlewindow_submission_to_copy_seconds_count") == 3
    assert delta("singlewindow_mig_validation_seconds_per_megabyte_count") == 3
    # One decision per RCPT (the MTA listener asks at RCPT time only).
    assert delta("singlewindow_policy_decisions_total", listener="mta", action="accept") == 5
    assert get(after, "singlewindow_metrics_store_up") == 1
    # The agency's MTA (a sink without DSN) took each copy: Postfix reports them
    # "relayed", and then nothing is pending there any more.
    wait_until(lambda: get(scrape(config), "singlewindow_agency_pending_copies",
                           agency=ag.name) == 0, timeout=60)
    assert get(scrape(config), "singlewindow_agency_oldest_pending_seconds",
               agency=ag.name) == 0


def replaced(config: Config, name: str, old: int) -> int:
    """Kill daemon ``name`` (pid ``old``) and wait for the supervisor's new one."""
    os.kill(old, signal.SIGKILL)
    found: list[int] = []

    def new_one() -> bool:
        pid = dict(stack.status(config.paths.state_dir))[name]
        if pid is not None and pid != old and services.DAEMONS[name].ready(config):
            found.append(pid)
        return bool(found)
    wait_until(new_one, timeout=30)
    return found[0]


def test_counts_survive_restarts_of_the_exporter_and_the_policy_daemon(world: World) -> None:
    config = world.config

    def counted() -> float:
        return sum(submissions(scrape(config), o) for o in ("accepted", "rejected", "partial"))
    # Other modules' tests share the stack (MSA submissions, mail still waiting for an
    # agency that is decided when its queue lifetime ends): this test's own submissions
    # are counted as differences, and others may be decided meanwhile.
    expected = counted() + 1
    submit(world, world["ag"].logical)
    wait_until(lambda: counted() >= expected)
    before = scrape(config)
    decisions = {"listener": "mta", "action": "accept"}
    assert get(before, "singlewindow_policy_decisions_total", **decisions) >= 1

    status = dict(stack.status(config.paths.state_dir))
    exporter, policyd = status["metrics"], status["policyd"]
    assert exporter is not None and policyd is not None
    replaced(config, "metrics", exporter)
    after = scrape(config)
    for outcome in ("accepted", "rejected", "partial"):  # nothing lost by the restart
        assert submissions(after, outcome) >= submissions(before, outcome)
    assert counted() >= expected
    assert get(after, "singlewindow_policy_decisions_total", **decisions) == \
        get(before, "singlewindow_policy_decisions_total", **decisions)

    # The policy daemon's counts live in its process: its file outlives it.
    replaced(config, "policyd", policyd)
    assert get(scrape(config), "singlewindow_policy_decisions_total", **decisions) == \
        get(before, "singlewindow_policy_decisions_total", **decisions)
    submit(world, world["ag"].logical)
    assert get(scrape(config), "singlewindow_policy_decisions_total", **decisions) == \
        get(before, "singlewindow_policy_decisions_total", **decisions) + 1
    wait_until(lambda: counted() >= expected + 1)


@pytest.fixture
def prometheus(world: World, tmp_path: Path) -> Iterator[Prometheus]:
    """A real Prometheus server scraping the stack's exporter every second."""
    host, port = world.config.metrics.address
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": "singlewindow",
                                  "static_configs": [{"targets": [f"{host}:{port}"]}]}]}
    with running_prometheus(config, tmp_path / "prometheus") as server:
        yield server


def query(server: Prometheus, expression: str) -> list[tuple[dict[str, str], float]]:
    """The instant vector ``expression`` evaluates to, as each series' labels and value."""
    return [(dict(s["metric"]), float(s["value"][1])) for s in server.query(expression)]


def test_the_exporter_serves_every_metric_the_rules_and_dashboard_use(world: World) -> None:
    """The one list the alert rules and the dashboard are checked against
    (tests/support/prometheus.METRICS) is what the running stack serves, each with
    its type: a rule over a name the exporter does not serve would never fire."""
    submit(world, world["ag"].logical)
    host, port = world.config.metrics.address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=30) as response:
        families = {f.name: f.type for f in
                    text_string_to_metric_families(response.read().decode())}
    served = {(name if kind != "counter" else f"{name}_total"): kind
              for name, kind in families.items() if name.startswith("singlewindow_")}
    assert {n: k for n, k in served.items() if n in METRICS} == METRICS
    assert served.keys() - METRICS.keys() == set(), "served but not in METRICS"


def test_prometheus_scrapes_the_submission_counter(world: World,
                                                   prometheus: Prometheus) -> None:
    config = world.config
    before = submitted_in_store(config)
    submit(world, world["ag"].logical)
    wait_until(lambda: submitted_in_store(config) > before)

    def total() -> float | None:
        series = query(prometheus, "singlewindow_submissions_total")
        return sum(value for _, value in series) if series else None
    try:
        wait_until(lambda: total() == submitted_in_store(config), timeout=60)
    except AssertionError:
        targets = prometheus.api("targets")["activeTargets"]
        raise AssertionError(f"Prometheus has {total()}, the store {submitted_in_store(config)};"
                             " targets: "
                             + "; ".join(f"{t['scrapeUrl']} {t['health']} {t['lastError']}"
                                         for t in targets)) from None
    series = query(prometheus, "singlewindow_submissions_total")
    assert {labels["job"] for labels, _ in series} == {"singlewindow"}
    assert ("mta", "accepted") in {(labels["listener"], labels["outcome"])
                                   for labels, _ in series}
    assert [value for _, value in query(prometheus, 'up{job="singlewindow"}')] == [1.0]
