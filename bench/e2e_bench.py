"""End-to-end benchmark: Single Window's submission path against a bare Postfix relay.

Not a test. Run as root from the repository root::

    .venv/bin/python bench/e2e_bench.py [--rounds N] [--messages N] [--sessions N]

Both set-ups run on this machine in one run, interleaved (bare, sw, bare, sw, ...):

- bare: smtp-source -> a minimal private Postfix (no policy, no milter) -> smtp-sink;
- sw: smtp-source -> the private Single Window stack's MTA listener (policy, milter) ->
  LMTP transport (checks, MIG, translation, bookkeeping) -> re-injection -> smtp-sink, plus
  the "delivered" DSN of every submission to the company's smtp-sink.

A round's time runs from starting smtp-source until that instance's queue is empty and its
mail log shows every expected delivery to the sinks. CPU time per component is sampled from
/proc around each round (live processes plus the reaped children of each group's root).
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import e2e_latency  # noqa: E402  (bench/, beside this file)
from tests.support import factory  # noqa: E402
from tests.support.local import free_port  # noqa: E402

from singlewindow import config as configmod  # noqa: E402
from singlewindow import render, services, stack, supervisor  # noqa: E402
from singlewindow.config import ADMIN_ROLE, Config, Console, Listeners, Metrics, Paths  # noqa: E402
from singlewindow.store import connect, directory  # noqa: E402
from singlewindow.transport.evidence import postfix_committed  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
QUEUES = ("incoming", "active", "deferred", "hold", "maildrop")
TICK = os.sysconf("SC_CLK_TCK")
ROUND_TIMEOUT = 900.0


def queue_size(queue_directory: Path) -> int:
    count = 0
    for name in QUEUES:
        for _dir, _subdirs, files in os.walk(queue_directory / name):
            count += len(files)
    return count


# --- mail log -----------------------------------------------------------------------------

class LogTail:
    """Reads a Postfix mail log incrementally and counts delivery outcomes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.partial = b""
        self.sent: dict[int, int] = {}  # relay port -> status=sent lines
        self.deferred = 0
        self.bounced = 0
        self.queued = 0  # messages cleanup(8) made: one queue pass each

    def reset(self) -> None:
        self.sent.clear()
        self.deferred = self.bounced = self.queued = 0

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if b"status=sent" in line:
                m = re.search(rb"relay=[^,]*\]:(\d+),", line)
                if m:
                    port = int(m.group(1))
                    self.sent[port] = self.sent.get(port, 0) + 1
            elif b"status=deferred" in line:
                self.deferred += 1
            elif b"status=bounced" in line:
                self.bounced += 1
            elif b"/cleanup[" in line and b": message-id=" in line:
                self.queued += 1


# --- CPU per process group ------------------------------------------------------------------

@dataclass
class Proc:
    pid: int
    ppid: int
    name: str
    own: int       # utime + stime, ticks
    children: int  # cutime + cstime: reaped children, ticks


def processes() -> dict[int, Proc]:
    found: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()
        found[int(entry)] = Proc(int(entry), int(rest[1]), name,
                                 int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14]))
    return found


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def group_usage(roots: dict[str, int], procs: dict[int, Proc]) -> dict[str, dict[str, int]]:
    """Ticks per group, split by process name; "(exited)" holds reaped children."""
    kids: dict[int, list[int]] = {}
    for p in procs.values():
        kids.setdefault(p.ppid, []).append(p.pid)
    usage: dict[str, dict[str, int]] = {}
    for group, root in roots.items():
        parts: dict[str, int] = {}
        todo = [root] if root in procs else []
        while todo:
            pid = todo.pop()
            p = procs[pid]
            parts[p.name] = parts.get(p.name, 0) + p.own
            parts["(exited)"] = parts.get("(exited)", 0) + p.children
            todo.extend(kids.get(pid, []))
        usage[group] = parts
    return usage


