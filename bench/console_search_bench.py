"""Console search benchmark: :func:`singlewindow.store.console.search` over a big log
(issue 18).

Not a test. Run as root from the repository root, with the source to measure first on the
path::

    PYTHONPATH=$PWD/src .venv/bin/python bench/console_search_bench.py [--messages 300000]

It brings up a private PostgreSQL (``stack.up(database_only=True)`` in /tmp/sw-*) and
writes a synthetic log straight into it: ``--messages`` messages from 20 companies to 5
agencies, each with one recipient (one in 97 refused, one in 89 deferred), a copy each,
a control message for one in 83, a DSN notice for one in ten, and a company with five
messages, the oldest. Then it times each kind of search the console runs (the median of
``--repeat`` runs, warm cache) and prints the query plan's top nodes for the slowest, so a
sequential scan over a whole table shows.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.local import short_state_dir  # noqa: E402

from singlewindow import stack  # noqa: E402
from singlewindow.config import OWNER_ROLE  # noqa: E402
from singlewindow.store import connect, console, directory  # noqa: E402

D = "sw.test"


def fill(conn: Any, n: int) -> None:
    """The synthetic log (module docstring), in a few set-based statements."""
    for i in range(20):
        directory.add_party(conn, f"co{i}", "company", [], None)
        directory.add_address(conn, f"co{i}@{D}", f"co{i}", f"edi@co{i}.example", None, D)
    for i in range(5):
        directory.add_party(conn, f"ag{i}", "agency", [], None)
        directory.add_address(conn, f"ag{i}@{D}", f"ag{i}", f"in@ag{i}.example", None, D)
    directory.add_party(conn, "rare", "company", [], None)
    conn.execute(
        "INSERT INTO message (id, received_at, listener, party_id, envelope_from,"
        " header_message_id, queue_id, payload_sha256, message_type, subject)"
        " SELECT 'SW' || lpad(g::text, 17, '0') || 'x', now() - g * interval '1 second',"
        " 'mta', (SELECT id FROM party WHERE name = 'co' || (g %% 20)),"
        " 'co' || (g %% 20) || '@sw.test', '<m' || g || '@co.example>', 'Q' || g, 'x',"
        " (ARRAY['PAXLST-D03B', 'GENDEC-1', 'PAXLST-D05B'])[g %% 3 + 1], 'subject ' || g"
        " FROM generate_series(1, %s) g", (n,))
    conn.execute("UPDATE message SET party_id = (SELECT id FROM party WHERE name = 'rare')"
                 " WHERE id IN (SELECT id FROM message ORDER BY received_at LIMIT 5)")
    conn.execute(
        "INSERT INTO message_recipient (message_id, logical, status, reason, decided_at)"
        " SELECT id, 'ag' || (k % 5) || '@sw.test', CASE WHEN k % 97 = 0 THEN"
        " '554 5.7.1' WHEN k % 89 = 0 THEN '451 4.3.0' ELSE '250 2.0.0' END, 'r', now()"
        " FROM (SELECT id, substr(id, 3, 17)::bigint AS k FROM message) m")
    conn.execute(
        "INSERT INTO forward (message_id, recipient, destination, physical, copy_message_id,"
        " state, queue_id) SELECT id, 'ag0@sw.test', 'ag0@sw.test', 'in@ag0.example',"
        " '<' || id || '.tag@sw.test>', 'injected', 'C' || substr(id, 3, 17) FROM message")
    conn.execute(
        "INSERT INTO forward (message_id, recipient, destination, physical, copy_message_id,"
        " state, queue_id) SELECT id, '*control*', 'x@sw.test', 'x@sw.test',"
        " '<' || id || '.control@sw.test>', 'injected', 'K' || substr(id, 3, 17)"
        " FROM message WHERE substr(id, 3, 17)::bigint % 83 = 0")
    conn.execute(
        "INSERT INTO notice_delivery (key, message_id, recipient, physical, kind,"
        " copy_message_id, state, queue_id) SELECT 'k' || id, id, 'co@sw.test',"
        " 'edi@co.example', 'dsn', '<dsn.' || id || '@sw.test>', 'injected',"
        " 'N' || substr(id, 3, 17) FROM message WHERE substr(id, 3, 17)::bigint % 10 = 0")
    conn.execute("VACUUM ANALYZE")


def queries(conn: Any, n: int) -> dict[str, console.Query]:
    mid = n // 2
    sid = f"SW{mid:017d}x"
    co3 = directory.get_party(conn, "co3").id
    day = datetime.now(UTC) - timedelta(seconds=n // 2)
    return {
        "newest": console.Query(),
        "text: Single Window id": console.Query(text=sid),
        "text: inbound queue id": console.Query(text=f"Q{mid}"),
        "text: Message-ID without <>": console.Query(text=f"m{mid}@co.example"),
        "text: copy's queue id": console.Query(text=f"C{mid:017d}"),
        "text: copy's Message-ID": console.Query(text=f"<{sid}.tag@sw.test>"),
        "text: notice's queue id": console.Query(text=f"N{mid - mid % 10:017d}"),
        "party: a submitter (5 %)": console.Query(party="co3"),
        "party: a recipient (20 %)": console.Query(party="ag2"),
        "party: 5 old messages": console.Query(party="rare"),
        "type: a message's releases": console.Query(message_type="PAXLST"),
        "outcome: refused (1 %)": console.Query(outcome="refused"),
        "outcome + party": console.Query(outcome="refused", party="ag4"),
        "time window": console.Query(since=day - timedelta(hours=1), until=day),
        "company scope": console.Query(party_id=co3),
        "company scope + outcome": console.Query(party_id=co3, outcome="refused"),
        "company scope + text": console.Query(party_id=co3, text=f"Q{mid}"),
        "page 2 by keyset": later(conn, console.Query(), 2),
        "page 10 by keyset": later(conn, console.Query(), 10),
        "page 10 by keyset + outcome": later(conn, console.Query(outcome="refused"), 10),
        "company page 10 by keyset": later(conn, console.Query(party_id=co3), 10),
    }


def later(conn: Any, q: console.Query, page: int) -> console.Query:
    """``q``'s page number ``page``, reached by following each page's cursor."""
    for _ in range(page - 1):
        q = replace(q, before=console.search_page(conn, q).next_before)
    return q


class Explaining:
    """A connection that prints the plan of what it is asked, then runs it."""

    def __init__(self, conn: Any, lines: int = 12) -> None:
        self.conn = conn
        self.lines = lines

    def execute(self, sql: str, params: Any = None) -> Any:
        plan = self.conn.execute("EXPLAIN ANALYZE " + sql, params).fetchall()
        for row in plan[:self.lines]:
            print("    " + row["QUERY PLAN"])
        return self.conn.execute(sql, params)


def timed(run: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    state = short_state_dir()
    try:
        config = stack.up(state, database_only=True, say=lambda _: None)
        with connect(config.database, autocommit=True, role=OWNER_ROLE) as conn:
            started = time.perf_counter()
            fill(conn, args.messages)
            print(f"{args.messages:,} messages written in {time.perf_counter() - started:.0f} s")
            results = []
            asked = queries(conn, args.messages)
            for name, q in asked.items():
                rows = len(console.search(conn, q))
                seconds = timed(lambda q=q: console.search(conn, q), args.repeat)  # type: ignore[misc]
                results.append((seconds, name, q))
                print(f"{name:32s} {rows:4d} rows {seconds * 1000:8.1f} ms")
            swid = f"SW{args.messages // 2:017d}x"
            print(f"{'responses':32s}           "
                  f"{timed(lambda: console.responses(conn, swid), args.repeat) * 1000:8.1f} ms")
            seconds, name, q = max(results, key=lambda r: r[0])
            print(f"\nthe slowest, {name}:")
            console.search(Explaining(conn), q)  # type: ignore[arg-type]
            for name in ("page 10 by keyset", "company page 10 by keyset"):  # index used?
                print(f"\n{name}:")
                console.search(Explaining(conn, 16), asked[name])  # type: ignore[arg-type]
    finally:
        stack.down(state, say=lambda _: None)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
