"""The submission path through real Postfix: milter, LMTP transport, DSNs, translation,
routing and exactly-once forwarding (SPEC §5, issue 3)."""

from __future__ import annotations

import base64
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from flufl.bounce import scan_message

from singlewindow import stack
from singlewindow.config import ADMIN_ROLE, Config
from singlewindow.store import connect, directory, messages
from tests.support import factory
from tests.support.sinks import Received, delivery_status, dsn_about
from tests.support.world import World, faulty_transport, message, message_id


@pytest.fixture(scope="module")
def world(sw_stack: Config) -> Iterator[World]:
    with World(sw_stack) as world:
        yield world


@pytest.fixture(scope="module")
def parties(world: World) -> World:
    world.add("co", "company")
    world.add("co2", "company")
    world.add("ag1", "agency")
    world.add("ag2", "agency")
    world.add("ag3", "agency", active=False)
    return world


def subject() -> str:
    return "test " + secrets.token_hex(6)


def dsn_for(world: World, subj: str) -> Received:
    found = world["co"].sink.wait_for(lambda r: dsn_about(r, subj))
    assert found, f"no DSN about {subj!r} reached the company"
    assert len(found) == 1, "more than one DSN about the SW leg"
    return found[0]


def others_physical(world: World, *allowed: str) -> list[str]:
    return [p.physical for role, p in world.parties.items() if role not in allowed]


def copies(world: World, role: str, subj: str, count: int = 1,
           timeout: float = 60.0) -> list[Received]:
    return world[role].sink.wait_for(lambda r: f"Subject: {subj}".encode() in r.data,
                                     count=count, timeout=timeout)


@pytest.mark.parametrize("notify", [None, "NOTIFY=FAILURE"])
def test_xml_reaches_agency_with_only_logical_addresses(parties: World,
                                                        notify: str | None) -> None:
    co, ag1 = parties["co"], parties["ag1"]
    subj = subject()
    data = message(co, ag1.logical, subj, factory.gendec())
    assert parties.submit(co, [ag1.logical], data, [notify] if notify else None) == {}

    [copy] = copies(parties, "ag1", subj)
    assert copy.mail_from == co.logical
    assert copy.rcpt_tos == [ag1.physical]
    text = copy.data.decode("utf-8", "replace")
    assert co.physical not in text and co.peer not in text
    parsed = copy.message
    assert parsed["From"].addresses[0].addr_spec == co.logical
    assert parsed["Message-ID"].endswith("@sw.test>")
    assert parsed["X-SingleWindow-Origin"] is None
    assert parsed.get_content_type() == "application/xml"
    # SMTP carries text with CRLF line ends (RFC 5321 2.3.8); the XML is otherwise as sent.
    forwarded = base64.b64decode(parsed.get_payload()).replace(b"\r\n", b"\n")
    assert forwarded.strip() == factory.gendec().strip()

    dsn = dsn_for(parties, subj)
    [status] = delivery_status(dsn)
    assert status["action"] == "delivered"
    assert status["status"].startswith("2.")
    assert status["final-recipient"].endswith(ag1.logical)
    assert dsn.rcpt_tos == [co.physical]
    dsn_text = dsn.data.decode("utf-8", "replace")
    for address in others_physical(parties, "co"):
        assert address not in dsn_text


def _mime(boundary: str, parts: list[bytes]) -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    return body + b"--" + boundary.encode() + b"--\r\n"


XML_PART = b"Content-Type: application/xml\r\n\r\n<a/>"
CASES = {
    1: dict(content_type="image/png", body=b"PNG", code="5.6.1", words="Content-Type"),
    2: dict(content_type="application/xml", body=b"", code="5.6.0", words="no body part"),
    3: dict(content_type='multipart/mixed; boundary="b1"',
            body=_mime("b1", [XML_PART, XML_PART]), code="5.6.0",
            words="more than one body part"),
    4: dict(content_type="application/xml", cte="base64", body=b"PD94b@@@\r\n",
            code="5.6.0", words="Invalid Base64"),
    5: dict(content_type="text/plain; charset=us-ascii", cte="7bit", body=b"caf\xe9\r\n",
            code="5.6.0", words="8-bit"),
    6: dict(content_type="application/xml", cte="x-rot13", body=b"<a/>", code="5.6.1",
            words="Unknown Content-Transfer-Encoding"),
    7: dict(content_type='multipart/mixed; boundary="b2"',
            body=b"--b2\r\n" + XML_PART + b"\r\n", code="5.6.0", words="cannot be parsed"),
}


@pytest.mark.parametrize("reason", list(range(1, 11)))
def test_each_failure_reason_gets_its_dsn(parties: World, reason: int) -> None:
    co = parties["co"]
    to = parties["ag1"].logical
    subj = subject()
    headers: list[str] = []
    if reason in CASES:
        case = CASES[reason]
        data = message(co, to, subj, case["body"], content_type=case["content_type"],
                       cte=case.get("cte"))
        code, words = case["code"], case["words"]
    else:
        body = factory.gendec()
        if reason == 8:
            headers = ["Reply-To: <someone@unknown.example>"]
            code, words = "5.1.0", "<someone@unknown.example> in header Reply-To is unknown"
        elif reason == 9:
            to = parties["co2"].logical
            code, words = "5.7.1", "not authorised"
        else:
            to = parties["ag3"].logical
            code, words = "5.2.1", "not yet activated"
        data = message(co, to, subj, body, headers=headers)
    assert parties.submit(co, [to], data) == {}

    dsn = dsn_for(parties, subj)
    [status] = delivery_status(dsn)
    assert status["action"] == "failed"
    assert status["status"] == code
    diagnostic = " ".join(status["diagnostic-code"].split())  # unfold
    assert words.lower() in diagnostic.lower()
    assert "Single Window message SW" in diagnostic
    assert to.encode() in b"".join(scan_message(dsn.message))
    dsn_text = dsn.data.decode("utf-8", "replace")
    for address in others_physical(parties, "co"):
        assert address not in dsn_text
    for role in ("ag1", "ag2", "ag3", "co2"):
        assert not [r for r in parties[role].sink.received if subj.encode() in r.data]


