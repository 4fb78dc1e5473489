"""The console's JSON API: what operators script, what a company may ask, and the
scoping that answers 404 for another party's message."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from singlewindow.console import api, auth
from singlewindow.store import console as store
from tests.unit.console import world as w

OPERATOR = store.Session("operator", "op", None, None, "c", None, None)  # type: ignore[arg-type]


def test_the_operator_lists_messages_with_every_field(world: w.World) -> None:
    client, _ = world.logged_in("op")
    listed = client.get("/api/messages").json()["messages"]
    assert [m["id"] for m in listed] == [w.SW_R, w.SW_C, w.SW_B, w.SW_A]
    first = next(m for m in listed if m["id"] == w.SW_A)
    assert first == {
        "id": w.SW_A, "received_at": first["received_at"], "subject": "Flight LH400 passengers",
        "type": "PAXLST-D05B", "outcome": "forwarded",
        "recipients": [{"recipient": "customs@sw.test", "status": "250 2.0.0",
                        "reason": f"Delivered to Single Window as {w.SW_A}"}],
        "party": "acme", "listener": "mta", "queue_id": "Q0001",
        "header_message_id": f"<{w.SW_A.lower()}@acme.example>",
        "envelope_from": "edi@acme.example"}
    assert first["received_at"].endswith("+00:00")


def test_the_operator_searches_by_each_criterion(world: w.World) -> None:
    world.conn.execute("UPDATE message SET received_at = '2026-01-01T10:00Z' WHERE id = %s",
                       (w.SW_A,))
    client, _ = world.logged_in("op")
    for params, expected in (
            ({"q": w.SW_C}, [w.SW_C]),
            ({"q": f"<{w.SW_A.lower()}@acme.example>"}, [w.SW_A]),
            ({"q": "Q0002"}, [w.SW_B]),
            ({"party": "bright"}, [w.SW_B]),
            ({"type": "PAXLST-D05B"}, [w.SW_B, w.SW_A]),
            ({"outcome": "forwarded"}, [w.SW_R, w.SW_A]),
            ({"since": "2026-01-01T09:00:00Z", "until": "2026-01-01T10:00:01+00:00"}, [w.SW_A]),
            ({"limit": "2"}, [w.SW_R, w.SW_C])):
        answer = client.get("/api/messages", params=params)
        assert answer.status_code == 200
        assert [m["id"] for m in answer.json()["messages"]] == expected, params
    for bad in ({"limit": "0"}, {"limit": "x"}, {"until": "soon"}, {"outcome": "lost"}):
        answer = client.get("/api/messages", params=bad)
        assert answer.status_code == 400 and "error" in answer.json()


def test_the_next_page_is_a_link_header_keeping_the_search(world: w.World) -> None:
    client, _ = world.logged_in("op")
    first = client.get("/api/messages", params={"type": "PAXLST", "limit": "1"})
    assert [m["id"] for m in first.json()["messages"]] == [w.SW_B]
    assert set(first.json()) == {"messages"}
    assert first.headers["link"] == (
        f'</api/messages?type=PAXLST&limit=1&before={w.SW_B}>; rel="next"')
    last = client.get(first.headers["link"][1:].split(">")[0])
    assert [m["id"] for m in last.json()["messages"]] == [w.SW_A]
    assert "link" not in last.headers
    assert "link" not in client.get("/api/messages").headers  # all on one page
    seen, url = [], "/api/messages?limit=1"
    while url:
        answer = client.get(url)
        seen += [m["id"] for m in answer.json()["messages"]]
        url = answer.headers.get("link", "<>")[1:].split(">")[0]
    assert seen == [w.SW_R, w.SW_C, w.SW_B, w.SW_A]
    for bad in ("a b", "SW\u00e9", "x" * 999):
        answer = client.get("/api/messages", params={"before": bad})
        assert answer.status_code == 400 and "before" in answer.json()["error"], bad


def test_a_companys_cursor_is_its_own_or_nothing(world: w.World) -> None:
    client, _ = world.logged_in("acme-desk")
    second = client.get("/api/messages", params={"limit": "1", "before": w.SW_C})
    assert [m["id"] for m in second.json()["messages"]] == [w.SW_A]
    # Another party's message answers as no message does: empty, no next page.
    answers = [client.get("/api/messages", params={"before": before})
               for before in (w.SW_B, w.SW_R, "SW20991231000000000ffff0000")]
    assert {(a.status_code, a.text, a.headers.get("link")) for a in answers} == {
        (200, '{"messages":[]}', None)}


def test_one_message_with_its_timeline_findings_and_responses(world: w.World) -> None:
    client, _ = world.logged_in("op")
    body = client.get(f"/api/messages/{w.SW_A}").json()
    assert set(body) == {"message", "timeline", "findings", "responses", "trace", "views"}
    # Every fact of swctl trace --json: each copy with its Postfix lines, each event.
    assert [f["queue_id"] for f in body["trace"]["forwards"]] == ["QC1"]
    assert body["trace"]["forwards"][0]["postfix"][0]["relay"].startswith(w.AGENCY_HOST)
    assert body["trace"]["events"][0]["kind"] == "received"
    assert body["message"]["id"] == w.SW_A and body["message"]["outcome"] == "forwarded"
    assert {"received", "outcome", "copy", "agency-dsn", "notice"} <= {
        s["kind"] for s in body["timeline"]}
    assert all(set(s) == {"at", "kind", "title", "details"} for s in body["timeline"])
    assert [r["id"] for r in body["responses"]] == [w.SW_R]
    found = client.get(f"/api/messages/{w.SW_B}").json()
    assert [f["place"] for f in found["findings"]] == ["segment 2 UNH"]
    # Found by its copy's Message-ID too, as swctl trace finds it.
    assert client.get(f"/api/messages/<{w.SW_A}.cust@sw.test>").json()["message"]["id"] == w.SW_A


def test_a_company_sees_its_own_and_never_another_partys(world: w.World) -> None:
    client, _ = world.logged_in("acme-desk")
    listed = client.get("/api/messages").json()["messages"]
    assert [m["id"] for m in listed] == [w.SW_C, w.SW_A]
    assert set(listed[0]) == {"id", "received_at", "subject", "type", "outcome", "recipients"}
    # A party filter does not widen it; an id of another party's message finds nothing.
    assert [m["id"] for m in client.get("/api/messages", params={"party": "bright"}
                                        ).json()["messages"]] == [w.SW_C, w.SW_A]
    assert client.get("/api/messages", params={"q": w.SW_B}).json() == {"messages": []}
    # Its own message by its own Message-ID, as its EDI desk knows it.
    own = client.get(f"/api/messages/<{w.SW_A.lower()}@acme.example>")
    assert own.status_code == 200 and own.json()["message"]["id"] == w.SW_A
    for ident in (w.SW_B, w.SW_R, "SW20991231000000000ffff0000",
                  f"<{w.SW_B.lower()}@bright.example>"):
        answer = client.get(f"/api/messages/{ident}")
        assert answer.status_code == 404 and answer.json() == {"error": "no such message"}
    for path in ("/api/parties", "/api/parties/acme", "/api/queue"):
        answer = client.get(path)
        assert answer.status_code == 404 and answer.json() == {"error": "not found"}


def test_a_company_reads_logical_addresses_only(world: w.World) -> None:
    client, _ = world.logged_in("acme-desk")
    texts = [client.get("/api/messages").text,
             client.get(f"/api/messages/{w.SW_A}").text, client.get(f"/api/messages/{w.SW_C}").text]
    for text in texts:
        for secret in (w.AGENCY_PHYSICAL, w.AGENCY_HOST, w.AGENCY_IP, w.PEER_IP, "10.9.0.1", "QC1"):
            assert secret not in text
    body = json.loads(texts[1])
    assert set(body) == {"message", "timeline", "findings", "responses"}
    assert body["message"]["recipients"][0]["recipient"] == "customs@sw.test"
    assert body["responses"][0]["from"] == "customs@sw.test"
    refused = json.loads(texts[2])["message"]["recipients"][0]["reason"]
    assert refused == "Not forwarded: <customs@sw.test> unknown at withheld"


def test_parties_and_one_party_for_operators(world: w.World) -> None:
    client, _ = world.logged_in("op")
    parties = client.get("/api/parties").json()["parties"]
    assert [p["name"] for p in parties] == ["acme", "bright", "customs"]
    customs = client.get("/api/parties/customs").json()["party"]
    assert customs["addresses"][0]["physical"] == w.AGENCY_PHYSICAL
    assert customs["peers"] == ["10.9.0.1/32"]
    assert client.get("/api/parties/nobody").status_code == 404


def test_the_queue_for_operators(world: w.World, tmp_path: Path) -> None:
    script = tmp_path / "postqueue"
    script.write_text("#!/bin/sh\necho '{\"queue_name\": \"deferred\", \"queue_id\": \"Q9\","
                      " \"arrival_time\": 1700000000, \"sender\": \"a@b.example\","
                      " \"recipients\": [{\"address\": \"c@d.example\","
                      " \"delay_reason\": \"451 later\"}]}'\n")
    script.chmod(0o755)
    world.config = replace(world.config, transport=replace(world.config.transport,
                                                           postqueue=script))
    client, _ = world.logged_in("op")
    body = client.get("/api/queue").json()
    assert body["error"] is None
    assert body["counts"]["deferred"]["messages"] == 1
    assert [(e["queue_id"], e["reasons"], e["arrived_at"]) for e in body["deferred"]] == [
        ("Q9", ["451 later"], "2023-11-14T22:13:20+00:00")]


def test_a_script_logs_in_sends_the_csrf_token_and_logs_out(world: w.World) -> None:
    client = world.client()
    token = client.post("/api/session", json={"login": "op", "password": "correct horse battery"}
                        ).json()["csrf"]
    assert client.get("/api/messages").status_code == 200
    assert client.delete("/api/session").status_code == 403
    assert client.delete("/api/session", headers={auth.CSRF_HEADER: token}).status_code == 204
    assert client.get("/api/messages").status_code == 401


def test_query_limits_and_times() -> None:
    q = api.query({"since": "2026-01-01T10:00", "q": " x "}, OPERATOR, 5)
    assert q.since is not None and q.since.utcoffset() is not None and q.text == "x"
    assert q.limit == 5 and q.party_id is None
    company = store.Session("company", "acme-desk", 7, "acme", "c", None, None)  # type: ignore[arg-type]
    scoped = api.query({"party": "bright"}, company)
    assert scoped.party_id == 7 and scoped.party is None


def test_plain_makes_json_of_times_and_addresses() -> None:
    import ipaddress
    from datetime import UTC, datetime
    assert api.plain({"a": [datetime(2026, 1, 1, tzinfo=UTC), ipaddress.ip_address("10.0.0.1")],
                      "b": (1, None)}) == {"a": ["2026-01-01T00:00:00+00:00", "10.0.0.1"],
                                           "b": [1, None]}
