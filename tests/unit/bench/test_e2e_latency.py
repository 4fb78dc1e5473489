"""The paced part of the end-to-end bench (bench/e2e_latency.py): percentiles, the
schedule, tokens, and a paced run against a timing sink."""

from __future__ import annotations

import smtplib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import e2e_latency

from tests.support.local import free_port


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1 .. 100
    assert e2e_latency.percentile(values, 50) == 50.0
    assert e2e_latency.percentile(values, 99) == 99.0
    assert e2e_latency.percentile(values, 100) == 100.0
    # Unsorted input, and few values: p99 of 10 values is the largest.
    assert e2e_latency.percentile([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0],
                                  99) == 10.0
    assert e2e_latency.percentile([3.0], 50) == 3.0
    # With 200 values p99 is the second largest: a value really measured.
    assert e2e_latency.percentile([float(v) for v in range(200)], 99) == 197.0


@pytest.mark.parametrize("p", [0, -1, 101])
def test_percentile_refuses_what_is_no_percentile(p: float) -> None:
    with pytest.raises(ValueError):
        e2e_latency.percentile([1.0], p)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        e2e_latency.percentile([], 50)


def test_schedule_spaces_messages_evenly_from_zero() -> None:
    assert e2e_latency.schedule(4.0, 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert e2e_latency.schedule(40.0, 0) == []
    with pytest.raises(ValueError):
        e2e_latency.schedule(0.0, 3)


def test_tokens_of_another_run_do_not_count() -> None:
    run, other = "0123abcd", "ffff0000"
    data = (f"Subject: {e2e_latency.token(run, 7)}\r\n"
            f"Message-ID: <{e2e_latency.token(run, 7)}@x>\r\n"
            f"X-Old: {e2e_latency.token(other, 3)}\r\n").encode()
    assert e2e_latency.tokens_in(data, run) == {7}
    assert e2e_latency.tokens_in(data, other) == {3}


def test_latencies_count_only_what_arrived() -> None:
    due = {0: 10.0, 1: 10.5, 2: 11.0}
    lat = e2e_latency.latencies(due, {0: 10.02, 2: 11.1, 9: 1.0})
    assert (lat.sent, lat.arrived) == (3, 2)
    assert [round(m) for m in lat.millis] == [20, 100]


def test_paced_messages_are_due_on_schedule_and_each_arrives_once() -> None:
    run = "5eed5eed"
    sink = e2e_latency.TimingSink(free_port(), run).start()
    try:
        sent = e2e_latency.send_paced(sink.port, rate=50.0, count=12, sessions=3,
                                      sender="a@x.example", rcpt="b@y.example",
                                      body="<x/>\n", run=run, domain="x.example")
    finally:
        sink.stop()
    assert sent.failed == []
    assert sorted(sent.due) == list(range(12))
    # Due times follow the schedule exactly (open loop), whichever session sent each.
    start = sent.due[0]
    assert [round((sent.due[n] - start) * 50, 6) for n in range(12)] == [float(n) for n in
                                                                           range(12)]
    assert sorted(sink.arrived) == list(range(12)) and sink.messages == 12
    assert all(sink.arrived[n] >= sent.due[n] for n in range(12))


def test_a_sink_stops_with_sessions_still_open() -> None:
    """Postfix keeps its connections to a sink cached; stopping must close them all."""
    sink = e2e_latency.TimingSink(free_port(), "0000aaaa").start()
    client = smtplib.SMTP("127.0.0.1", sink.port, timeout=10)
    assert client.ehlo("x")[0] == 250 and client.has_extn("dsn")
    sink.stop()
    with pytest.raises((smtplib.SMTPServerDisconnected, OSError)):
        client.noop()
        client.noop()
    client.close()
