"""The health probes' thresholds and the collector, without a stack: real certificates,
real sockets where nothing answers, showq's JSON as postqueue -j prints it."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from singlewindow import health
from singlewindow.config import (
    Config,
    Console,
    Database,
    Health,
    Listeners,
    Maildrop,
    Paths,
    Tls,
)
from tests.support.local import free_port, short_state_dir

NOW = 1_800_000_000.0


def _entry(queue: str, arrival: float) -> str:
    # The fields of postqueue(1) -j that the probe reads, among others it ignores.
    return json.dumps({"queue_name": queue, "queue_id": "4jd9b55SgDzJGl8",
                       "arrival_time": int(arrival), "message_size": 1234,
                       "forced_expire": False, "sender": "acme@sw.test",
                       "recipients": [{"address": "customs@sw.test",
                                       "delay_reason": "connect to 127.0.0.1[127.0.0.1]:2602: "
                                                       "Connection refused"}]})


def test_queue_listing_counted_per_queue_with_the_oldest_arrival() -> None:
    listing = "\n".join([_entry("deferred", NOW - 7200), _entry("deferred", NOW - 60),
                         _entry("active", NOW - 5), _entry("maildrop", NOW - 1),
                         _entry("hold", NOW - 99999)]) + "\n"
    states = health.queue_states(listing, NOW)
    assert states == {"incoming": health.QueueState(1, 1.0),
                      "active": health.QueueState(1, 5.0),
                      "deferred": health.QueueState(2, 7200.0),
                      "hold": health.QueueState(1, 99999.0)}
    assert health.queue_states("", NOW)["deferred"] == health.QueueState(0, 0.0)


def _deferred(queue_id: str, arrival: float, sender: str, *recipients: tuple[str, str]
              ) -> str:
    return json.dumps({"queue_name": "deferred", "queue_id": queue_id,
                       "arrival_time": int(arrival), "message_size": 99, "sender": sender,
                       "recipients": [{"address": a, **({"delay_reason": r} if r else {})}
                                      for a, r in recipients]})


#: A listing with what the console's queue page shows: deferred mail with its reasons.
LISTING = "\n".join([
    _deferred("4QD1", NOW - 7200, "acme@sw.test",
              ("in@customs.example", "connect to 127.0.0.1[127.0.0.1]:2602: Connection "
                                     "refused"), ("in@coast.example", "")),
    _entry("maildrop", NOW - 1),
    _deferred("4QD2", NOW - 60, "", ("edi@acme.example", "450 4.2.1 Maildrop is in use"))
]) + "\n\n"


def test_queue_entries_are_read_from_the_listing() -> None:
    first, incoming, second = health.queue_entries(LISTING)
    assert first == health.QueueEntry(
        "4QD1", "deferred", NOW - 7200, "acme@sw.test",
        ["in@customs.example", "in@coast.example"],
        ["connect to 127.0.0.1[127.0.0.1]:2602: Connection refused"])
    assert (incoming.queue_id, incoming.queue_name) == ("4jd9b55SgDzJGl8", "incoming")
    assert (second.sender, second.recipients, second.reasons) == (
        "", ["edi@acme.example"], ["450 4.2.1 Maildrop is in use"])
    assert health.queue_entries("") == []


def _fake_postqueue(state: Path, output: str, code: int = 0) -> Config:
    """A postqueue that prints ``output`` when asked for -j of the stack's Postfix."""
    script = state / "postqueue"
    (state / "listing").write_text(output)
    script.write_text(f"#!/bin/sh\n[ \"$1 $3\" = \"-c -j\" ] || exit 9\n"
                      f"cat {state / 'listing'}\necho 'postqueue: fatal: no' >&2\n"
                      f"exit {code}\n")
    script.chmod(0o755)
    config = Config(paths=Paths(state_dir=state))
    return replace(config, transport=replace(config.transport, postqueue=script))