def test_fan_out_reaches_both_agencies_once(parties: World) -> None:
    co, ag1, ag2 = parties["co"], parties["ag1"], parties["ag2"]
    with connect(parties.config.database, autocommit=True, role=ADMIN_ROLE) as conn:
        directory.add_route(conn, ag1.logical, "PAXLST-D03B", [ag1.logical, ag2.logical])
    subj = subject()
    data = message(co, ag1.logical, subj, factory.paxlst(), content_type="application/EDIFACT")
    assert parties.submit(co, [ag1.logical], data) == {}
    assert len(copies(parties, "ag1", subj)) == 1
    assert len(copies(parties, "ag2", subj)) == 1
    [status] = delivery_status(dsn_for(parties, subj))
    assert status["action"] == "delivered"
    for role in ("ag1", "ag2"):
        [copy] = copies(parties, role, subj)
        payload = base64.b64decode(copy.message.get_payload())
        assert payload.startswith(b"<Interchange") and b"PAXLST" in payload
    assert len(copies(parties, "ag1", subj, count=2, timeout=3)) == 1  # still one later


def test_a_route_by_message_name_routes_every_release(parties: World) -> None:
    """Issue 14: the README's ``route add … --type PAXLST``, through swctl, matches the
    PAXLST of each release the MIG classifies (PAXLST-D02B, -D03B, -D05B)."""
    co = parties["co"]
    ag, other = parties.add("agr", "agency"), parties.add("agr2", "agency")
    routed = subprocess.run(
        [sys.executable, "-m", "singlewindow.cli", "--state-dir",
         str(parties.config.paths.state_dir), "route", "add", ag.logical, "--type", "PAXLST",
         "--to", ag.logical, "--to", other.logical], capture_output=True, text=True,
        check=False)
    assert routed.returncode == 0, routed.stderr
    for release in ("02B", "03B", "05B"):
        subj = subject()
        data = message(co, ag.logical, subj, factory.paxlst(release=release),
                       content_type="application/EDIFACT")
        assert parties.submit(co, [ag.logical], data) == {}
        assert len(copies(parties, "agr", subj)) == 1
        assert len(copies(parties, "agr2", subj)) == 1, release
        with connect(parties.config.database) as conn:
            found = messages.trace(conn, message_id(data))
        assert found is not None and found["message_type"] == f"PAXLST-D{release}"


def test_trace_shows_the_whole_path(parties: World) -> None:
    co, ag2 = parties["co"], parties["ag2"]
    subj = subject()
    assert parties.submit(co, [ag2.logical], message(co, ag2.logical, subj,
                                                       factory.gendec())) == {}
    [copy] = copies(parties, "ag2", subj)
    copy_id = copy.message["Message-ID"]
    with connect(parties.config.database) as conn:
        found = messages.trace(conn, copy_id)
    assert found is not None
    assert found["party"] == co.name and found["listener"] == "mta"
    assert [f["destination"] for f in found["forwards"]] == [ag2.logical]
    result = subprocess.run([sys.executable, "-m", "singlewindow.cli", "--state-dir",
                             str(parties.config.paths.state_dir), "trace", found["id"]],
                            capture_output=True, text=True, check=True)
    assert f"copy to {ag2.logical} (injected" in result.stdout
    assert "Delivered to Single Window" in result.stdout


@pytest.mark.parametrize("fault", ["after-inject", "after-record"])
def test_crash_after_reinjection_forwards_exactly_once(parties: World, fault: str) -> None:
    """kill -9 of the transport between re-injection and its reply to Postfix (SPEC D4)."""
    config = parties.config
    state = config.paths.state_dir
    with faulty_transport(config, fault) as faulty:
        co, ag1 = parties["co"], parties["ag1"]
        subj = subject()
        assert parties.submit(co, [ag1.logical], message(co, ag1.logical, subj,
                                                           factory.gendec())) == {}
        assert faulty.wait(timeout=60) == -signal.SIGKILL
    assert len(copies(parties, "ag1", subj)) == 1
    stack.up(state, say=lambda _: None)  # restarts the transport, nothing else
    parties.flush()
    [status] = delivery_status(dsn_for(parties, subj))
    assert status["action"] == "delivered"
    assert len(copies(parties, "ag1", subj, count=2, timeout=5)) == 1
    copy_id = copies(parties, "ag1", subj)[0].message["Message-ID"]
    with connect(config.database) as conn:
        rows = conn.execute("SELECT count(*) AS n, min(state) AS s FROM forward"
                            " WHERE copy_message_id = %s", (copy_id,)).fetchone()
    assert rows == {"n": 1, "s": "injected"}
