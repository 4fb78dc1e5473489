"""Maildrop deliveries per second: a local dovecot-lda against the maildrop hop (issue 15).

One local stack (its Dovecot configuration, a demo maildrop, the real dovecot-lda) and
one sw-maildrop beside it on 127.0.0.1 serving the same maildrops. In each round the same
number of messages (unique Message-IDs, ``--size`` bytes) goes into the demo login's
maildrop first as a single node's transport delivers them (:func:`maildrop.deliver`:
the session lock, then dovecot-lda), then as an edge's transport does (:class:`hop.Hop`:
a TCP connection, LHLO, STARTTLS with the certificate verified, LHLO, one transaction,
and on the backend the same lock and dovecot-lda). ``--threads`` deliver at once.

    PYTHONPATH=src .venv/bin/python bench/maildrop_bench.py [--count 200] [--rounds 3]

prints a line per round and then ``maildrop hop: local N/s, hop M/s, ratio R`` (medians
of the rounds; ratio = hop / local).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.local import free_port, short_state_dir  # noqa: E402
from tests.support.maildrop import backend  # noqa: E402

from singlewindow import stack  # noqa: E402
from singlewindow.config import Config, Console, Listeners, Maildrop, Metrics  # noqa: E402
from singlewindow.transport import hop, maildrop  # noqa: E402

LOGIN = stack.DEMO_LOGIN


def message(size: int) -> bytes:
    head = (f"From: <single-window@sw.test>\r\nTo: <{LOGIN}@sw.test>\r\nSubject: bench\r\n"
            f"Message-ID: <SWN{secrets.token_hex(10)}@sw.test>\r\n"
            "Date: Mon, 30 Nov 2026 08:00:00 +0000\r\n\r\n").encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def rate(deliver: Callable[[bytes], int], count: int, size: int, threads: int) -> float:
    """Deliveries per second of ``count`` messages, ``threads`` at a time."""
    data = [message(size) for _ in range(count)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        codes = list(pool.map(deliver, data))
    elapsed = time.perf_counter() - started
    failed = [c for c in codes if c != 250]
    if failed:
        raise SystemExit(f"{len(failed)} deliveries failed: {failed[:5]}")
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=200, help="deliveries per round and way")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=8192, help="bytes per message")
    parser.add_argument("--threads", type=int, default=1, help="deliveries at once")
    args = parser.parse_args()

    state = short_state_dir()
    work = short_state_dir()
    base = replace(Config(), listeners=Listeners(
        mta_port=free_port(), msa_port=free_port(), pop3_port=free_port(),
        pop3s_port=free_port(), reinject_port=free_port()),
        metrics=Metrics(listen=f"127.0.0.1:{free_port()}"),
        console=Console(listen=f"127.0.0.1:{free_port()}"))
    try:
        config = stack.up(state, demo=True, base=base, say=lambda _: None)
        port = free_port()
        served = replace(config, maildrop=Maildrop(listen=f"127.0.0.1:{port}",
                                                   clients=("127.0.0.1",)))
        edge = replace(config, maildrop=Maildrop(backend=f"localhost:{port}"))
        client = hop.Hop(edge)

        def local(data: bytes) -> int:
            return maildrop.deliver(config.transport.dovecot_lda, config.dovecot_config,
                                    config.paths.maildrop_dir, LOGIN, "", data).code

        def over_the_hop(data: bytes) -> int:
            return client.deliver(LOGIN, "", data).code

        with backend(served, work):
            rate(local, 10, args.size, 1)  # warm both ways up: caches, first Maildir
            rate(over_the_hop, 10, args.size, 1)
            locals_, hops = [], []
            for n in range(1, args.rounds + 1):
                locals_.append(rate(local, args.count, args.size, args.threads))
                hops.append(rate(over_the_hop, args.count, args.size, args.threads))
                print(f"round {n}: local {locals_[-1]:.1f}/s, hop {hops[-1]:.1f}/s "
                      f"({args.count} x {args.size} B, {args.threads} at a time)",
                      flush=True)
        local_rate, hop_rate = statistics.median(locals_), statistics.median(hops)
        print(f"maildrop hop: local {local_rate:.1f}/s, hop {hop_rate:.1f}/s, "
              f"ratio {hop_rate / local_rate:.2f}")
    finally:
        stack.down(state, say=lambda _: None)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
