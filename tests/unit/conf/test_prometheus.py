"""The alert rules (conf/prometheus/alerts.yml), their unit tests (alerts_test.yml) and the
Grafana dashboard (conf/grafana/singlewindow.json), checked by Prometheus's own promtool.

``promtool check rules`` parses the rules, ``promtool test rules`` replays the series of
alerts_test.yml through them; a rule broken on purpose (a threshold, a `for`, a missing
de-duplication) must make the second fail. Every metric the rules, their tests and the
dashboard name must be one the exporter serves (:data:`METRICS`). promtool missing is a
failure (scripts/install: prometheus), never a skip.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.prometheus import METRICS, promtool

CONF = Path(__file__).resolve().parents[3] / "conf"
RULES = CONF / "prometheus" / "alerts.yml"
RULE_TESTS = CONF / "prometheus" / "alerts_test.yml"
DASHBOARD = CONF / "grafana" / "singlewindow.json"
ANSIBLE_ROLES = CONF.parent / "ansible" / "roles"

#: The series a histogram is exposed as.
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
SEVERITIES = {"warning", "critical"}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alerts() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"]
            if "alert" in rule]


def metric_names(expression: str) -> set[str]:
    """The Single Window metrics an expression names (``up`` is Prometheus's own), each
    histogram series by its histogram."""
    names = set()
    for name in re.findall(r"\bsinglewindow_[a-z0-9_]+", expression):
        for suffix in HISTOGRAM_SERIES:
            base = name.removesuffix(suffix)
            if base != name and METRICS.get(base) == "histogram":
                name = base
        names.add(name)
    return names


# --- The rules --------------------------------------------------------------------------

def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_refuses_a_rule_that_does_not_parse(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    broken.write_text(RULES.read_text().replace(
        "expr: singlewindow_component_up == 0", "expr: singlewindow_component_up == (0"))
    assert broken.read_text() != RULES.read_text()
    result = promtool("check", "rules", broken)
    assert result.returncode != 0 and "parse error" in result.stderr, result.stderr


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_waits_names_its_severity_and_says_what_to_check() -> None:
    for rule in alerts():
        name = rule["alert"]
        assert re.fullmatch(r"SingleWindow[A-Za-z]+", name), name
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: no for:"
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) == {"summary", "description"}, name
        # What to look at: a command, a unit, a variable or a dashboard panel.
        assert re.search(r"`[^`]+`|singlewindow_\w+__|dashboard", rule["annotations"][
            "description"]), f"{name}: the description names nothing to check"


def test_the_role_variables_the_alerts_name_exist() -> None:
    """A description that says which Ansible variable to check names one a role defines."""
    defaults = "".join(p.read_text() for p in ANSIBLE_ROLES.glob("*/defaults/main.yml"))
    named = set(re.findall(r"\bsinglewindow_[a-z0-9]+__[a-z0-9_]+", RULES.read_text()))
    assert named
    assert {v for v in named if not re.search(rf"^{v}:", defaults, re.M)} == set()


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """Each alert and each of its severities fires in some test; each alert is asserted
    quiet at some point (before its `for:` has passed, or for normal traffic)."""
    fired, quiet = set(), set()
    for case in load(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            if check["exp_alerts"]:
                fired |= {(check["alertname"], a["exp_labels"]["severity"])
                          for a in check["exp_alerts"]}
            else:
                quiet.add(check["alertname"])
    expected = {(rule["alert"], rule["labels"]["severity"]) for rule in alerts()}
    assert expected - fired == set()
    assert {name for name, _ in expected} - quiet == set()


#: Rules broken on purpose: (what it breaks, text in alerts.yml, its replacement). Each
#: must make the rule tests fail.
BREAKAGES = [
    ("agency alert once per edge, not once per agency",
     "max by (agency) (singlewindow_agency_oldest_pending_seconds) > 900",
     "singlewindow_agency_oldest_pending_seconds > 900"),
    ("agency critical after 2 hours instead of 1",
     "max by (agency) (singlewindow_agency_oldest_pending_seconds) > 3600",
     "max by (agency) (singlewindow_agency_oldest_pending_seconds) > 7200"),
    ("component down without waiting",
     "expr: singlewindow_component_up == 0\n        for: 2m",
     "expr: singlewindow_component_up == 0\n        for: 0m"),
    ("messages on hold counted as waiting",
     'queue_messages{queue=~"incoming|active|deferred"}) > 100\n',
     'queue_messages{queue=~"incoming|active|deferred|hold"}) > 100\n'),
    ("queue age warning without waiting",
     'deferred"}) > 3600\n        for: 10m', 'deferred"}) > 3600\n        for: 1m'),
    ("DSN failure ratio without its minimum of failures",
     "\n          and max(sum by (instance) (increase(singlewindow_dsn_failures_total[1h])))"
     " >= 10", ""),
    ("MIG spike without a baseline for a class never seen",
     "\n            or max by (type) (sum by (type, instance) "
     "(increase(singlewindow_mig_findings_total[15m]))) * 0", ""),
    ("MIG spike that one file's findings set off",
     "for: 20m", "for: 10m"),
    ("an expired certificate reported as expiring",
     "(singlewindow_tls_certificate_expiry_timestamp_seconds - time() > 0) < 21 * 86400",
     "singlewindow_tls_certificate_expiry_timestamp_seconds - time() < 21 * 86400"),
    ("every job's targets reported as the exporter",
     'expr: up{job="singlewindow"} == 0', "expr: up == 0"),
]


@pytest.mark.parametrize(("what", "old", "new"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_a_broken_rule_fails_its_tests(tmp_path: Path, what: str, old: str, new: str) -> None:
    text = RULES.read_text()
    assert text.count(old) == 1, f"{what}: {old!r} is not in alerts.yml once"
    (tmp_path / "alerts.yml").write_text(text.replace(old, new))
    assert promtool("check", "rules", tmp_path / "alerts.yml").returncode == 0
    # The tests that name the broken alert (the others do not look at it).
    broken = alert_of(text, old)
    tests = load(RULE_TESTS)
    tests["tests"] = [case for case in tests["tests"]
                      if any(c["alertname"] == broken for c in case["alert_rule_test"])]
    assert tests["tests"], broken
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr, (
        f"{what}: the rule tests still pass\n{result.stdout}")


def alert_of(text: str, fragment: str) -> str:
    """The name of the alert whose rule holds ``fragment``."""
    before = text[:text.index(fragment)]
    return re.findall(r"- alert: (\w+)", before)[-1]


# --- The metric names -------------------------------------------------------------------

def test_the_rules_and_their_tests_use_only_the_exporters_metrics() -> None:
    used = set()
    for rule in alerts():
        used |= metric_names(rule["expr"])
    assert used - METRICS.keys() == set()
    assert "up" in re.findall(r"\bup\b", RULES.read_text())
    series = set()
    for case in load(RULE_TESTS)["tests"]:
        for s in case["input_series"]:
            series.add(s["series"].split("{", 1)[0])
    assert series - METRICS.keys() - {"up"} == set()


# --- The dashboard ----------------------------------------------------------------------

def dashboard_panels() -> list[dict[str, Any]]:
    board = json.loads(DASHBOARD.read_text())
    panels = []
    for panel in board["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row's
    return panels


def dashboard_expressions() -> list[str]:
    return [target["expr"] for panel in dashboard_panels()
            for target in panel.get("targets", [])]


def test_dashboard_uses_only_the_exporters_metrics_and_shows_each() -> None:
    used = set()
    for expression in dashboard_expressions():
        used |= metric_names(expression)
    assert used - METRICS.keys() == set()
    assert METRICS.keys() - used == set(), "metrics no panel shows"


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Each panel's query, with Grafana's variables filled in, is PromQL that promtool
    accepts (as the expression of a recording rule)."""
    values = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
              "$instance": "edge1:9750", "$agency": "customs"}
    rules = []
    for number, expression in enumerate(dashboard_expressions()):
        for variable, value in values.items():
            expression = expression.replace(variable, value)
        assert "$" not in expression, expression
        rules.append({"record": f"dashboard:query{number}", "expr": expression})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_importable() -> None:
    """What Grafana's import needs: a uid, unique panel ids, a Prometheus data source
    chosen at import (no data source of this site's name), histograms as quantiles."""
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"]
    ids = [panel["id"] for panel in dashboard_panels()]
    assert len(ids) == len(set(ids))
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    for panel in dashboard_panels():
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    for name, kind in METRICS.items():
        if kind == "histogram":
            assert any("histogram_quantile(" in e and f"{name}_bucket" in e
                       for e in dashboard_expressions()), name
