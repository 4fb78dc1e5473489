"""Is this node healthy? The probes behind ``swctl health`` and the health metrics.

Each probe is a plain function of the configuration that asks one component the way its
clients do, and returns what is wrong (a list of :class:`Problem`, empty when it answers):

* PostgreSQL: a connection and ``SELECT 1``;
* Postfix: the master process (its pid file in the queue directory), the MTA listener's
  ``220`` greeting, the MSA's after its TLS handshake (implicit TLS);
* Dovecot: the POP3 listener's ``+OK`` greeting (on a POP3 backend, whose plain POP3
  listener is off, the POP3S listener's after its TLS handshake);
* the project's daemons (:data:`singlewindow.services.DAEMONS`): the policy daemon's socket
  ready for Postfix (:func:`singlewindow.services.serving`), the milter's answer to an option
  negotiation (:mod:`singlewindow.milter.probe`), the transport's LMTP ``220`` greeting;
* the web console (issue 18): ``GET /login`` over TLS on ``[console] listen``, the
  certificate verified against the node's CA (:func:`singlewindow.services.console_answers`);
* the maildrop backend, on an edge whose ``[maildrop] backend`` is set (issue 15): an LMTP
  session with it as the transport opens one (greeting, LHLO, STARTTLS with the
  certificate verified against ``[tls] ca_file`` and the backend's name, LHLO);
* on a POP3 backend (``maildrop`` in ``[health] components``), its own maildrop service
  (``sw-maildrop``): a greeting on ``[maildrop] listen``, ``220``, or ``554 5.7.1`` for a
  probe from an address that is not one of its edges (it answers, and refuses);
* Postfix's queue: messages per queue (incoming, active, deferred, hold) and the oldest
  one's age, from ``postqueue -j``;
* the certificates' expiry: the listeners', the transport's re-injection client
  certificate, the deployment's CA.

**Why ``postqueue -j`` and not the queue directory.** Walking ``incoming/``, ``active/``,
``deferred/``, ``hold/`` would save a process, but the age it could read is a file's mtime,
and qmgr sets a deferred file's mtime to its *next* delivery attempt: the age would be
wrong exactly for the mail that waits. The arrival time is a record inside each queue
file, which showq(8) reads for ``postqueue -j`` (one JSON object per message, its
``arrival_time`` and ``queue_name``); as root postqueue runs showq itself when Postfix is
down, and on a deployed node it needs no root at all. Its cost grows with the queue, as
any correct count does.

What counts as a problem is ``[health]`` in config.py; :func:`check` runs every probe at
once (threads: each waits on a socket or a process) and :class:`HealthCollector` exports
the result in the metric names of the shared contract for the Prometheus exporter.
"""

from __future__ import annotations

import contextlib
import json
import smtplib
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from singlewindow import config as configmod
from singlewindow import services
from singlewindow.config import Config
from singlewindow.milter import probe
from singlewindow.transport import hop

#: Nagios plugin states (the exit status of ``swctl health``) and their names.
OK, WARNING, CRITICAL = 0, 1, 2
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL"}
#: Every component a node may run (``[health] components`` picks this node's).
COMPONENTS = ("postgresql", "postfix", "dovecot", "policy", "milter", "transport",
              "console")
#: What a POP3 backend adds: its maildrop service (issue 15).
BACKEND_COMPONENTS = ("maildrop",)
#: The component each of the stack's daemons is (services.DAEMONS names the policy daemon
#: after its program).
DAEMON_COMPONENT = {"policyd": "policy", "milter": "milter", "transport": "transport"}
#: Postfix's queues as the metrics and ``swctl health`` report them (showq's
#: ``maildrop`` is counted as ``incoming``: both wait for the queue manager).
QUEUES = ("incoming", "active", "deferred", "hold")
#: The queues whose mail is on its way: their size and age are the backlog.
WAITING = ("incoming", "active", "deferred")


@dataclass(frozen=True, slots=True)
class Problem:
    severity: int
    component: str
    text: str

    def line(self) -> str:
        return f"{STATE_NAMES[self.severity]} {self.component}: {self.text}"


@dataclass(frozen=True, slots=True)
class QueueState:
    messages: int = 0
    #: Seconds since the oldest message in it arrived; 0 when empty.
    oldest: float = 0.0


