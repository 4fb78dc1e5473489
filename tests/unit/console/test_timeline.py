"""The console's timeline: the facts of trace.find as steps, and a company's projection
that keeps only logical addresses and its own physical one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from singlewindow import trace
from singlewindow.console import timeline
from singlewindow.console.timeline import Privacy, Step
from tests.unit.console import world as w

ACME_ONLY = Privacy(frozenset({"customs@sw.test", "acme@sw.test", "edi@acme.example"}),
                    {w.AGENCY_PHYSICAL: "customs@sw.test"})


def _text(view: timeline.View) -> str:
    return json.dumps([view.summary, view.recipients, [s.as_dict() for s in view.steps],
                       view.findings, view.responses], default=str)


def test_operator_view_has_every_fact_of_trace_find(world: w.World) -> None:
    found = trace.find(world.conn, world.config, w.SW_A)
    assert found is not None
    view = timeline.operator_view(found, "forwarded", [])
    kinds = [s.kind for s in view.steps]
    # Every event of the log, each copy and each notice is a step.
    for e in found["events"]:
        assert e["kind"] in kinds
    text = _text(view)
    for f in found["forwards"]:
        assert f["copy_message_id"] in text and f["destination"] in text
        assert f["physical"] in text and f["queue_id"] in text
    for n in found["notices"]:
        assert n["copy_message_id"] in text
    assert "copy" in kinds and "notice" in kinds
    # The Postfix log's status line of the copy, relay and all (operators see it all).
    assert f"relay={w.AGENCY_HOST}[{w.AGENCY_IP}]:25" in text
    assert view.summary["peer_address"] is not None and w.PEER_IP in str(
        view.summary["peer_address"])
    assert view.summary["outcome"] == "forwarded"
    assert [r["recipient"] for r in view.recipients] == ["customs@sw.test"]


def test_steps_are_ordered_by_time_unsent_last() -> None:
    t0 = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
    steps = timeline.ordered([Step(None, "copy", "later"), Step(t0 + timedelta(1), "b", "b"),
                              Step(t0, "a", "a")])
    assert [s.title for s in steps] == ["a", "b", "later"]
    assert Step(t0, "a", "a").as_dict()["at"] == "2026-11-30T17:00:00+00:00"


def test_findings_come_from_the_control_message_event_with_positions(world: w.World) -> None:
    found = trace.find(world.conn, world.config, w.SW_B)
    assert found is not None
    view = timeline.operator_view(found, "not-forwarded", [])
    assert view.findings == [{"code": "SW-2", "place": "segment 2 UNH", "rule": "BGM-1",
                              "text": "BGM is missing", "repeats": None}]
    assert "control" in [s.kind for s in view.steps]
    assert any("1 MIG finding" in s.title for s in view.steps)


def test_company_view_shows_logical_addresses_only(world: w.World) -> None:
    found = trace.find(world.conn, world.config, w.SW_A)
    assert found is not None
    responses = [{"id": "SWR", "received_at": None, "party": "customs",
                  "envelope_from": w.AGENCY_PHYSICAL, "subject": "Re", "message_type": None,
                  "outcome": "forwarded"}]
    view = timeline.company_view(found, "forwarded", responses, ACME_ONLY)
    text = _text(view)
    for secret in (w.AGENCY_PHYSICAL, w.AGENCY_HOST, w.AGENCY_IP, w.PEER_IP, "QC1", "relay",
                   "customs\""):
        assert secret not in text
    assert "Copy for customs@sw.test" in text
    # The agency-leg report by the copy's logical destination.
    agency = next(s for s in view.steps if s.kind == "agency-dsn")
    assert agency.details[0].startswith("customs@sw.test: delivered 2.0.0")
    # Its own physical address stays; the response's sender reads as its logical one.
    assert any(s.title == "DSN sent back to you (edi@acme.example)" for s in view.steps)
    assert view.responses == [{"id": "SWR", "received_at": None, "subject": "Re",
                               "message_type": None, "outcome": "forwarded",
                               "from": "customs@sw.test"}]


def test_company_reads_a_report_naming_the_logical_recipient() -> None:
    # The hub's Postfix reports "relayed" with the ORCPT, the logical address; the
    # agency's MTA names its physical one. Both read as the logical destination, and an
    # address of nobody known stays withheld.
    found = {"id": "SWX", "received_at": None, "listener": "mta", "recipients": [],
             "forwards": [{"recipient": "customs@sw.test", "destination": "customs@sw.test",
                           "physical": w.AGENCY_PHYSICAL, "state": "injected",
                           "queue_id": "QC1", "injected_at": None, "attempts": 1,
                           "refusal": None, "copy_message_id": "<c@sw.test>"}],
             "notices": [], "events": [{"at": None, "kind": "agency-dsn", "detail": {
                 "recipients": [
                     {"recipient": "Customs@sw.test", "action": "relayed", "status": "2.0.0"},
                     {"recipient": w.AGENCY_PHYSICAL, "action": "delivered",
                      "status": "2.0.0"},
                     {"recipient": "ops@elsewhere.example", "action": "failed",
                      "status": "5.1.1"}]}}]}
    view = timeline.company_view(found, "forwarded", [], ACME_ONLY)
    report = next(s for s in view.steps if s.kind == "agency-dsn")
    assert report.details == ["customs@sw.test: relayed 2.0.0",
                              "customs@sw.test: delivered 2.0.0", "withheld: failed 5.1.1"]


def test_scrub_withholds_unknown_addresses_hosts_and_ip_addresses() -> None:
    text = ACME_ONLY.scrub(
        f"to <{w.AGENCY_PHYSICAL}> via {w.AGENCY_HOST}[{w.AGENCY_IP}]:25 and ops@elsewhere.example"
        " from 2001:db8::5 and 10.1.0.5 at 19:05:00 for edi@acme.example")
    assert text == ("to <customs@sw.test> via withheld and withheld from withheld and "
                    "withheld at 19:05:00 for edi@acme.example")
    assert ACME_ONLY.address("Ops@Elsewhere.example") == "withheld"
    assert ACME_ONLY.address("ACME@sw.test") == "acme@sw.test"


def test_words_finds_every_address_in_nested_data() -> None:
    assert timeline.words({"a": ["X@Y.example", {"b": "to <z@w.example>"}]}) == {
        "x@y.example", "z@w.example"}


def test_a_notice_about_no_known_message_for_operators(world: w.World) -> None:
    w.orphan_notice(world.conn)
    found = trace.find(world.conn, world.config, "QORPH")
    assert found is not None and found["id"] is None
    view = timeline.notice_view(found)
    assert view.summary["id"] == "<SWNorphan@sw.test>"
    assert view.summary["queue_id"] == "QORPH"
    assert [(s.kind, s.title) for s in view.steps] == [("notice", "DSN to edi@acme.example")]
    assert view.steps[0].details[0] == "injected, queue id QORPH"
