"""Soak: many submissions while the transport is killed with SIGKILL at random moments.

Not a test. Run as root from the repository root::

    .venv/bin/python bench/soak_bench.py [--messages 1000] [--kill-every 1.0-4.0]

A private stack (real PostgreSQL, Postfix, Dovecot, the three daemons) with one company and
two agencies, each played by an SMTP sink. Every submission goes to both agencies. While
Postfix works through them, the transport is killed (kill -9 by its pid) at random
intervals and started again (by the stack's supervisor, or by ``stack up``). At the end
each agency must hold exactly one copy of every submission and the company exactly one
"delivered" status per recipient, nothing bounced. Prints::

    soak: submissions N, kills K, copies expected E, received R, lost L, duplicated D
    soak: dsn statuses expected E, delivered R, lost L, duplicated D, other O
    soak: drained in S s (submitting T s); verdict: exactly once|FAILED
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support import factory  # noqa: E402
from tests.support.local import free_port  # noqa: E402
from tests.support.sinks import Received, delivery_status  # noqa: E402
from tests.support.world import World, message  # noqa: E402

from singlewindow import services, stack  # noqa: E402
from singlewindow.config import (  # noqa: E402
    Config,
    Console,
    Listeners,
    Metrics,
    Paths,
    Queue,
    Transport,
)

TRANSPORT = "singlewindow.transport"


def transport_pid(state: Path) -> int | None:
    return services.read_pid(Paths(state).pid_file("transport"))


def killer(state: Path, stop: threading.Event, low: float, high: float,
           kills: list[float]) -> None:
    while not stop.wait(random.uniform(low, high)):
        pid = transport_pid(state)
        if pid is None or not services.alive(pid, TRANSPORT):
            continue
        os.kill(pid, signal.SIGKILL)
        kills.append(time.monotonic())
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not stop.is_set():
            time.sleep(0.5)
            now = transport_pid(state)
            if now is not None and now != pid and services.alive(now, TRANSPORT):
                break
        else:
            if not stop.is_set():
                stack.up(state, say=lambda _: None)  # no supervisor restarted it


def subject_of(r: Received) -> str | None:
    marker = b"Subject: soak "
    at = r.data.find(marker)
    if at < 0:
        return None
    return r.data[at + 9:at + 9 + 17].decode()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=4, help="parallel SMTP sessions")
    parser.add_argument("--kill-every", default="1.0-4.0", help="seconds, random in range")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    return parser.parse_args()


def soak_config() -> Config:
    """Free ports, short queue back-offs and claim lease: a killed transport's messages
    come back within seconds."""
    return replace(Config(), listeners=Listeners(
        mta_port=free_port(), msa_port=free_port(), pop3_port=free_port(),
        pop3s_port=free_port(), reinject_port=free_port()),
        metrics=Metrics(listen=f"127.0.0.1:{free_port()}"),
        console=Console(listen=f"127.0.0.1:{free_port()}"),
        queue=Queue(lifetime="2h", minimal_backoff="5s", maximal_backoff="10s",
                    run_delay="5s"),
        transport=Transport(claim_lease=5.0))


def send(config: Config, world: World, batch: list[str]) -> None:
    """One SMTP session of the company: each subject to both agencies."""
    co, ag1, ag2 = world["co"], world["ag1"], world["ag2"]
    with smtplib.SMTP(config.listeners.bind, config.listeners.mta_port, timeout=60,
                      source_address=(co.peer, 0)) as smtp:
        for subj in batch:
            data = message(co, ag1.logical, subj, factory.gendec(),
                           headers=[f"Cc: <{ag2.logical}>"])
            refused = smtp.sendmail(co.physical, [ag1.logical, ag2.logical], data)
            assert refused == {}, refused


def delivered_statuses(world: World) -> Counter[tuple[str, str, str]]:
    """(subject, recipient, action) -> how many DSN statuses the company received."""
    counts: Counter[tuple[str, str, str]] = Counter()
    co = world["co"]
    with co.sink.lock:
        received = list(co.sink.received)
    for r in received:
        subj = subject_of(r)
        if subj is None or r.mail_from not in ("", "<>"):
            continue
        for s in delivery_status(r):
            rcpt = s.get("original-recipient", s.get("final-recipient", ""))
            counts[(subj, rcpt.split(";")[-1].strip().lower(), s["action"])] += 1
    return counts


def copies(sink_of: World, role: str, wanted: set[str]) -> Counter[str]:
    with sink_of[role].sink.lock:
        received = list(sink_of[role].sink.received)
    return Counter(s for r in received if (s := subject_of(r)) in wanted)


def wait_drained(world: World, messages: int, wanted: set[str], timeout: float) -> None:
    """Until every copy and every "delivered" status arrived, or ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sum(1 for (_, _, a), n in delivered_statuses(world).items()
                   if a == "delivered")
        if done >= 2 * messages and all(
                len(copies(world, r, wanted)) == messages for r in ("ag1", "ag2")):
            break
        time.sleep(2)