@dataclass
class CpuSample:
    roots: dict[str, int]
    start: dict[str, dict[str, int]] = field(default_factory=dict)
    busy0: tuple[int, int] = (0, 0)

    def begin(self) -> None:
        self.start = group_usage(self.roots, processes())
        self.busy0 = machine_busy()

    def end(self) -> tuple[dict[str, dict[str, float]], float]:
        now = group_usage(self.roots, processes())
        busy1 = machine_busy()
        delta: dict[str, dict[str, float]] = {}
        for group, parts in now.items():
            before = self.start.get(group, {})
            delta[group] = {n: (t - before.get(n, 0)) / TICK for n, t in parts.items()}
            # A process that exited is counted in "(exited)"; its start value stays put.
            for n, t in before.items():
                if n not in parts:
                    delta[group][n] = -t / TICK
        cpus = os.cpu_count() or 1
        util = (busy1[0] - self.busy0[0]) / max(1, busy1[1] - self.busy0[1]) * cpus
        return delta, util


# --- the bare Postfix relay -----------------------------------------------------------------

MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@dataclass
class Bare:
    root: Path
    port: int
    sink_port: int

    @property
    def conf(self) -> Path:
        # The bare instance keeps the stack's layout (config.Paths) in its own directory.
        return Paths(self.root).postfix_conf

    @property
    def queue(self) -> Path:
        return Paths(self.root).postfix_queue

    @property
    def maillog(self) -> Path:
        return Paths(self.root).postfix_log

    def up(self) -> None:
        os.chmod(self.root, 0o755)
        for d in (self.conf, self.queue, Paths(self.root).log_dir):
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o755)
        data = self.root / "data"
        data.mkdir(exist_ok=True)
        pw = pwd.getpwnam("postfix")
        os.chown(data, pw.pw_uid, pw.pw_gid)
        os.chmod(data, 0o700)
        (self.conf / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {data}
maillog_file = {self.maillog}
maillog_file_prefixes = {self.root / "log"}
mail_owner = postfix
setgid_group = postdrop
myhostname = bare.local
mydomain = bare.local
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
biff = no
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
relay_domains = bare.test
transport_maps = inline:{{ bare.test=smtp:[127.0.0.1]:{self.sink_port} }}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_tls_security_level = none
smtp_tls_security_level = none
""")
        (self.conf / "master.cf").write_text(
            f"127.0.0.1:{self.port} inet n - n - - smtpd\n" + MASTER_SERVICES)
        subprocess.run(["postfix", "-c", str(self.conf), "check"], check=True)
        subprocess.run(["postfix", "-c", str(self.conf), "start"], check=True,
                       capture_output=True)
        wait_for(lambda: smtp_greets(self.port), "bare Postfix listener")

    def master_pid(self) -> int:
        return int((self.queue / "pid" / "master.pid").read_text().split()[0])

    def down(self) -> None:
        if (self.queue / "pid" / "master.pid").exists():
            subprocess.run(["postfix", "-c", str(self.conf), "stop"], check=False,
                           capture_output=True)


def smtp_greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(64).startswith(b"220")
    except OSError:
        return False


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.1)


# --- one round ------------------------------------------------------------------------------

@dataclass
class Result:
    kind: str
    elapsed: float
    rate: float
    sent: dict[int, int]
    deferred: int
    bounced: int
    cpu: dict[str, dict[str, float]]
    util: float
    source_cpu: float
    complete: bool
    queued: int = 0
    extra: str = ""


def run_round(kind: str, *, port: int, msgfile: Path, sender: str, rcpt: str, messages: int,
              sessions: int, queue: Path, log: LogTail, expect: dict[int, int],
              roots: dict[str, int]) -> Result:
    log.poll()
    log.reset()
    cpu = CpuSample(roots)
    cpu.begin()
    start = time.monotonic()
    source = subprocess.Popen(
        [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-F", str(msgfile),
         "-f", sender, "-t", rcpt, f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    source_cpu = 0.0
    source_done = False
    complete = False
    end = start
    while time.monotonic() - start < ROUND_TIMEOUT:
        time.sleep(0.05)
        if not source_done:
            # wait4 (not Popen.poll) to get the tool's own CPU time with its exit status.
            pid, status, usage = os.wait4(source.pid, os.WNOHANG)
            if pid:
                source.returncode = os.waitstatus_to_exitcode(status)
                source_cpu = usage.ru_utime + usage.ru_stime
                source_done = True
        log.poll()
        if source_done and queue_size(queue) == 0 and \
                all(log.sent.get(p, 0) >= n for p, n in expect.items()):
            end = time.monotonic()
            complete = True
            break
    usage_, util = cpu.end()
    elapsed = (end if complete else time.monotonic()) - start
    out = source.stdout.read().decode(errors="replace") if source.stdout else ""
    if source.returncode:
        print(f"  smtp-source exited {source.returncode}: {out.strip()[:500]}")
    time.sleep(0.5)
    log.poll()
    return Result(kind, elapsed, messages / elapsed, dict(log.sent), log.deferred, log.bounced,
                  usage_, util, source_cpu, complete, log.queued)


def sink(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([SMTP_SINK, "-u", "nobody", f"127.0.0.1:{port}", "1000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: smtp_greets(port), f"smtp-sink on {port}")
    return proc


def read_pid(path: Path) -> int:
    return int(path.read_text().split()[0])


def message_file(path: Path) -> None:
    body = factory.gendec().decode().replace("\r\n", "\n")
    path.write_text("From: <edi@bench-co.example>\nTo: <bench-ag@sw.test>\nSubject: bench\n"
                    "Content-Type: application/xml; charset=utf-8\n\n" + body.rstrip("\n")
                    + "\n")


def print_cpu(result: Result) -> None:
    total = 0.0
    rows: list[tuple[float, str]] = []
    for group, parts in result.cpu.items():
        seconds = sum(parts.values())
        total += seconds
        detail = ", ".join(f"{n} {t:.1f}" for n, t in sorted(parts.items(), key=lambda x: -x[1])
                           if abs(t) >= 0.05)
        rows.append((seconds, f"    {group:<17} {seconds:7.1f} s  ({detail})"))
    rows.append((result.source_cpu, f"    {'smtp-source':<17} {result.source_cpu:7.1f} s"))
    total += result.source_cpu
    for _, row in sorted(rows, reverse=True):
        print(row)
    print(f"    {'sum':<17} {total:7.1f} s of {result.elapsed * (os.cpu_count() or 1):.1f} s"
          f" available; machine busy {result.util:.2f} of {os.cpu_count()} CPUs")


def _transactions(conn: psycopg.Connection[Any]) -> int:
    """Committed and rolled-back transactions of every database so far (an autocommit
    statement is one), read from a fresh statistics snapshot."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute("SELECT sum(xact_commit + xact_rollback) AS n FROM pg_stat_database"
                       ).fetchone()
    assert row is not None
    return int(row["n"])


