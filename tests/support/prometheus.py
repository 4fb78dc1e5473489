"""Prometheus's own tools for the tests: ``promtool`` and a real server (Debian's
``prometheus`` package, scripts/install). Either missing is a failure, never a skip. And
the exporter's metrics (:data:`METRICS`) that the alert rules, the dashboard and the
running stack are checked against."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.local import free_port

#: The exporter's metrics (issue 14's shared contract: singlewindow.metrics, and
#: singlewindow.health's collector), by name and type: the one list the rules, their
#: tests and the dashboard are checked against.
METRICS = {
    "singlewindow_submissions_total": "counter",
    "singlewindow_dsn_failures_total": "counter",
    "singlewindow_mig_findings_total": "counter",
    "singlewindow_copies_total": "counter",
    "singlewindow_agency_pending_copies": "gauge",
    "singlewindow_agency_oldest_pending_seconds": "gauge",
    "singlewindow_maildrop_lock_waits_total": "counter",
    "singlewindow_policy_decisions_total": "counter",
    "singlewindow_submission_to_copy_seconds": "histogram",
    "singlewindow_submission_to_dsn_seconds": "histogram",
    "singlewindow_mig_validation_seconds_per_megabyte": "histogram",
    "singlewindow_component_up": "gauge",
    "singlewindow_postfix_queue_messages": "gauge",
    "singlewindow_postfix_queue_oldest_seconds": "gauge",
    "singlewindow_tls_certificate_expiry_timestamp_seconds": "gauge",
    # The exporter's own: whether it read the message log at this scrape, and how long
    # its statement took.
    "singlewindow_metrics_store_up": "gauge",
    "singlewindow_metrics_store_seconds": "gauge",
}


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing (scripts/install: the prometheus package)"
    return subprocess.run([tool, *map(str, args)], capture_output=True, text=True,
                          check=False, timeout=300, cwd=cwd)


class Prometheus:
    """A running server's HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as r:
            answer = json.load(r)
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expression)["result"]
        return result

    def wait_for(self, expression: str, timeout: float = 60) -> list[dict[str, Any]]:
        """The query's result once it is not empty."""
        deadline = time.monotonic() + timeout
        while not (result := self.query(expression)):
            assert time.monotonic() < deadline, f"{expression}: no result in {timeout} s"
            time.sleep(0.5)
        return result


@contextmanager
def prometheus(config: dict[str, Any], work: Path) -> Iterator[Prometheus]:
    """A Prometheus server with ``config`` (prometheus.yml as a dict), its data under
    ``work``, on a free loopback port; stopped by its pid on exit."""
    server = shutil.which("prometheus")
    assert server, "prometheus is missing (scripts/install: the prometheus package)"
    work.mkdir(parents=True, exist_ok=True)
    (work / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    address = f"127.0.0.1:{free_port()}"
    with (work / "prometheus.log").open("w") as log:
        proc = subprocess.Popen(
            [server, f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address={address}"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (work / "prometheus.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://{address}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus is not ready after 60 s"
            time.sleep(0.2)
        yield Prometheus(f"http://{address}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