def report(world: World, subjects: list[str], kills: int, drained: float,
           submitted: float) -> None:
    """The three ``soak:`` lines of the module docstring."""
    messages = len(subjects)
    wanted = set(subjects)
    ag1, ag2 = world["ag1"], world["ag2"]
    expected = 2 * messages
    got = Counter[str]()
    for role in ("ag1", "ag2"):
        got.update({f"{role} {s}": n for s, n in copies(world, role, wanted).items()})
    lost = sum(1 for s in subjects for role in ("ag1", "ag2") if got[f"{role} {s}"] == 0)
    dup = sum(n - 1 for n in got.values() if n > 1)
    statuses = delivered_statuses(world)
    ok = {(s, r) for (s, r, a) in statuses if a == "delivered"}
    dsn_lost = sum(1 for s in subjects for r in (ag1.logical, ag2.logical)
                   if (s, r) not in ok)
    dsn_dup = sum(n - 1 for (_, _, a), n in statuses.items() if a == "delivered" and n > 1)
    other = sum(n for (_, _, a), n in statuses.items() if a != "delivered")
    print(f"soak: submissions {messages}, kills {kills}, copies expected "
          f"{expected}, received {sum(got.values())}, lost {lost}, duplicated {dup}")
    print(f"soak: dsn statuses expected {expected}, delivered {len(ok)}, lost {dsn_lost},"
          f" duplicated {dsn_dup}, other {other}")
    verdict = "exactly once" if not (lost or dup or dsn_lost or dsn_dup or other) \
        else "FAILED"
    print(f"soak: drained in {drained:.0f} s (submitting {submitted:.0f} s); "
          f"verdict: {verdict}")


def main() -> None:
    args = parse_args()
    low, high = (float(x) for x in args.kill_every.split("-"))

    state = Path(tempfile.mkdtemp(dir="/tmp", prefix="sw-soak-"))
    config = stack.up(state, base=soak_config(), say=lambda _: None)
    world = World(config)
    try:
        world.add("co", "company")
        world.add("ag1", "agency")
        world.add("ag2", "agency")
        subjects = [f"soak {secrets.token_hex(6)}" for _ in range(args.messages)]
        stop = threading.Event()
        kills: list[float] = []
        kill_thread = threading.Thread(target=killer, args=(state, stop, low, high, kills))
        started = time.monotonic()
        kill_thread.start()
        threads = [threading.Thread(target=send,
                                    args=(config, world, subjects[i::args.senders]))
                   for i in range(args.senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        submitted = time.monotonic() - started
        wait_drained(world, args.messages, set(subjects), args.timeout)
        stop.set()
        kill_thread.join()
        drained = time.monotonic() - started
        # A duplicate would come with a later retry: give Postfix a few more queue runs.
        subprocess.run(["postqueue", "-c", str(state / "postfix"), "-f"], check=False,
                       capture_output=True)
        time.sleep(20)
        report(world, subjects, len(kills), drained, submitted)
    finally:
        world.stop()
        stack.down(state, say=lambda _: None)
        if args.keep:
            print(f"kept {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