# --- PostgreSQL statements (pg_stat_statements) ----------------------------------------------

#: Transaction control: counted by pg_stat_statements as statements of their own.
TXN_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|START TRANSACTION|END|SAVEPOINT|"
                         r"RELEASE|ABORT)\b", re.IGNORECASE)


class Superuser:
    """psql as PostgreSQL's superuser on the private stack's cluster (peer auth: as the
    postgres system user, as ``stack`` does)."""

    def __init__(self, layout: Paths, dbname: str) -> None:
        self.layout = layout
        self.dbname = dbname

    def sql(self, text: str) -> list[list[str]]:
        out = stack.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                         "-h", str(self.layout.pg_socket_dir), "-U", "postgres",
                         "-d", self.dbname, "-c", text],
                        user="postgres", cwd=self.layout.state_dir).stdout
        return [line.split("\t") for line in out.splitlines() if line]


def wal_position(su: Superuser) -> int:
    """Bytes of WAL the cluster has written so far: the difference over a round is what
    the round wrote (exact, unlike pg_stat_wal, which backends report with a delay)."""
    return int(su.sql("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")[0][0])


def enable_pg_stat_statements(layout: Paths) -> None:
    """Load pg_stat_statements into the private cluster (a restart) before the daemons
    connect. Only top-level statements are counted (``track = top``): what the hub's
    processes send, not what a function runs inside. Utility statements count too
    (``track_utility``), so BEGIN and COMMIT are statements here."""
    conf = layout.pg_data / "postgresql.conf"
    text = conf.read_text()
    if "pg_stat_statements" not in text:
        conf.write_text(text + "\n# bench/e2e_bench.py: statements per submission\n"
                        "shared_preload_libraries = 'pg_stat_statements'\n"
                        "pg_stat_statements.track = top\n"
                        "pg_stat_statements.track_utility = on\n"
                        "pg_stat_statements.max = 5000\n")
    stack.run([stack.pg_bin("pg_ctl"), "-D", str(layout.pg_data), "-m", "fast", "-w",
               "-l", str(layout.log_dir / "postgresql.log"), "restart"],
              user="postgres", cwd=layout.state_dir)