@dataclass(slots=True)
class Report:
    """What :func:`check` found."""

    #: Each checked component: does it answer?
    up: dict[str, bool] = field(default_factory=dict)
    #: Postfix's queues, or None when they could not be listed.
    queues: dict[str, QueueState] | None = None
    #: Each certificate read: its notAfter as Unix time.
    certificates: dict[str, float] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def status(self) -> int:
        return max((p.severity for p in self.problems), default=OK)

    def summary(self, now: float | None = None) -> str:
        """The first line: the state, what answers, the queue, with Nagios perfdata."""
        now = time.time() if now is None else now
        answering = sum(self.up.values())
        parts = [f"{answering} of {len(self.up)} components answer"]
        perf = []
        if self.queues is not None:
            waiting = sum(self.queues[q].messages for q in WAITING)
            oldest = max(self.queues[q].oldest for q in WAITING)
            parts.append(f"queue {waiting} waiting (oldest {oldest:.0f} s), "
                         f"{self.queues['hold'].messages} held")
            perf += [f"{q}={self.queues[q].messages}" for q in QUEUES]
            perf.append(f"oldest={oldest:.0f}s")
        if self.certificates:
            days = (min(self.certificates.values()) - now) / 86400
            parts.append(f"first certificate expiry in {days:.0f} days")
        if self.problems:
            count = len(self.problems)
            parts.insert(0, f"{count} problem{'s' if count > 1 else ''}")
        line = f"SINGLEWINDOW {STATE_NAMES[self.status]} - " + "; ".join(parts)
        return line + (" | " + " ".join(perf) if perf else "")

    def lines(self) -> list[str]:
        """The summary, then one line per problem, the worst first."""
        ordered = sorted(self.problems, key=lambda p: -p.severity)
        return [self.summary(), *(p.line() for p in ordered)]


# --- probes ----------------------------------------------------------------------------

def _why(exc: BaseException) -> str:
    """An exception as one short phrase (a connection string never in it)."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer in time"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _loopback(bind: str) -> str:
    """Where to reach a listener bound to ``bind`` from this node."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "::": "::1"}.get(
        bind, bind)


def _greeting(sock: socket.socket, expected: bytes | tuple[bytes, ...]) -> str | None:
    first = sock.recv(512)
    if first.startswith(expected):
        return None
    shown = first.split(b"\r\n", 1)[0].decode("ascii", "replace")[:80]
    return f"greets with {shown!r}" if shown else "closes without a greeting"


def greets(host: str, port: int, expected: bytes, timeout: float,
           tls: bool = False) -> str | None:
    """None when ``host:port`` greets with ``expected`` (after a TLS handshake when
    ``tls``), else what it did. The certificate is not verified here: its expiry is
    probed on its own, and a listener that greets is up whatever it presents."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if not tls:
                return _greeting(raw, expected)
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with context.wrap_socket(raw) as wrapped:
                return _greeting(wrapped, expected)
    except (OSError, ssl.SSLError) as exc:
        return _why(exc)


def postgresql(config: Config, role: str = configmod.ADMIN_ROLE) -> list[Problem]:
    timeout = config.health.timeout
    try:
        with psycopg.connect(config.database.dsn(role),
                             connect_timeout=max(1, round(timeout))) as conn:
            conn.execute("SELECT set_config('statement_timeout', %s, false)",
                         (str(int(timeout * 1000)),))
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return [Problem(CRITICAL, "postgresql", f"does not answer: {_why(exc)}")]
    return []


def postconf(config: Config, name: str) -> str:
    """One of Postfix's parameters as its configuration gives it (``postconf -h``)."""
    result = subprocess.run(["postconf", "-c", str(config.postfix_config), "-h", name],
                            capture_output=True, text=True, timeout=config.health.timeout,
                            check=True)
    return result.stdout.strip()


def postfix(config: Config) -> list[Problem]:
    """The master process, then each public listener's greeting."""
    problems = []
    try:
        queue_directory = Path(postconf(config, "queue_directory"))
        pid = services.read_pid(queue_directory / "pid" / "master.pid")
        if pid is None or not services.alive(pid, "master"):
            problems.append(Problem(CRITICAL, "postfix", "the master process is not running "
                                    f"({queue_directory}/pid/master.pid)"))
    except (OSError, subprocess.SubprocessError) as exc:
        problems.append(Problem(CRITICAL, "postfix", f"postconf failed: {_why(exc)}"))
    listeners, timeout = config.listeners, config.health.timeout
    host = _loopback(listeners.bind)
    for name, port, tls in (("MTA", listeners.mta_port, False),
                            ("MSA", listeners.msa_port, True)):
        wrong = greets(host, port, b"220", timeout, tls=tls)
        if wrong is not None:
            problems.append(Problem(CRITICAL, "postfix",
                                    f"the {name} listener {host}:{port} {wrong}"))
    return problems


