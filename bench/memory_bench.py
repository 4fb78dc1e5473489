"""Memory benchmark: the routing transport's RSS for one large submission (issues 10, 13).

Not a test. Run as root from the repository root, with the source to measure first on the
path (it is also what the stack's daemons run)::

    PYTHONPATH=$PWD/src .venv/bin/python bench/memory_bench.py [--only CASE ...]
        [--series CASE | --no-series]

It brings up a private stack (``stack.up`` in /tmp/sw-mem-*), adds a company and an agency,
each with an SMTP sink as its MTA, and per case: restarts the transport, warms it up with
a small PAXLST (the MIG compiled, its threads started), reads its idle RSS (VmRSS), resets
its peak (VmHWM, via /proc/PID/clear_refs), submits one message through the MTA listener
as the company, waits for the transport's LMTP answer in Postfix's log (and, when it
forwarded, for the copy at the agency's sink), and reads the peak and, SETTLE seconds
later, the RSS after it. Then SERIES messages of one case go to one warmed-up transport,
each counted from the idle RSS before the first. The goal (issue 13): peak minus idle at
most GOAL_RATIO times the EDIFACT size, and the RSS back within NEAR_IDLE_MIB of idle.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import smtplib
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import factory  # noqa: E402
from tests.support.local import free_port  # noqa: E402
from tests.support.world import Party, World, message  # noqa: E402

from singlewindow import services, stack  # noqa: E402
from singlewindow.config import Config, Console, Listeners, Metrics, Paths  # noqa: E402

MB = 1_000_000
MIB = 1024 * 1024
#: Issue 13 goal 5: the transport's peak RSS for one message, less its idle RSS before
#: it, at most this many times the message's EDIFACT size.
GOAL_RATIO = 15
#: "Back near its idle size": the RSS a few seconds after the message at most this far
#: above the idle RSS before it.
NEAR_IDLE_MIB = 32
#: Seconds after the outcome before "after" is read (the transport trims its heap when it
#: answers; the copy may still be on its way out).
SETTLE = 2.0
SERIES = 20
OUTCOME_TIMEOUT = 900.0


@dataclass(frozen=True)
class Case:
    name: str
    content_type: str
    build: Callable[[], bytes]
    edifact: bool = True
    """The goal's ratio is to the EDIFACT size (the XML case has none: shown, not judged)."""


def short_lines_xml(size: int) -> bytes:
    """One XML element holding ``size`` bytes of short text lines (a notes file as XML)."""
    head, tail = b"<?xml version=\"1.0\"?>\r\n<notes>\r\n", b"</notes>\r\n"
    line = b"note line\r\n"
    count = (size - len(head) - len(tail)) // len(line)
    return head + line * count + tail


def paxlst(megabytes: float) -> Callable[[], bytes]:
    return lambda: factory.paxlst_of_size(megabytes * MB / MIB)


CASES = (
    Case("paxlst-1MB", "application/edifact", paxlst(1)),
    Case("paxlst-5MB", "application/edifact", paxlst(5)),
    Case("paxlst-6.4MB", "application/edifact", paxlst(6.4)),
    # About the largest interchange whose XML still fits a copy under the default
    # copy_size_limit (50 MiB: ~38 MB of XML).
    Case("paxlst-7.6MB", "application/edifact", paxlst(7.6)),
    # Converts to ~150 MB of XML: stopped by the copy limit (554 5.3.4).
    Case("paxlst-30MB", "application/edifact", paxlst(30)),
    Case("short-lines-xml-30MB", "text/xml", lambda: short_lines_xml(30 * MB), edifact=False),
)
#: The warm-up before each case: the MIG registry, schemas and rules loaded, a thread
#: of each pool started, so "idle" is the transport as it serves.
WARM_UP = Case("warm-up", "application/edifact", paxlst(0.05))


@dataclass(frozen=True)
class Measured:
    case: Case
    size: float  # MB of the submitted body part (the EDIFACT)
    idle: float  # MiB, VmRSS before the message
    peak: float  # MiB, VmHWM during it (reset before it)
    after: float  # MiB, VmRSS SETTLE seconds after its outcome
    outcome: str

    @property
    def ratio(self) -> float:
        """(peak - idle) over the EDIFACT size, both in bytes."""
        return (self.peak - self.idle) * MIB / (self.size * MB)