@dataclass
class Statement:
    role: str
    calls: int
    query: str


def statements(su: Superuser) -> list[Statement]:
    """What every role but the superuser (this bench) ran since the last reset."""
    rows = su.sql(
        "SELECT r.rolname, s.calls, left(regexp_replace(s.query, '\\s+', ' ', 'g'), 150)"
        " FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid"
        " WHERE r.rolname <> 'postgres' ORDER BY s.calls DESC")
    return [Statement(r[0], int(r[1]), r[2] if len(r) > 2 else "") for r in rows]


def statement_summary(found: list[Statement], messages: int, verbose: bool) -> str:
    total = sum(s.calls for s in found)
    txn = sum(s.calls for s in found if TXN_CONTROL.match(s.query))
    line = (f"PostgreSQL statements per submission {total / messages:.1f} (top-level, BEGIN/"
            f"COMMIT/ROLLBACK included; {(total - txn) / messages:.1f} without them)")
    if not verbose:
        return line
    roles: dict[str, int] = {}
    for s in found:
        roles[s.role] = roles.get(s.role, 0) + s.calls
    line += "\n      per role: " + ", ".join(
        f"{role} {n / messages:.2f}" for role, n in sorted(roles.items(), key=lambda x: -x[1]))
    line += "\n      per statement (calls per submission, role, query):"
    for s in found:
        if s.calls / messages >= 0.01:
            line += f"\n        {s.calls / messages:6.2f}  {s.role:<10} {s.query}"
    return line


# --- per-component CPU ------------------------------------------------------------------------

#: The components named in the per-submission CPU line, in order.
COMPONENTS = ("postfix", "transport", "postgres", "milter", "policyd")


def cpu_per_submission(result: Result) -> str:
    """CPU ms per submission of each component, and Postfix's per queue pass (a message
    cleanup(8) made: the submission, and for SW each copy, DSN and report)."""
    messages = round(result.rate * result.elapsed)
    parts = [f"{name} {sum(result.cpu[name].values()) / messages * 1e3:.1f} ms"
             for name in COMPONENTS if name in result.cpu]
    line = "CPU per submission: " + ", ".join(parts)
    if result.queued:
        postfix = sum(result.cpu["postfix"].values())
        line += (f"; Postfix queue passes per submission {result.queued / messages:.1f},"
                 f" Postfix CPU per pass {postfix / result.queued * 1e3:.1f} ms")
    return line


# --- transport processes ----------------------------------------------------------------------