def dovecot(config: Config) -> list[Problem]:
    """The POP3 listener's greeting; a POP3 backend (its maildrop service serves edges:
    ``[maildrop] clients``) has only POP3S, for the edges' proxies."""
    backend = bool(config.maildrop.clients)
    host = _loopback(config.listeners.bind)
    port = config.listeners.pop3s_port if backend else config.listeners.pop3_port
    wrong = greets(host, port, b"+OK", config.health.timeout, tls=backend)
    if wrong is None:
        return []
    name = "POP3S" if backend else "POP3"
    return [Problem(CRITICAL, "dovecot", f"the {name} listener {host}:{port} {wrong}")]


def _lmtp_greets(path: Path, timeout: float) -> str | None:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            return _greeting(sock, b"220")
    except OSError as exc:
        return _why(exc)


def _milter_answers(path: Path, timeout: float) -> str | None:
    try:
        probe.negotiate(path, timeout)
    except (OSError, probe.ProbeError) as exc:
        return _why(exc)
    return None


def _policy_serving(path: Path, timeout: float) -> str | None:
    return None if services.serving(path) else "is not ready (missing, not mode 0660, or refused)"


#: How each daemon's socket is asked (see the module docstring).
_DAEMON_PROBES: dict[str, Callable[[Path, float], str | None]] = {
    "policy": _policy_serving, "milter": _milter_answers, "transport": _lmtp_greets}


def daemon(config: Config, name: str) -> list[Problem]:
    """Daemon ``name`` (a :data:`services.DAEMONS` key) answers on its socket."""
    component = DAEMON_COMPONENT[name]
    path = services.DAEMONS[name].address(config)
    assert isinstance(path, Path), f"{name} answers on a unix socket"
    wrong = _DAEMON_PROBES[component](path, config.health.timeout)
    if wrong is None:
        return []
    return [Problem(CRITICAL, component, f"{path} {wrong}")]


def console(config: Config) -> list[Problem]:
    """The web console answers a page over verified TLS."""
    wrong = services.console_answers(config, config.health.timeout)
    if wrong is None:
        return []
    return [Problem(CRITICAL, "console", f"https://{config.console.listen}/ {wrong}")]


def maildrop(config: Config) -> list[Problem]:
    """The maildrop backend takes a session inside verified TLS, as the transport's."""
    try:
        client = hop.connect(config, timeout=config.health.timeout)
    except (OSError, smtplib.SMTPException, ssl.SSLError, hop.HopError) as exc:
        why = f"TLS: {exc.reason or exc}" if isinstance(exc, ssl.SSLError) else _why(exc)
        return [Problem(CRITICAL, "maildrop",
                        f"the maildrop backend {config.maildrop.backend}: {why}")]
    with contextlib.suppress(OSError, smtplib.SMTPException):
        client.quit()
    return []


def maildrop_service(config: Config) -> list[Problem]:
    """A POP3 backend's own maildrop service greets: ``220``, or ``554 5.7.1`` when this
    probe's address is not one of the edges it serves (up, and refusing as it should)."""
    host, port = config.maildrop.listen_address
    try:
        with socket.create_connection((host, port), timeout=config.health.timeout) as sock:
            wrong = _greeting(sock, (b"220 ", b"554 5.7.1 "))
    except OSError as exc:
        wrong = _why(exc)
    if wrong is None:
        return []
    return [Problem(CRITICAL, "maildrop", f"the maildrop service {host}:{port} {wrong}")]