def transport_pid(state: Path) -> int:
    pid = services.read_pid(Paths(state).pid_file("transport"))
    if pid is None:
        raise SystemExit("the transport is not running")
    return pid


def restart_transport(state: Path, base: Config) -> int:
    """Stop the stack's transport by its pid; the stack's supervisor starts a fresh one
    (``stack.up`` waits until it serves)."""
    pid = transport_pid(state)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while services.alive(pid, "singlewindow.transport") and time.monotonic() < deadline:
        time.sleep(0.1)
    while time.monotonic() < deadline:
        now = services.read_pid(Paths(state).pid_file("transport"))
        if now is not None and now != pid:
            break
        time.sleep(0.1)
    stack.up(state, base=base, say=lambda _: None)
    return transport_pid(state)


def status_mib(pid: int, field: str) -> float:
    """``VmHWM`` or ``VmRSS`` of ``pid`` (/proc/PID/status), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} for pid {pid}")


def reset_peak(pid: int) -> None:
    """Set VmHWM back to the present RSS (proc(5), /proc/PID/clear_refs, value 5), so the
    next reading is the peak of what follows alone."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def submit(config: Config, sender: Party, rcpt: str, data: bytes) -> str:
    """Send as the company's MTA; return Postfix's queue id."""
    with smtplib.SMTP(config.listeners.bind, config.listeners.mta_port, timeout=600,
                      source_address=(sender.peer, 0)) as smtp:
        smtp.ehlo()
        smtp.mail(sender.physical, [f"SIZE={len(data)}"])
        code, text = smtp.rcpt(rcpt)
        if code != 250:
            raise SystemExit(f"RCPT refused: {code} {text!r}")
        code, text = smtp.data(data)
    if code != 250:
        return f"refused at DATA: {code} {text.decode(errors='replace')}"
    found = re.search(rb"queued as ([0-9A-Za-z]+)", text)
    if found is None:
        raise SystemExit(f"no queue id in {text!r}")
    return found[1].decode()


def lmtp_status(maillog: Path, queue_id: str, rcpt: str) -> str | None:
    """The first delivery status Postfix logged for ``queue_id`` to ``rcpt``, if any."""
    needle = f" {queue_id}: to=<{rcpt}>".encode()
    with maillog.open("rb") as log:
        for line in log:
            if needle in line and b" status=" in line:
                return line.split(b" status=", 1)[1].decode(errors="replace").strip()
    return None


def transport_error(state: Path) -> str:
    """The last exception the transport logged (why it deferred), if any."""
    log = Paths(state).log_dir / "transport.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    found = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|TooLarge)\b", line)]
    return found[-1] if found else ""


def send_one(case: Case, state: Path, config: Config, world: World, pid: int,
             idle: float | None = None) -> Measured:
    """Submit one message of ``case`` to the running transport ``pid``; its figures.
    ``idle``: the idle RSS to count from (default: the RSS just before the message)."""
    co, ag = world["co"], world["ag"]
    payload = case.build()
    size = len(payload) / MB
    data = message(co, ag.logical, f"memory {case.name} {secrets.token_hex(3)}", payload,
                   content_type=case.content_type)
    del payload
    with ag.sink.lock:
        ag.sink.received.clear()  # the copies of earlier cases: not kept in this process
    if idle is None:
        idle = status_mib(pid, "VmRSS")
    reset_peak(pid)
    started = time.monotonic()
    queue_id = submit(config, co, ag.logical, data)
    del data
    outcome = queue_id if queue_id.startswith("refused") else None
    while outcome is None:
        status = lmtp_status(config.postfix_maillog, queue_id, ag.logical)
        if status is not None:
            if status.startswith("deferred"):
                status += f"; transport: {transport_error(state)}"
            elif status.startswith("sent") and "not forwarded" not in status:
                copies = ag.sink.wait_for(lambda _r: True, timeout=120)
                got = len(copies[0].data) / MB if copies else 0.0
                status += f"; copy at the agency: {got:.1f} MB"
            outcome = status
        elif time.monotonic() - started > OUTCOME_TIMEOUT:
            outcome = "no outcome in time"
        else:
            time.sleep(0.2)
    time.sleep(SETTLE)
    return Measured(case, size, idle, status_mib(pid, "VmHWM"), status_mib(pid, "VmRSS"),
                    outcome)