def set_processes(state_dir: Path, count: int) -> Config:
    """Restart the stack's transport with ``count`` worker processes."""
    layout = Paths(state_dir)
    with supervisor.hold(state_dir, "transport"):
        current = configmod.for_state_dir(state_dir)
        render.write_atomic(layout.config_file, configmod.to_toml(
            replace(current, transport=replace(current.transport, processes=count))))
    return configmod.for_state_dir(state_dir)


# --- latency ----------------------------------------------------------------------------------

def run_latency(*, port: int, rate: float, seconds: float, sessions: int, domain: str,
                body: str, ag_port: int, co_port: int, processes: int, note: str) -> None:
    count = max(1, round(rate * seconds))
    sender, rcpt = "edi@bench-co.example", f"bench-ag@{domain}"
    warm = secrets.token_hex(4)
    run = secrets.token_hex(4)
    copies = e2e_latency.TimingSink(ag_port, run).start()
    dsns = e2e_latency.TimingSink(co_port, run).start()
    try:
        # A few messages first, not counted: Postfix's cached connections to the sinks
        # these replaced, and every process's first message, are behind us then.
        e2e_latency.send_paced(port, rate=min(rate, 10.0), count=20, sessions=2,
                               sender=sender, rcpt=rcpt, body=body, run=warm, domain=domain)
        time.sleep(2.0)
        sent = e2e_latency.send_paced(port, rate=rate, count=count, sessions=sessions,
                                      sender=sender, rcpt=rcpt, body=body, run=run,
                                      domain=domain)
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            with copies.lock, dsns.lock:
                if len(copies.arrived) >= len(sent.due) and len(dsns.arrived) >= len(sent.due):
                    break
            time.sleep(0.2)
    finally:
        copies.stop()
        dsns.stop()
    copy = e2e_latency.latencies(sent.due, copies.arrived)
    dsn = e2e_latency.latencies(sent.due, dsns.arrived)
    print(f"latency: {count} messages paced at {rate:.1f} msgs/s ({note}) over {sessions}"
          f" SMTP sessions, transport processes {processes}")
    print(f"    submissions: sent {len(sent.due)}, failed {len(sent.failed)}; latest start"
          f" behind schedule {sent.late * 1e3:.0f} ms")
    for failure in sent.failed[:5]:
        print(f"    failed: {failure}")
    print(f"    submission -> agency copy:      {copy.line()}")
    print(f"    submission -> DSN at company:   {dsn.line()}")

    def p99(lat: e2e_latency.Latencies) -> str:
        if not lat.millis:
            return "none arrived"
        return f"{e2e_latency.percentile(lat.millis, 99):.0f} ms" + (
            "" if lat.arrived == lat.sent else f" ({lat.sent - lat.arrived} missing)")

    print(f"latency p99: copy {p99(copy)}, DSN {p99(dsn)} (goal 100 ms)")


def parse_workers(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be at least 1: {text}")
    return counts


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--workers", type=parse_workers, default=[1, 2],
                        help="transport processes for the SW rounds, e.g. 1,2 (each round"
                             " runs SW once per count; the median row is the first count)")
    parser.add_argument("--verbose", action="store_true",
                        help="PostgreSQL statements per role and per query")
    parser.add_argument("--no-latency", action="store_true",
                        help="skip the paced latency run after the throughput rounds")
    parser.add_argument("--latency-only", action="store_true",
                        help="only the paced latency run (needs --latency-rate)")
    parser.add_argument("--latency-rate", type=float,
                        help="msgs/s of the paced run; default 80 %% of the median SW rate")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--latency-sessions", type=int, default=10)
    parser.add_argument("--keep", action="store_true",
                        help="keep both state directories (mail logs) for inspection")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (private Postfix instances)")
    if args.latency_only and args.latency_rate is None:
        raise SystemExit("--latency-only needs --latency-rate")
    return args