def _showq(listing: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``postqueue -j``'s lines: each message's queue (showq's ``maildrop`` named
    ``incoming``, see :data:`QUEUES`) and its JSON object."""
    for line in listing.splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("queue_name", ""))
        yield ("incoming" if name == "maildrop" else name), entry


def queue_states(listing: str, now: float) -> dict[str, QueueState]:
    """Count ``postqueue -j``'s lines per queue, with the oldest arrival in each."""
    counts = dict.fromkeys(QUEUES, 0)
    arrived: dict[str, float] = {}
    for name, entry in _showq(listing):
        if name not in counts:
            continue
        counts[name] += 1
        when = float(entry.get("arrival_time", now))
        arrived[name] = min(when, arrived.get(name, when))
    return {q: QueueState(counts[q], max(0.0, now - arrived[q]) if q in arrived else 0.0)
            for q in QUEUES}


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One message in Postfix's queue, as ``postqueue -j`` lists it (postqueue(1), "JSON
    OBJECT FORMAT"): what the console's queue page shows of the deferred mail."""

    queue_id: str
    queue_name: str
    """One of :data:`QUEUES`."""
    arrival_time: float
    """Unix time."""
    sender: str
    """The envelope sender; empty for the null sender (the hub's own mail)."""
    recipients: list[str]
    """The recipients still to deliver."""
    reasons: list[str]
    """Why delivery to them was deferred (their ``delay_reason``), where Postfix gave
    one."""


def queue_entries(listing: str) -> list[QueueEntry]:
    """The messages of a ``postqueue -j`` listing, in its order."""
    entries = []
    for name, entry in _showq(listing):
        recipients = [r for r in entry.get("recipients", ()) if isinstance(r, dict)]
        entries.append(QueueEntry(
            str(entry.get("queue_id", "")), name, float(entry.get("arrival_time", 0)),
            str(entry.get("sender", "")), [str(r.get("address", "")) for r in recipients],
            [str(r["delay_reason"]) for r in recipients if r.get("delay_reason")]))
    return entries


def _postqueue(config: Config) -> str:
    """``postqueue -c CONF -j``'s output (see the module docstring): the one place it
    runs."""
    result = subprocess.run(
        [str(config.transport.postqueue), "-c", str(config.postfix_config), "-j"],
        capture_output=True, text=True, timeout=max(config.health.timeout, 30.0), check=False)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise OSError(f"postqueue -j exited {result.returncode}: {detail}")
    return result.stdout


def list_queue(config: Config, now: float | None = None) -> dict[str, QueueState]:
    """Postfix's queues now: their sizes and oldest arrivals."""
    return queue_states(_postqueue(config), time.time() if now is None else now)


def list_queue_entries(config: Config) -> list[QueueEntry]:
    """The messages in Postfix's queues now (:func:`queue_entries`)."""
    return queue_entries(_postqueue(config))


def queue_problems(queues: dict[str, QueueState], health: configmod.Health) -> list[Problem]:
    """The backlog and its age against ``[health]``'s thresholds, and held mail."""
    problems = []
    waiting = sum(queues[q].messages for q in WAITING)
    oldest = max(queues[q].oldest for q in WAITING)
    for value, warning, critical, text in (
            (waiting, health.queue_warning, health.queue_critical,
             f"{waiting} messages waiting in Postfix's queue"),
            (oldest, health.queue_age_warning, health.queue_age_critical,
             f"the oldest message has waited {oldest:.0f} s")):
        if critical and value >= critical:
            problems.append(Problem(CRITICAL, "queue", f"{text} (critical from {critical})"))
        elif warning and value >= warning:
            problems.append(Problem(WARNING, "queue", f"{text} (warning from {warning})"))
    held = queues["hold"].messages
    if health.hold_warning and held >= health.hold_warning:
        problems.append(Problem(WARNING, "queue", f"{held} messages on hold "
                                "(postsuper -H releases them)"))
    return problems


def certificates(config: Config) -> dict[str, Path]:
    """The certificates whose expiry matters, by the name the metric labels them: the
    transport's re-injection client certificate only where the transport runs (not on a
    POP3 backend)."""
    found = {"listeners": config.cert_file}
    if "transport" in config.health.components:
        found["reinject"] = config.reinject_cert_file
    if config.tls.ca_file is not None:
        found["ca"] = config.tls.ca_file
    return found


def not_after(path: Path, timeout: float = 5.0) -> float:
    """A PEM certificate's notAfter as Unix time (``openssl x509 -enddate``)."""
    result = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(path)],
                            capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0 or not result.stdout.startswith("notAfter="):
        detail = (result.stderr.strip().splitlines() or ["not a PEM certificate"])[0]
        raise OSError(f"cannot read {path}: {detail}")
    return float(ssl.cert_time_to_seconds(result.stdout.strip().split("=", 1)[1]))


