"""Memory benchmark: the routing transport's peak RSS for one large submission.

Not a test. Run as root from the repository root, with the source to measure first on the
path (it is also what the stack's daemons run)::

    PYTHONPATH=$PWD/src .venv/bin/python bench/memory_bench.py [--only CASE ...]

It brings up a private stack (``stack.up`` in /tmp/sw-mem-*), adds a company and an agency,
each with an SMTP sink as its MTA, and per case: restarts the transport (so its peak is
this case's alone), submits one message through the MTA listener as the company, waits
for the transport's LMTP answer in Postfix's log (and, when it forwarded, for the copy at
the agency's sink), then reads the transport's VmHWM from /proc.
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

from tests.conftest import free_port  # noqa: E402
from tests.integration.world import Party, World, message  # noqa: E402
from tests.unit.mig import factory  # noqa: E402

from singlewindow import stack  # noqa: E402
from singlewindow.config import Config, Listeners  # noqa: E402

MB = 1_000_000
GOAL_MIB = 400
OUTCOME_TIMEOUT = 900.0


@dataclass(frozen=True)
class Case:
    name: str
    content_type: str
    build: Callable[[], bytes]
    goal: bool = True
    """Whether the goal applies: a 30 MB submission keeps the transport under GOAL_MIB."""


def short_lines_xml(size: int) -> bytes:
    """One XML element holding ``size`` bytes of short text lines (a notes file as XML)."""
    head, tail = b"<?xml version=\"1.0\"?>\r\n<notes>\r\n", b"</notes>\r\n"
    line = b"note line\r\n"
    count = (size - len(head) - len(tail)) // len(line)
    return head + line * count + tail


CASES = (
    Case("short-lines-xml-30MB", "text/xml", lambda: short_lines_xml(30 * MB)),
    Case("paxlst-30MB", "application/edifact",
         lambda: factory.paxlst_of_size(30 * MB / 1024 / 1024)),
    Case("paxlst-5MB", "application/edifact",
         lambda: factory.paxlst_of_size(5 * MB / 1024 / 1024), goal=False),
    # About the largest interchange whose XML still fits a copy under the default
    # copy_size_limit (50 MiB: ~38 MB of XML).
    Case("paxlst-7.5MB", "application/edifact",
         lambda: factory.paxlst_of_size(7.5 * MB / 1024 / 1024), goal=False),
)


def transport_pid(state: Path) -> int:
    pid = stack.read_pid(stack.Layout(state).pid_file("transport"))
    if pid is None:
        raise SystemExit("the transport is not running")
    return pid


def restart_transport(state: Path, base: Config) -> int:
    """Stop the stack's transport by its pid; the stack's supervisor starts a fresh one
    (``stack.up`` waits until it serves)."""
    pid = transport_pid(state)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while stack.alive(pid, "singlewindow.transport") and time.monotonic() < deadline:
        time.sleep(0.1)
    while time.monotonic() < deadline:
        now = stack.read_pid(stack.Layout(state).pid_file("transport"))
        if now is not None and now != pid:
            break
        time.sleep(0.1)
    stack.up(state, base=base, say=lambda _: None)
    return transport_pid(state)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmHWM for pid {pid}")


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
    log = stack.Layout(state).log_dir / "transport.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    found = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|TooLarge)\b", line)]
    return found[-1] if found else ""


def run_case(case: Case, state: Path, base: Config, config: Config, world: World) -> float:
    co, ag = world["co"], world["ag"]
    payload = case.build()
    data = message(co, ag.logical, f"memory {case.name} {secrets.token_hex(3)}", payload,
                   content_type=case.content_type)
    del payload
    pid = restart_transport(state, base)
    before = len(ag.sink.received)
    started = time.monotonic()
    queue_id = submit(config, co, ag.logical, data)
    size = len(data) / MB
    del data
    outcome = queue_id if queue_id.startswith("refused") else None
    while outcome is None:
        status = lmtp_status(config.postfix_maillog, queue_id, ag.logical)
        if status is not None:
            if status.startswith("deferred"):
                status += f"; transport: {transport_error(state)}"
            elif status.startswith("sent") and "not forwarded" not in status:
                copies = ag.sink.wait_for(lambda _r: True, timeout=60, count=before + 1)
                got = len(copies[before].data) / MB if len(copies) > before else 0.0
                status += f"; copy at the agency: {got:.1f} MB"
            outcome = status
        elif time.monotonic() - started > OUTCOME_TIMEOUT:
            outcome = "no outcome in time"
        else:
            time.sleep(0.5)
    peak = peak_rss_mib(pid)
    elapsed = time.monotonic() - started
    print(f"memory: {case.name} {size:.1f} MB -> peak RSS {peak:.0f} MiB "
          f"({outcome[:400]}) [{elapsed:.1f} s]", flush=True)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=[c.name for c in CASES],
                        choices=[c.name for c in CASES])
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(dir="/tmp", prefix="sw-mem-"))
    base = replace(Config(), listeners=Listeners(
        mta_port=free_port(), msa_port=free_port(), pop3_port=free_port(),
        pop3s_port=free_port(), reinject_port=free_port()))
    import singlewindow
    print(f"memory: code under test {Path(singlewindow.__file__).parent}, state {state}",
          flush=True)
    peaks: list[tuple[Case, float]] = []
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
                    peaks.append((case, run_case(case, state, base, config, world)))
    finally:
        if not args.keep:
            stack.down(state, say=lambda _: None)
            shutil.rmtree(state, ignore_errors=True)
    judged = [peak for case, peak in peaks if case.goal]
    met = "met" if judged and max(judged) < GOAL_MIB else "MISSED"
    print(f"memory: goal {GOAL_MIB} MiB for the 30 MB submissions: {met}")


if __name__ == "__main__":
    main()