@dataclass
class Sw:
    """The private Single Window stack of a run, and its transport's process count now."""
    state_dir: Path
    config: Config
    layout: Paths
    su: Superuser
    processes: int

    def use_processes(self, count: int) -> None:
        if count != self.processes:
            self.config = set_processes(self.state_dir, count)
            self.processes = count

    def roots(self) -> dict[str, int]:
        layout = self.layout
        roots = {name: read_pid(layout.pid_file(name)) for name in services.DAEMONS}
        roots["postgres"] = read_pid(layout.pg_data / "postmaster.pid")
        roots["postfix"] = read_pid(layout.postfix_queue / "pid" / "master.pid")
        return roots


def start_sw(sw_dir: Path, processes: int, co_sink: int, ag_sink: int) -> Sw:
    """The stack with pg_stat_statements loaded, one company and one agency, each played
    by an smtp-sink."""
    base = replace(Config(), listeners=Listeners(
        mta_port=free_port(), msa_port=free_port(), pop3_port=free_port(),
        pop3s_port=free_port(), reinject_port=free_port()),
        metrics=Metrics(listen=f"127.0.0.1:{free_port()}"),
        console=Console(listen=f"127.0.0.1:{free_port()}"),
        transport=replace(Config().transport, processes=processes))
    layout = Paths(sw_dir)
    stack.up(sw_dir, base=base, say=lambda _: None, database_only=True)
    enable_pg_stat_statements(layout)
    config = stack.up(sw_dir, base=base, say=lambda _: None)
    domain = config.hub.domain
    su = Superuser(layout, str(conninfo_to_dict(config.database.conninfo)["dbname"]))
    su.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    with connect(config.database, autocommit=True, role=ADMIN_ROLE) as conn:
        directory.add_party(conn, "bench-co", "company", ["127.0.0.1/32"],
                            f"127.0.0.1:{co_sink}")
        directory.add_address(conn, f"bench-co@{domain}", "bench-co",
                              "edi@bench-co.example", None, domain)
        directory.add_party(conn, "bench-ag", "agency", [], f"127.0.0.1:{ag_sink}")
        directory.add_address(conn, f"bench-ag@{domain}", "bench-ag",
                              "in@bench-ag.example", None, domain)
    return Sw(sw_dir, config, layout, su, processes)


def throughput_rounds(args: argparse.Namespace, bare: Bare, sw: Sw, msgfile: Path,
                      sinks_root: dict[str, int], ag_sink: int,
                      co_sink: int) -> dict[int, list[float]]:
    """bare, then SW once per worker count, per round; the summaries. Returns the SW
    rates per worker count."""
    bare_log = LogTail(bare.maillog)
    sw_log = LogTail(sw.layout.postfix_log)
    results: list[Result] = []
    by_workers: dict[int, list[float]] = {n: [] for n in args.workers}
    for n in range(1 if not args.latency_only else args.rounds + 1, args.rounds + 1):
        r = run_round("bare", port=bare.port, msgfile=msgfile, sender="a@src.test",
                      rcpt="x@bare.test", messages=args.messages, sessions=args.sessions,
                      queue=bare.queue, log=bare_log, expect={bare.sink_port: args.messages},
                      roots={"postfix": bare.master_pid(), **sinks_root})
        r.extra = f"sent to sink {r.sent.get(bare.sink_port, 0)}"
        report(n, r)
        results.append(r)

        for count in args.workers:
            sw.use_processes(count)
            r = sw_round(args, sw.config, sw.layout, sw.su, msgfile, sw_log,
                         ag_sink, co_sink, {**sw.roots(), **sinks_root})
            r.kind = "sw" if count == args.workers[0] else f"sw{count}"
            report(n, r)
            by_workers[count].append(r.rate)
            if count == args.workers[0]:
                results.append(r)

    if results:
        summary(results)
        if len(args.workers) > 1:
            workers_summary(results, by_workers)
    return by_workers


