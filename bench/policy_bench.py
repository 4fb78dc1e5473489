"""Policy benchmark: the policy daemon's latency at a steady request rate (issue 13).

Not a test. Run as root from the repository root, with the source to measure first on the
path (it is also what the stack's daemons run)::

    PYTHONPATH=$PWD/src .venv/bin/python bench/policy_bench.py [--rate 500] [--seconds 60]
        [--connections 10]

It brings up a private stack (``stack.up`` in /tmp/swpb-*), registers a company (a peer
network and a physical address) and an agency, and then speaks the policy delegation
protocol (SMTPD_POLICY_README) to the daemon's socket as Postfix's smtpd does at RCPT:
the full attribute set of a request (protocol_state=RCPT, policy_context=mta, the
company's peer as client_address, its sender, the agency's logical address), one request
at a time per connection, over ``--connections`` connections.

Open loop: request i is due at start + i/rate, on connection i mod N. A connection whose
previous answer is late sends late, and the latency of every request counts from its
scheduled time, so a stall of the daemon shows in the figures instead of slowing the load
(no coordinated omission). Prints p50/p99/p99.9/max, the requests answered, the daemon's
own CPU per request (/proc), and ``policy p99: N ms (goal 2 ms)``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.local import free_port  # noqa: E402

from singlewindow import services, stack  # noqa: E402
from singlewindow.config import ADMIN_ROLE, Config, Console, Listeners, Metrics, Paths  # noqa: E402
from singlewindow.store import connect, directory  # noqa: E402

GOAL_P99_MS = 2.0
PEER_NETWORK = "10.20.0.0/24"
CLIENT = "10.20.0.5"
SENDER = "edi@bench-co.example"


def request(n: int, rcpt: str, mta_port: int) -> bytes:
    """What Postfix 3.7's smtpd sends at RCPT on the MTA listener (SMTPD_POLICY_README)."""
    attrs = [
        ("request", "smtpd_access_policy"), ("protocol_state", "RCPT"),
        ("protocol_name", "ESMTP"), ("client_address", CLIENT),
        ("client_name", "mx.bench-co.example"), ("client_port", str(40000 + n % 20000)),
        ("reverse_client_name", "mx.bench-co.example"), ("server_address", "127.0.0.1"),
        ("server_port", str(mta_port)), ("helo_name", "mx.bench-co.example"),
        ("sender", SENDER), ("recipient", rcpt), ("recipient_count", "0"),
        ("queue_id", ""), ("instance", f"{n:x}.6b0adacf.c1939.0"), ("size", "0"),
        ("etrn_domain", ""), ("stress", ""), ("sasl_method", ""), ("sasl_username", ""),
        ("sasl_sender", ""), ("ccert_subject", ""), ("ccert_issuer", ""),
        ("ccert_fingerprint", ""), ("ccert_pubkey_fingerprint", ""),
        ("encryption_protocol", ""), ("encryption_cipher", ""), ("encryption_keysize", "0"),
        ("policy_context", "mta"),
    ]
    return "".join(f"{k}={v}\n" for k, v in attrs).encode() + b"\n"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connection(path: Path, due: list[float], payloads: list[bytes],
               latencies: list[float], replies: dict[bytes, int]) -> None:
    """One smtpd's policy client: a request, its answer, the next. A thread with a blocking
    socket, not asyncio: time.sleep wakes within tens of microseconds of the due time,
    an event loop only to its poll's millisecond, which would count as latency."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        for at, payload in zip(due, payloads, strict=True):
            delay = at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sock.sendall(payload)
            reply = b""
            while not reply.endswith(b"\n\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("the policy daemon closed the connection")
                reply += chunk
            latencies.append(time.perf_counter() - at)
            replies[reply] = replies.get(reply, 0) + 1


def load(path: Path, rate: float, seconds: float, connections: int, rcpt: str,
         mta_port: int) -> tuple[list[float], dict[bytes, int], float]:
    total = int(rate * seconds)
    start = time.perf_counter() + 0.5
    latencies: list[float] = []
    replies: dict[bytes, int] = {}
    threads = []
    for c in range(connections):
        numbers = range(c, total, connections)
        threads.append(threading.Thread(target=connection, args=(
            path, [start + n / rate for n in numbers],
            [request(n, rcpt, mta_port) for n in numbers], latencies, replies)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, replies, time.perf_counter() - start


def percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (a private stack)")

    state = Path(tempfile.mkdtemp(dir="/tmp", prefix="swpb-"))
    try:
        base = replace(Config(), listeners=Listeners(
            mta_port=free_port(), msa_port=free_port(), pop3_port=free_port(),
            pop3s_port=free_port(), reinject_port=free_port()),
            metrics=Metrics(listen=f"127.0.0.1:{free_port()}"),
            console=Console(listen=f"127.0.0.1:{free_port()}"))
        config = stack.up(state, base=base, say=lambda _: None)
        domain = config.hub.domain
        rcpt = f"bench-ag@{domain}"
        with connect(config.database, autocommit=True, role=ADMIN_ROLE) as conn:
            directory.add_party(conn, "bench-co", "company", [PEER_NETWORK], "127.0.0.1:9")
            directory.add_address(conn, f"bench-co@{domain}", "bench-co", SENDER, None,
                                  domain)
            directory.add_party(conn, "bench-ag", "agency", [], "127.0.0.1:9")
            directory.add_address(conn, rcpt, "bench-ag", "in@bench-ag.example", None, domain)
        pid = services.read_pid(Paths(state).pid_file("policyd"))
        assert pid is not None
        path = config.paths.policy_socket
        # Warm up: the first requests find the new parties (a reload) and open nothing else.
        load(path, 200, 1, 2, rcpt, config.listeners.mta_port)
        print(f"policy daemon pid {pid} on {path}; {args.rate:.0f} requests/s for "
              f"{args.seconds:.0f} s over {args.connections} connections, open loop; "
              f"{os.cpu_count()} CPUs")
        cpu0 = cpu_seconds(pid)
        latencies, replies, elapsed = load(path, args.rate, args.seconds, args.connections,
                                           rcpt, config.listeners.mta_port)
        cpu = cpu_seconds(pid) - cpu0
    finally:
        stack.down(state, say=lambda _: None)
        if args.keep:
            print(f"kept: {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)

    ordered = sorted(latencies)
    ms = 1000.0
    answered = len(ordered)
    print(f"requests answered: {answered} in {elapsed:.1f} s ({answered / elapsed:.0f}/s); "
          "replies: " + ", ".join(f"{r.decode().strip()!r} x{n}" for r, n in replies.items()))
    print(f"latency from the scheduled send: p50 {percentile(ordered, 0.50) * ms:.2f} ms, "
          f"p99 {percentile(ordered, 0.99) * ms:.2f} ms, "
          f"p99.9 {percentile(ordered, 0.999) * ms:.2f} ms, max {ordered[-1] * ms:.2f} ms")
    print(f"policy daemon CPU: {cpu:.2f} s, {cpu / answered * ms:.3f} ms per request")
    print(f"policy p99: {percentile(ordered, 0.99) * ms:.2f} ms (goal {GOAL_P99_MS:.0f} ms)")


if __name__ == "__main__":
    main()