def test_the_queue_is_listed_by_one_run_of_postqueue(tmp_path: Path) -> None:
    config = _fake_postqueue(tmp_path, LISTING)
    assert [e.queue_id for e in health.list_queue_entries(config)] == [
        "4QD1", "4jd9b55SgDzJGl8", "4QD2"]
    states = health.list_queue(config, now=NOW)
    assert (states["deferred"], states["incoming"]) == (health.QueueState(2, 7200.0),
                                                        health.QueueState(1, 1.0))
    broken = _fake_postqueue(tmp_path, "", code=1)
    for listed in (health.list_queue, health.list_queue_entries):
        with pytest.raises(OSError, match="postqueue -j exited 1: postqueue: fatal: no"):
            listed(broken)


def test_queue_thresholds() -> None:
    limits = Health(queue_warning=3, queue_critical=5, queue_age_warning=100,
                    queue_age_critical=1000, hold_warning=1)
    quiet = {q: health.QueueState() for q in health.QUEUES}
    assert health.queue_problems(quiet, limits) == []
    busy = {**quiet, "deferred": health.QueueState(2, 150.0), "active": health.QueueState(1, 3)}
    assert [(p.severity, p.text) for p in health.queue_problems(busy, limits)] == [
        (health.WARNING, "3 messages waiting in Postfix's queue (warning from 3)"),
        (health.WARNING, "the oldest message has waited 150 s (warning from 100)")]
    worse = {**busy, "deferred": health.QueueState(9, 5000.0),
             "hold": health.QueueState(2, 10.0)}
    assert [(p.severity, p.component) for p in health.queue_problems(worse, limits)] == [
        (health.CRITICAL, "queue"), (health.CRITICAL, "queue"), (health.WARNING, "queue")]
    off = Health(queue_warning=0, queue_critical=0, queue_age_warning=0,
                 queue_age_critical=0, hold_warning=0)
    assert health.queue_problems(worse, off) == []


def _certificate(directory: Path, days: int) -> Path:
    cert = directory / f"cert-{days}.pem"
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-days", str(days), "-subj", "/CN=t",
                    "-keyout", str(directory / f"key-{days}.pem"), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert


def test_certificate_expiry_thresholds() -> None:
    state = short_state_dir()
    try:
        now = time.time()
        limits = Health(certificate_warning_days=21, certificate_critical_days=7)
        found = {days: health.not_after(_certificate(state, days)) for days in (3, 15, 400)}
        assert abs(found[400] - (now + 400 * 86400)) < 120
        severities = {days: [p.severity for p in health.certificate_problems(
            "listeners", state, when, now, limits)] for days, when in found.items()}
        assert severities == {3: [health.CRITICAL], 15: [health.WARNING], 400: []}
        [expired] = health.certificate_problems("listeners", state, now - 1, now, limits)
        assert expired.severity == health.CRITICAL and "has expired" in expired.text
        with pytest.raises(OSError, match="cannot read"):
            health.not_after(state / "key-3.pem")
    finally:
        shutil.rmtree(state)


def _nothing_runs(state: Path) -> Config:
    """A node whose components are all down: free ports, empty directories."""
    ports = Listeners(mta_port=free_port(), msa_port=free_port(), pop3_port=free_port())
    cert = _certificate(state, 30)
    return replace(Config(), listeners=ports, paths=Paths(state_dir=state),
                   database=Database(conninfo=f"host={state} dbname=singlewindow"),
                   tls=Tls(cert_file=cert), health=Health(timeout=2.0),
                   console=Console(listen=f"127.0.0.1:{free_port()}"))


def test_a_node_where_nothing_runs_is_critical_and_names_each_component() -> None:
    state = short_state_dir()
    try:
        report = health.check(_nothing_runs(state))
    finally:
        shutil.rmtree(state)
    assert report.status == health.CRITICAL
    assert report.up == dict.fromkeys(health.COMPONENTS, False)
    lines = report.lines()
    assert lines[0].startswith("SINGLEWINDOW CRITICAL - ")
    assert "0 of 7 components answer" in lines[0]
    for component in health.COMPONENTS:
        assert any(line.startswith(f"CRITICAL {component}: ") for line in lines[1:]), lines
    assert any(line.startswith("CRITICAL queue: cannot list") for line in lines)
    assert any("reinject certificate" in line or "cannot read" in line for line in lines)