def latency_run(args: argparse.Namespace, sw: Sw, by_workers: dict[int, list[float]],
                sinks: dict[int, subprocess.Popen[bytes]], msgfile: Path, ag_sink: int,
                co_sink: int) -> None:
    """The paced run, with the first worker count, timing sinks in place of smtp-sink."""
    sw.use_processes(args.workers[0])
    if args.latency_rate is not None:
        rate, note = args.latency_rate, "as asked"
    else:
        top = statistics.median(by_workers[args.workers[0]])
        rate, note = 0.8 * top, f"80 % of the median SW rate {top:.1f}"
    for port in (ag_sink, co_sink):
        sinks[port].terminate()
        sinks[port].wait(timeout=10)
        del sinks[port]
    print()
    run_latency(port=sw.config.listeners.mta_port, rate=rate,
                seconds=args.latency_seconds, sessions=args.latency_sessions,
                domain=sw.config.hub.domain, body=msgfile.read_text().split("\n\n", 1)[1],
                ag_port=ag_sink, co_port=co_sink, processes=sw.processes, note=note)


def main() -> None:
    args = parse_args()
    bare_dir = Path(tempfile.mkdtemp(dir="/tmp", prefix="swb-"))
    sw_dir = Path(tempfile.mkdtemp(dir="/tmp", prefix="swb-"))
    sinks: dict[int, subprocess.Popen[bytes]] = {}
    bare: Bare | None = None
    sw_started = False
    try:
        msgfile = bare_dir / "msg.txt"
        message_file(msgfile)
        bare_sink, co_sink, ag_sink = free_port(), free_port(), free_port()
        for port in (bare_sink, co_sink, ag_sink):
            sinks[port] = sink(port)
        sinks_root = {f"smtp-sink:{port}": proc.pid for port, proc in sinks.items()}

        bare = Bare(bare_dir, free_port(), bare_sink)
        if not args.latency_only:
            bare.up()
            print(f"bare Postfix in {bare_dir}, smtpd 127.0.0.1:{bare.port} -> smtp-sink"
                  f" {bare_sink}")

        sw_started = True
        sw = start_sw(sw_dir, args.workers[0], co_sink, ag_sink)
        print(f"Single Window stack in {sw_dir}, MTA 127.0.0.1:{sw.config.listeners.mta_port}"
              f" -> agency smtp-sink {ag_sink}, DSNs -> company smtp-sink {co_sink}")
        if not args.latency_only:
            print(f"{args.messages} messages of {msgfile.stat().st_size} bytes per round,"
                  f" {args.sessions} parallel SMTP sessions, {os.cpu_count()} CPUs, transport"
                  f" processes {', '.join(map(str, args.workers))}\n")

        by_workers = throughput_rounds(args, bare, sw, msgfile, sinks_root, ag_sink, co_sink)
        if not args.no_latency:
            latency_run(args, sw, by_workers, sinks, msgfile, ag_sink, co_sink)
    finally:
        for proc in sinks.values():
            proc.terminate()
            proc.wait(timeout=10)
        if bare is not None:
            bare.down()
        if sw_started:
            stack.down(sw_dir, say=lambda _: None)
        if args.keep:
            print(f"kept: {bare_dir} {sw_dir}")
        else:
            shutil.rmtree(bare_dir, ignore_errors=True)
            shutil.rmtree(sw_dir, ignore_errors=True)