def show(m: Measured, label: str | None = None) -> None:
    ratio = f" = {m.ratio:.1f}x" if m.case.edifact else ""
    print(f"memory: {label or m.case.name} {m.size:.1f} MB -> peak RSS {m.peak:.0f} MiB, "
          f"idle before {m.idle:.0f} MiB, peak - idle {m.peak - m.idle:.0f} MiB{ratio}; "
          f"after {m.after:.0f} MiB ({m.outcome[:300]})", flush=True)


def run_case(case: Case, state: Path, base: Config, config: Config, world: World
             ) -> Measured:
    """A fresh transport, warmed up with a small interchange, then the case."""
    pid = restart_transport(state, base)
    send_one(WARM_UP, state, config, world, pid)
    measured = send_one(case, state, config, world, pid)
    show(measured)
    return measured


def run_series(case: Case, state: Path, base: Config, config: Config, world: World
               ) -> list[Measured]:
    """``SERIES`` messages of ``case`` one after the other to one warmed-up transport,
    each counted from its idle RSS before the first (so growth shows)."""
    pid = restart_transport(state, base)
    send_one(WARM_UP, state, config, world, pid)
    idle = status_mib(pid, "VmRSS")
    series = []
    for n in range(1, SERIES + 1):
        series.append(send_one(case, state, config, world, pid, idle))
        show(series[-1], f"series {n:2d}/{SERIES} {case.name}")
    return series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=[c.name for c in CASES],
                        choices=[c.name for c in CASES])
    parser.add_argument("--series", default="paxlst-7.6MB", choices=[c.name for c in CASES],
                        help="the case sent SERIES times to one transport")
    parser.add_argument("--no-series", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(dir="/tmp", prefix="sw-mem-"))
    base = replace(Config(), listeners=Listeners(
        mta_port=free_port(), msa_port=free_port(), pop3_port=free_port(),
        pop3s_port=free_port(), reinject_port=free_port()),
        metrics=Metrics(listen=f"127.0.0.1:{free_port()}"),
        console=Console(listen=f"127.0.0.1:{free_port()}"))
    import singlewindow
    print(f"memory: code under test {Path(singlewindow.__file__).parent}, state {state}",
          flush=True)
    measured: list[Measured] = []
    series: list[Measured] = []
    try:
        config = stack.up(state, demo=True, base=base, say=lambda _: None)
        with World(config) as world:
            world.add("co", "company")
            sink = world.add("ag", "agency").sink
            # A copy may be up to copy_size_limit; aiosmtpd's default takes 32 MiB only.
            sink.stop()
            sink.controller = Controller(sink, hostname="127.0.0.1", port=sink.port,
                                         server_kwargs={"data_size_limit": 128 << 20})
            sink.controller.start()
            for case in CASES:
                if case.name in args.only:
                    measured.append(run_case(case, state, base, config, world))
            if not args.no_series:
                chosen = next(c for c in CASES if c.name == args.series)
                series = run_series(chosen, state, base, config, world)
    finally:
        if not args.keep:
            stack.down(state, say=lambda _: None)
            shutil.rmtree(state, ignore_errors=True)
    judged = [m for m in measured + series if m.case.edifact]
    worst = max(judged, key=lambda m: m.ratio, default=None)
    near = all(m.after - m.idle <= NEAR_IDLE_MIB for m in measured + series)
    if series:
        first, last = series[0], series[-1]
        print(f"memory: series of {len(series)} x {first.case.name}: idle before the first "
              f"{first.idle:.0f} MiB, after the first {first.after:.0f} MiB, after the last "
              f"{last.after:.0f} MiB, highest peak {max(m.peak for m in series):.0f} MiB")
    met = "met" if worst is not None and worst.ratio <= GOAL_RATIO and near else "MISSED"
    shown = f"worst {worst.ratio:.1f}x ({worst.case.name})" if worst else "nothing measured"
    print(f"memory: goal {GOAL_RATIO}x the EDIFACT size (peak minus idle RSS), back within "
          f"{NEAR_IDLE_MIB} MiB of idle after each message: {met}; {shown}")


if __name__ == "__main__":
    main()