def certificate_problems(name: str, path: Path, expiry: float, now: float,
                         health: configmod.Health) -> list[Problem]:
    days = (expiry - now) / 86400
    if days <= 0:
        return [Problem(CRITICAL, "tls", f"the {name} certificate {path} has expired")]
    for severity, limit in ((CRITICAL, health.certificate_critical_days),
                            (WARNING, health.certificate_warning_days)):
        if limit and days < limit:
            return [Problem(severity, "tls", f"the {name} certificate {path} expires in "
                                             f"{days:.1f} days (under {limit})")]
    return []


# --- all of them -----------------------------------------------------------------------

def check(config: Config, role: str = configmod.ADMIN_ROLE,
          now: float | None = None) -> Report:
    """Every probe of ``[health] components``, the queue and the certificates, at once."""
    now = time.time() if now is None else now
    wanted = [c for c in config.health.components if c in (*COMPONENTS, *BACKEND_COMPONENTS)]
    probes: dict[str, Callable[[], list[Problem]]] = {}
    if "postgresql" in wanted:
        probes["postgresql"] = lambda: postgresql(config, role)
    if "postfix" in wanted:
        probes["postfix"] = lambda: postfix(config)
    if "dovecot" in wanted:
        probes["dovecot"] = lambda: dovecot(config)
    for name, component in DAEMON_COMPONENT.items():
        if component in wanted and name in services.DAEMONS:
            probes[component] = lambda name=name: daemon(config, name)  # type: ignore[misc]
    if "console" in wanted:
        probes["console"] = lambda: console(config)
    if config.maildrop.backend:
        probes["maildrop"] = lambda: maildrop(config)
    elif "maildrop" in wanted:
        probes["maildrop"] = lambda: maildrop_service(config)
    report = Report()
    with ThreadPoolExecutor(max_workers=len(probes) + 2,
                            thread_name_prefix="health") as pool:
        running = {c: pool.submit(p) for c, p in probes.items()}
        queue = pool.submit(list_queue, config, now) if "postfix" in wanted else None
        expiries = {name: (path, pool.submit(not_after, path, config.health.timeout))
                    for name, path in certificates(config).items()}
        for component in probes:
            problems = running[component].result()
            report.up[component] = not problems
            report.problems += problems
        if queue is not None:
            try:
                report.queues = queue.result()
            except (OSError, subprocess.SubprocessError, ValueError) as exc:
                report.problems.append(Problem(CRITICAL, "queue",
                                               f"cannot list Postfix's queue: {_why(exc)}"))
            else:
                report.problems += queue_problems(report.queues, config.health)
        for name, (path, expiry) in expiries.items():
            try:
                report.certificates[name] = expiry.result()
            except (OSError, subprocess.SubprocessError) as exc:
                report.problems.append(Problem(CRITICAL, "tls", _why(exc)))
            else:
                report.problems += certificate_problems(name, path, report.certificates[name],
                                                        now, config.health)
    return report


class HealthCollector(Collector):
    """A prometheus_client custom collector: each scrape runs :func:`check` and exports
    ``singlewindow_component_up{component}``, ``singlewindow_postfix_queue_messages{queue}``,
    ``singlewindow_postfix_queue_oldest_seconds{queue}`` and
    ``singlewindow_tls_certificate_expiry_timestamp_seconds{certificate}``."""

    def __init__(self, config: Config, role: str = configmod.ADMIN_ROLE) -> None:
        self.config = config
        self.role = role

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily("singlewindow_component_up",
                              "1 when the component answers its probe (swctl health), "
                              "else 0", labels=["component"]),
            GaugeMetricFamily("singlewindow_postfix_queue_messages",
                              "Messages in each of Postfix's queues (postqueue -j)",
                              labels=["queue"]),
            GaugeMetricFamily("singlewindow_postfix_queue_oldest_seconds",
                              "Seconds since the oldest message in each queue arrived "
                              "(0 when empty)", labels=["queue"]),
            GaugeMetricFamily("singlewindow_tls_certificate_expiry_timestamp_seconds",
                              "A certificate's notAfter as Unix time",
                              labels=["certificate"]))

    def describe(self) -> Iterator[Metric]:
        """The families without samples: registering the collector runs no probe."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        report = check(self.config, self.role)
        up, messages, oldest, expiry = self._families()
        for component, answers in report.up.items():
            up.add_metric([component], 1.0 if answers else 0.0)
        if report.queues is not None:
            for queue, state in report.queues.items():
                messages.add_metric([queue], state.messages)
                oldest.add_metric([queue], state.oldest)
        for name, when in report.certificates.items():
            expiry.add_metric([name], when)
        yield from (up, messages, oldest, expiry)

