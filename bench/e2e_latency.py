"""The paced part of the end-to-end bench: submission -> agency copy, submission -> DSN.

Open loop: message ``i`` is due at ``start + i / rate`` whether or not the earlier ones
have been answered, and its latency runs from that due time (not from when a session got
round to it), so a stalled hub shows as latency instead of as a slower sender
("coordinated omission"). Several SMTP sessions take the messages in turn; each carries a
unique token in its Subject and Message-ID, which survives into the agency's copy and
into the headers the "delivered" DSN returns to the company. Two sinks play the agency's
and the company's servers and timestamp each arrival by the tokens it carries (a small
asyncio SMTP server: aiosmtpd refuses the DSN parameters of MAIL FROM).

No imports from the project: the bench's unit tests load this module alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import smtplib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

#: The token's shape: a run id (so a late arrival of an earlier run never counts) and the
#: message's number in the run.
TOKEN = re.compile(rb"e2elat-([0-9a-f]{8})-(\d+)")


def token(run: str, n: int) -> str:
    return f"e2elat-{run}-{n}"


def tokens_in(data: bytes, run: str) -> set[int]:
    """The numbers of this run's tokens in ``data`` (a message may name its token more
    than once: Subject, Message-ID, a DSN's returned headers)."""
    return {int(m.group(2)) for m in TOKEN.finditer(data) if m.group(1).decode() == run}


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100): the smallest value that at
    least p % of the values do not exceed. No interpolation: with 200 values, p99 is the
    second-largest, a value that was really measured."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} not in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def schedule(rate: float, count: int) -> list[float]:
    """Seconds from the start at which each of ``count`` messages is due at ``rate``
    messages a second (evenly spaced, the first at once)."""
    if rate <= 0:
        raise ValueError(f"rate {rate} must be positive")
    return [i / rate for i in range(count)]


# --- sinks ------------------------------------------------------------------------------------

@dataclass
class TimingSink:
    """An SMTP server on 127.0.0.1:port noting when each token of ``run`` first arrived.

    It offers DSN as smtp-sink(1) does (the throughput rounds' sinks): Postfix then passes
    NOTIFY on instead of reporting "relayed" itself, so the paced run makes the same
    Postfix messages per submission as the throughput rounds. Everything is accepted.
    """

    port: int
    run: str
    arrived: dict[int, float] = field(default_factory=dict)
    messages: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None

    def arrive(self, data: bytes) -> None:
        now = time.monotonic()
        found = tokens_in(data, self.run)
        with self.lock:
            self.messages += 1
            for n in found:
                self.arrived.setdefault(n, now)

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        async def reply(text: str) -> None:
            writer.write(text.encode() + b"\r\n")
            await writer.drain()

        try:
            await reply("220 timing-sink ESMTP")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    await reply("250-timing-sink\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES"
                                "\r\n250-SIZE 0\r\n250 DSN")
                elif verb == b"DATA":
                    await reply("354 End data with <CR><LF>.<CR><LF>")
                    lines = []
                    while (chunk := await reader.readline()) not in (b".\r\n", b".\n", b""):
                        lines.append(chunk)
                    self.arrive(b"".join(lines))
                    await reply("250 2.0.0 Ok")
                elif verb == b"QUIT":
                    await reply("221 2.0.0 Bye")
                    break
                else:  # HELO, MAIL, RCPT, RSET, NOOP: all fine
                    await reply("250 2.0.0 Ok")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # The sink stops with Postfix's cached connections still open: ending the
            # session quietly keeps asyncio from logging each as an error.
            pass
        finally:
            writer.close()

    def start(self) -> TimingSink:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(
                asyncio.start_server(self.session, "127.0.0.1", self.port))
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        """Close the listener and every session (Postfix keeps cached connections open),
        then end the thread."""
        loop, thread, server = self._loop, self._thread, self._server
        if loop is None or thread is None or server is None:
            return

        async def shutdown() -> None:
            server.close()
            sessions = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in sessions:
                task.cancel()
            await asyncio.gather(*sessions, return_exceptions=True)
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = self._server = None


# --- the paced sender -------------------------------------------------------------------------

@dataclass
class Sent:
    due: dict[int, float] = field(default_factory=dict)  # number -> due time (monotonic)
    failed: list[str] = field(default_factory=list)
    late: float = 0.0  # the most a message started after its due time, seconds


def send_paced(port: int, *, rate: float, count: int, sessions: int, sender: str,
               rcpt: str, body: str, run: str, domain: str) -> Sent:
    """Send ``count`` messages at ``rate`` a second over ``sessions`` SMTP sessions
    (threads, one connection each, kept for many messages)."""
    offsets = schedule(rate, count)
    sent = Sent()
    lock = threading.Lock()
    next_index = iter(range(count))
    start = time.monotonic() + 0.2

    def session() -> None:
        client: smtplib.SMTP | None = None
        try:
            while True:
                with lock:
                    n = next(next_index, None)
                if n is None:
                    return
                due = start + offsets[n]
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                t = token(run, n)
                text = (f"From: <{sender}>\nTo: <{rcpt}>\nSubject: {t}\n"
                        f"Message-ID: <{t}@{domain}>\n"
                        f"Content-Type: application/xml; charset=utf-8\n\n{body}")
                try:
                    if client is None:
                        client = smtplib.SMTP("127.0.0.1", port, timeout=60)
                        client.ehlo("bench-co.example")
                    with lock:
                        sent.late = max(sent.late, time.monotonic() - due)
                    client.sendmail(sender, [rcpt], text.encode())
                    with lock:
                        sent.due[n] = due
                except (smtplib.SMTPException, OSError) as exc:
                    with lock:
                        sent.failed.append(f"{n}: {exc}")
                    if client is not None:
                        with contextlib.suppress(Exception):
                            client.close()
                    client = None
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.quit()

    threads = [threading.Thread(target=session, daemon=True) for _ in range(sessions)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sent


@dataclass
class Latencies:
    sent: int
    arrived: int
    millis: list[float]

    def line(self) -> str:
        if not self.millis:
            return f"sent {self.sent}, arrived {self.arrived}"
        return (f"sent {self.sent}, arrived {self.arrived}, p50 {percentile(self.millis, 50):.0f}"
                f" ms, p99 {percentile(self.millis, 99):.0f} ms,"
                f" max {max(self.millis):.0f} ms")


def latencies(due: dict[int, float], arrived: dict[int, float]) -> Latencies:
    """Milliseconds from each message's due time to its arrival, for those that arrived."""
    millis = [(arrived[n] - t) * 1e3 for n, t in due.items() if n in arrived]
    return Latencies(len(due), len(millis), millis)