def test_the_collector_exports_the_contracts_names() -> None:
    state = short_state_dir()
    try:
        config = _nothing_runs(state)
        registry = CollectorRegistry()
        started = time.monotonic()
        registry.register(health.HealthCollector(config))
        assert time.monotonic() - started < 0.5, "registering must not run the probes"
        text = generate_latest(registry).decode()
    finally:
        shutil.rmtree(state)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    up = {s.labels["component"]: s.value for s in families["singlewindow_component_up"].samples}
    assert up == dict.fromkeys(health.COMPONENTS, 0.0)
    [expiry] = families["singlewindow_tls_certificate_expiry_timestamp_seconds"].samples
    assert expiry.labels == {"certificate": "listeners"}
    assert abs(expiry.value - (time.time() + 30 * 86400)) < 600
    # Postfix's queue could not be listed: no queue samples rather than false zeros.
    assert families["singlewindow_postfix_queue_messages"].samples == []


def test_an_edge_probes_its_maildrop_backend() -> None:
    """Issue 15: with [maildrop] backend set, ``maildrop`` is probed like the transport
    would open its session (here nothing listens there)."""
    state = short_state_dir()
    try:
        port = free_port()
        config = replace(_nothing_runs(state), maildrop=Maildrop(backend=f"localhost:{port}"))
        report = health.check(config)
        single = health.check(_nothing_runs(state))
    finally:
        shutil.rmtree(state)
    assert report.up["maildrop"] is False
    assert any(line.startswith(f"CRITICAL maildrop: the maildrop backend localhost:{port}: ")
               for line in report.lines())
    assert "maildrop" not in single.up


def _greeter(line: bytes) -> tuple[socket.socket, threading.Thread]:
    """A listener on 127.0.0.1 that greets each connection with ``line`` and closes."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(line)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize(("greeting", "up"), [
    (b"220 pop1 LMTP sw-maildrop\r\n", True),
    # The probe's address is not one of the edges: refused, but the service answers.
    (b"554 5.7.1 This maildrop service serves the hub's edges only\r\n", True),
    (b"421 4.3.2 Service shutting down\r\n", False),
    (None, False)])
def test_a_pop3_backend_probes_its_maildrop_service_and_pop3s(greeting: bytes | None,
                                                              up: bool) -> None:
    """Issue 15: a POP3 backend runs ``dovecot`` and ``maildrop`` only; its maildrop
    service counts as up when it greets (220, or 554 5.7.1 to a non-edge), and Dovecot is
    probed on POP3S, the only listener a backend has."""
    state = short_state_dir()
    server = None
    try:
        if greeting is None:
            port = free_port()
        else:
            server, _ = _greeter(greeting)
            port = server.getsockname()[1]
        node = _nothing_runs(state)
        pop3s = free_port()
        config = replace(node, listeners=replace(node.listeners, pop3s_port=pop3s),
                         health=replace(node.health, components=("dovecot", "maildrop")),
                         maildrop=Maildrop(listen=f"127.0.0.1:{port}",
                                           clients=("10.0.2.11",)))
        report = health.check(config)
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(state)
    assert report.up == {"dovecot": False, "maildrop": up}
    lines = report.lines()
    assert any(line.startswith(f"CRITICAL dovecot: the POP3S listener 127.0.0.1:{pop3s} ")
               for line in lines), lines
    assert any(line.startswith("CRITICAL maildrop: the maildrop service ")
               for line in lines) is not up, lines
    assert not any(line.startswith(("CRITICAL queue", "CRITICAL postgresql"))
                   or "reinject" in line for line in lines), lines
