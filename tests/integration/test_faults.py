"""Delivered means delivered, once: the transport killed or cut off at every step of a
delivery, on the real Postfix, Dovecot and PostgreSQL (SPEC D4, issue 10).

Each submission goes to two agencies. After each fault every agency holds exactly one copy,
the submitter exactly one DSN saying "delivered" for both, and the store one row per copy,
``injected``. The test stack's claims have a 5 s lease (tests/conftest.py), so a copy
whose sender died is recovered on the first retry after that.
"""

from __future__ import annotations

import secrets
import signal
import subprocess

import pytest

from singlewindow import stack
from singlewindow.config import Config
from singlewindow.store import connect
from tests.support import factory
from tests.support.sinks import Received, delivery_status, dsn_about
from tests.support.world import (
    Party,
    World,
    faulty_transport,
    message,
    message_id,
    wait_until,
    world_fixture,
)

world = world_fixture(("co", "company"), ("ag1", "agency"), ("ag2", "agency"))


def subject() -> str:
    return "fault " + secrets.token_hex(6)


def submit(world: World, subj: str, body: bytes | None = None) -> str:
    """Send to both agencies as the company; return the submission's Message-ID."""
    co, ag1, ag2 = world["co"], world["ag1"], world["ag2"]
    data = message(co, ag1.logical, subj, body if body is not None else factory.gendec(),
                   headers=[f"Cc: <{ag2.logical}>"])
    assert world.submit(co, [ag1.logical, ag2.logical], data) == {}
    return message_id(data)


def about(party: Party, subj: str, count: int = 1, timeout: float = 90.0,
          dsn: bool = False) -> list[Received]:
    def match(r: Received) -> bool:
        if dsn:
            return dsn_about(r, subj)
        return r.mail_from not in ("", "<>") and f"Subject: {subj}".encode() in r.data
    return party.sink.wait_for(match, timeout=timeout, count=count)


def assert_exactly_once(world: World, subj: str) -> None:
    """One copy at each agency, one "delivered" DSN for both, one injected row per copy;
    and still so a while later (a duplicate would come with Postfix's next retry)."""
    for role in ("ag1", "ag2"):
        assert len(about(world[role], subj)) == 1, f"no copy at {role}"
    # Postfix reports each recipient when it is done: one DSN for both, or one each when
    # the retries delivered them apart.
    wait_until(lambda: len(_statuses(world, subj)) >= 2, 90)
    world.flush()
    for role in ("ag1", "ag2"):
        assert len(about(world[role], subj, count=2, timeout=6)) == 1, f"two copies at {role}"
    statuses = _statuses(world, subj)
    assert sorted(statuses) == sorted(
        (world[r].logical, "delivered") for r in ("ag1", "ag2")), statuses
    copy_ids = [about(world[r], subj)[0].message["Message-ID"] for r in ("ag1", "ag2")]
    with connect(world.config.database) as conn:
        rows = conn.execute("SELECT state FROM forward WHERE copy_message_id = ANY(%s)",
                            (copy_ids,)).fetchall()
    assert [r["state"] for r in rows] == ["injected", "injected"]


def _statuses(world: World, subj: str) -> list[tuple[str, str]]:
    """(recipient, action) of every DSN about the submission the company received."""
    reports = about(world["co"], subj, dsn=True, timeout=0, count=0)
    return [(s.get("original-recipient", s.get("final-recipient", "")).split(";")[-1]
             .strip().lower(), s["action"]) for r in reports for s in delivery_status(r)]


def restart_transport(world: World) -> None:
    stack.up(world.config.paths.state_dir, say=lambda _: None)  # idempotent: only the dead
    world.flush()


@pytest.mark.parametrize("fault", [
    # Copies of the submission for the agencies, at each step.
    "before-claim@forward", "during-data@forward", "after-inject@forward",
    "after-record@forward",
    # The "delivered" DSN the transport writes after the copies (Postfix writes none for
    # a DSN-capable LMTP server): killed between the copies and it, and at each step.
    "before-claim@notice_delivery", "during-data@notice_delivery",
    "after-inject@notice_delivery", "after-record@notice_delivery"])
def test_kill_at_each_step_of_a_delivery_delivers_each_copy_once(world: World,
                                                                  fault: str) -> None:
    subj = subject()
    with faulty_transport(world.config, fault) as faulty:
        submit(world, subj)
        assert faulty.wait(timeout=60) == -signal.SIGKILL
    restart_transport(world)
    assert_exactly_once(world, subj)


def test_kill_after_sending_the_control_message_sends_it_once(world: World) -> None:
    """A MIG-invalid submission: its control message goes out once, nothing to agencies."""
    co, ag1 = world["co"], world["ag1"]
    subj = subject()
    invalid = factory.gendec().replace(b"<Flag>PA</Flag>", b"<Flag>Panama</Flag>")
    data = message(co, ag1.logical, subj, invalid)
    submission_id = message_id(data).encode()
    with faulty_transport(world.config, "after-inject@forward") as faulty:
        assert world.submit(co, [ag1.logical], data) == {}
        assert faulty.wait(timeout=60) == -signal.SIGKILL
    restart_transport(world)
    [report] = about(co, subj, dsn=True)
    assert [s["action"] for s in delivery_status(report)] == ["delivered"]

    def control(r: Received) -> bool:
        return b"X-SingleWindow-Message:" in r.data and b"In-Reply-To: " + submission_id in r.data
    assert len(co.sink.wait_for(control, timeout=60)) == 1
    world.flush()
    assert len(co.sink.wait_for(control, timeout=6, count=2)) == 1
    assert not about(ag1, subj, timeout=1)