def sw_round(args: argparse.Namespace, config: Config, layout: Paths, su: Superuser,
             msgfile: Path, sw_log: LogTail, ag_sink: int, co_sink: int,
             roots: dict[str, int]) -> Result:
    domain = config.hub.domain
    with connect(config.database, autocommit=True) as conn:
        rows0 = conn.execute("SELECT count(*) AS n FROM message").fetchone()
        xacts0 = _transactions(conn)
    su.sql("SELECT pg_stat_statements_reset()")
    wal0 = wal_position(su)
    r = run_round("sw", port=config.listeners.mta_port, msgfile=msgfile,
                  sender="edi@bench-co.example", rcpt=f"bench-ag@{domain}",
                  messages=args.messages, sessions=args.sessions,
                  queue=layout.postfix_queue, log=sw_log,
                  expect={ag_sink: args.messages, co_sink: args.messages}, roots=roots)
    found = statements(su)
    wal = wal_position(su) - wal0
    with connect(config.database, autocommit=True) as conn:
        rows1 = conn.execute("SELECT count(*) AS n FROM message").fetchone()
        xacts = _transactions(conn) - xacts0
        statuses = conn.execute(
            "SELECT r.status, count(*) AS n FROM message_recipient r"
            " JOIN message m ON m.id = r.message_id"
            " WHERE m.received_at > now() - interval '1 hour'"
            " GROUP BY r.status ORDER BY 2 DESC").fetchall()
    assert rows0 is not None and rows1 is not None
    r.extra = (f"copies to agency sink {r.sent.get(ag_sink, 0)}, DSNs to company sink"
               f" {r.sent.get(co_sink, 0)}, new message rows {rows1['n'] - rows0['n']},"
               f" recipient statuses so far "
               + ", ".join(f"{s['status']}: {s['n']}" for s in statuses))
    maillog = layout.postfix_log
    t0 = time.perf_counter()
    postfix_committed(maillog, "<no-such-copy@bench>")
    scan = time.perf_counter() - t0
    r.extra += (f"; mail log now {maillog.stat().st_size / 1e6:.1f} MB, one"
                f" postfix_committed scan of it {scan * 1e3:.0f} ms; PostgreSQL"
                f" transactions per submission {xacts / args.messages:.1f}, WAL per"
                f" submission {wal / args.messages / 1024:.1f} kB; transport"
                f" processes {config.transport.processes}\n    "
                + statement_summary(found, args.messages, args.verbose))
    return r


def report(n: int, r: Result) -> None:
    state = "" if r.complete else "  INCOMPLETE (timed out)"
    print(f"round {n} {r.kind:<4}: {r.elapsed:7.2f} s  {r.rate:7.1f} msgs/s{state}")
    print(f"    {r.extra}; deferred {r.deferred}, bounced {r.bounced}")
    print(f"    {cpu_per_submission(r)}")
    print("    CPU seconds during the round:")
    print_cpu(r)
    print()


def workers_summary(results: list[Result], by_workers: dict[int, list[float]]) -> None:
    """msgs/s of the SW side per transport process count, and its ratio to the bare relay
    and to the first count, medians over the rounds."""
    mb = statistics.median(r.rate for r in results if r.kind == "bare")
    first = statistics.median(next(iter(by_workers.values())))
    print(f"{'workers':<8}{'SW msgs/s':>14}{'SW/bare':>12}{'vs first':>10}")
    for count, rates in by_workers.items():
        m = statistics.median(rates)
        print(f"{count:<8}{m:>14.1f}{m / mb:>12.2f}{m / first:>10.2f}")


def summary(results: list[Result]) -> None:
    bare = [r.rate for r in results if r.kind == "bare"]
    sw = [r.rate for r in results if r.kind == "sw"]
    print(f"{'round':<8}{'bare msgs/s':>14}{'SW msgs/s':>12}{'SW/bare':>10}")
    for i, (b, s) in enumerate(zip(bare, sw, strict=True), 1):
        print(f"{i:<8}{b:>14.1f}{s:>12.1f}{s / b:>10.2f}")
    mb, ms = statistics.median(bare), statistics.median(sw)
    print(f"{'median':<8}{mb:>14.1f}{ms:>12.1f}{ms / mb:>10.2f}")
    if not all(r.complete for r in results):
        print("WARNING: some rounds did not complete; their rates are lower bounds")


if __name__ == "__main__":
    main()