def test_postgresql_restarted_mid_delivery_delivers_each_copy_once(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy is in Postfix's queue, then PostgreSQL goes away before it is recorded."""
    config = world.config
    layout = config.paths
    flag = config.paths.run_dir / f"fault-{secrets.token_hex(4)}"
    monkeypatch.setenv("SW_TRANSPORT_FAULT_FLAG", str(flag))
    subj = subject()
    with faulty_transport(config, "after-inject@forward:pause=6") as faulty:
        submission_id = submit(world, subj)
        wait_until(flag.exists, 60)
        stack.run([stack.pg_bin("pg_ctl"), "-D", str(layout.pg_data), "-m", "fast", "-w",
                   "-l", str(layout.log_dir / "postgresql.log"), "restart"],
                  user="postgres", cwd=layout.state_dir)
        # The paused attempt wakes to a dead connection and defers; it must not have
        # recorded anything, and its copy is in Postfix's queue.
        wait_until(lambda: _transport_deferred(config, submission_id), 60)
        assert faulty.poll() is None
    flag.unlink(missing_ok=True)
    restart_transport(world)
    assert_exactly_once(world, subj)


def _transport_deferred(config: Config, submission_id: str) -> bool:
    """Postfix's LMTP client deferred the submission ``submission_id`` with 4.3.0: found
    by the queue id cleanup logged with its message-id (long queue ids are never reused)."""
    lines = (config.paths.log_dir / "postfix.log").read_bytes().splitlines()
    logged = f": message-id={submission_id}".encode()
    queue_ids = {line.split(logged, 1)[0].rsplit(b" ", 1)[-1] + b":"
                 for line in lines if logged in line}
    return any(b"status=deferred" in line and b"lmtp" in line and b"4.3.0" in line
               and any(queue_id in line for queue_id in queue_ids) for line in lines)


def test_log_rotated_between_attempt_and_recovery_delivers_each_copy_once(
        world: World) -> None:
    """``postfix logrotate`` moves the proof into a gzipped file before the retry."""
    config = world.config
    subj = subject()
    with faulty_transport(config, "after-inject@forward") as faulty:
        submit(world, subj)
        assert faulty.wait(timeout=60) == -signal.SIGKILL
        # Postfix's qmgr logs the copy's "from=" before we rotate.
        wait_until(lambda: len(about(world["ag1"], subj, timeout=0)) == 1, 60)
        subprocess.run(["postfix", "-c", str(config.paths.postfix_conf),
                        "logrotate"], check=True, capture_output=True)
        log = config.paths.log_dir / "postfix.log"
        wait_until(lambda: any(p.name.endswith(".gz")
                               for p in log.parent.glob("postfix.log.*")), 30)
    restart_transport(world)
    assert_exactly_once(world, subj)


def padded_gendec(xml_size: int) -> bytes:
    """A valid GENDEC of exactly ``xml_size`` bytes as it arrives (CRLF line ends, lines
    short enough that no MTA breaks them); an XML comment makes up the size."""
    xml = factory.gendec().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    at = xml.index(b"?>") + 2 if xml.startswith(b"<?xml") else 0
    pad = xml_size - len(xml) - len(b"<!---->")
    line = b"p" * 98 + b"\r\n"
    padding = line * (pad // len(line)) + b"p" * (pad % len(line))
    assert pad > 0 and len(padding) == pad
    return xml[:at] + b"<!--" + padding + b"-->" + xml[at:]


def refused_for_size(world: World, subj: str) -> None:
    """One DSN, each recipient failed with 5.3.4 naming the size; no copy anywhere."""
    [report] = about(world["co"], subj, dsn=True)
    statuses = delivery_status(report)
    assert [s["action"] for s in statuses] == ["failed", "failed"]
    assert {s["status"] for s in statuses} == {"5.3.4"}
    for s in statuses:
        text = " ".join(s["diagnostic-code"].split())
        assert "larger than" in text and "Single Window may" in text, text
    world.flush()
    assert len(about(world["co"], subj, dsn=True, count=2, timeout=6)) == 1
    for role in ("ag1", "ag2"):
        assert not about(world[role], subj, timeout=0)


def test_a_message_too_large_once_converted_is_refused_not_deferred(world: World) -> None:
    """The MIG stops converting at the copy limit: 554 5.3.4 at once, never 4.3.0."""
    subj = subject()
    submit(world, subj, padded_gendec(world.config.transport.xml_size_limit + 1000))
    refused_for_size(world, subj)


def test_a_copy_postfix_refuses_for_size_is_refused_not_deferred(world: World) -> None:
    """The XML fits but the copy does not (80 KB of headers travel with it: a long
    Subject and Cc, as only allow-listed headers do, issue 12): Postfix's re-injection
    listener refuses it at MAIL FROM (SIZE, 552 5.3.4), which is final."""
    co, ag1, ag2 = world["co"], world["ag1"], world["ag2"]
    subj = subject()
    body = padded_gendec(world.config.transport.xml_size_limit - 1000)
    long_subject = subj + "".join(f"\r\n {'n' * 990}" for _ in range(45))
    cc = ",\r\n ".join([f"<{ag2.logical}>"] * 1500)
    data = message(co, ag1.logical, long_subject, body, headers=[f"Cc: {cc}"])
    assert world.submit(co, [ag1.logical, ag2.logical], data) == {}
    refused_for_size(world, subj)
    with connect(world.config.database) as conn:
        rows = conn.execute(
            "SELECT f.state, f.refusal FROM forward f JOIN message m ON m.id = f.message_id"
            " WHERE m.header_message_id = %s", (message_id(data),)).fetchall()
    assert [r["state"] for r in rows] == ["refused", "refused"]
    assert all(r["refusal"].startswith("552 5.3.4") for r in rows)
