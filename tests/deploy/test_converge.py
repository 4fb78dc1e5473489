"""A real converge: ``ansible/site.yml`` applied to a fresh Debian 12 root (issue 6).

The root is made by ``debootstrap --variant=minbase bookworm`` (cached as a tarball in
/var/cache/singlewindow, extracted per run into a short /tmp/swc-* folder because unix
sockets live under it), with a ``policy-rc.d`` that keeps package scripts from starting
services. The playbook reaches it with the ``community.general.chroot`` connection and the
single-node inventory; the roles run with their no-systemd switches
(``singlewindow_*__systemd: false``) and ``singlewindow_firewall__apply: false`` (a chroot
shares the host's kernel and network namespace), and the listeners on 127.0.0.1 with free
ports. A second run must report ``changed=0``. There is no systemd in the root, so the
services are then started the way their units would start them (the ``hub`` fixture) and
the smoke test runs against them from the host. The node's exporter (sw-metrics) then
serves what the smoke test did, and a real Prometheus on the host, configured the way
an operator hooks an existing one up, loads the alert rules and scrapes the node through
the scrape target the roles installed (role singlewindow_monitoring). The web console
(sw-console) serves HTTPS on the node's management address (a loopback address of its
own here, 127.0.5.1), nothing on the public listeners' address, and lets in an operator
that ``swctl operator add`` made on the node.

Nothing here skips: debootstrap, chroot, mount or Ansible missing is a failure.
/proc, /dev/pts and /dev/shm are mounted into the root for the run and always unmounted,
and every process left inside the root is stopped by its pid, in teardown.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import smtplib
import socket
import ssl
import stat
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import factory
from tests.support.debian_root import Root, changed_tasks, debian_root, recaps
from tests.support.local import free_port
from tests.support.pop3 import POP3From
from tests.support.prometheus import prometheus
from tests.support.sinks import Sink, delivery_status, dsn_about

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent
#: Where the roles put the alert rules and the scrape target for Prometheus, in the root.
PROMETHEUS_RULES = "/etc/prometheus/rules.d"
PROMETHEUS_FILE_SD = "/etc/prometheus/file_sd"
#: The single-node inventory's one host.
NODE = "sw1.example.internal"
#: The node's management address in the test (the public listeners are on 127.0.0.1):
#: where the exporter stays on 127.0.0.1 as before, the console gets an address of its own.
MANAGEMENT = "127.0.5.1"


@pytest.fixture(scope="module")
def root() -> Iterator[Root]:
    """A fresh Debian 12 root from the cached debootstrap, with /proc and /dev/pts."""
    with debian_root() as the_root:
        yield the_root


@dataclass(frozen=True)
class Ports:
    mta: int = field(default_factory=free_port)
    msa: int = field(default_factory=free_port)
    pop3: int = field(default_factory=free_port)
    pop3s: int = field(default_factory=free_port)
    reinject: int = field(default_factory=free_port)
    metrics: int = field(default_factory=free_port)
    console: int = field(default_factory=free_port)


@dataclass
class Converge:
    root: Root
    ports: Ports
    runs: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def playbook(root: Root, extra_vars: Path) -> str:
    # The chroot connection passes this environment into the root: no host paths for pip.
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
    env = {**env, "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "inventories/single-node", "site.yml",
         "-e", f"@{extra_vars}"],
        cwd=ANSIBLE, env=env, capture_output=True, text=True, check=False, timeout=2400)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"ansible-playbook failed:\n{output[-8000:]}"
    return output


@pytest.fixture(scope="module")
def converged(root: Root, tmp_path_factory: pytest.TempPathFactory) -> Converge:
    """site.yml applied twice to the root, with the single-node inventory."""
    work = tmp_path_factory.mktemp("converge")
    subprocess.run([str(BIN / "pip"), "wheel", "--no-deps", "-q",
                    "-w", str(work / "dist"), str(REPO)], check=True, capture_output=True)
    [wheel] = (work / "dist").glob("singlewindow-*.whl")
    ports = Ports()
    extra = {
        # The one host of the single-node inventory is the root, through chroot.
        "ansible_connection": "community.general.chroot",
        "ansible_host": str(root.path),
        "ansible_python_interpreter": "/usr/bin/python3",
        "singlewindow_app__package": str(wheel),
        "singlewindow_app__systemd": False,
        "singlewindow_postgresql__systemd": False,
        "singlewindow_postfix__systemd": False,
        "singlewindow_dovecot__systemd": False,
        "singlewindow_firewall__apply": False,
        # The listeners on loopback, reached in clear: no tunnels here (the inventory's
        # IPsec off, the MTA port a plain rule); tests/deploy/test_ipsec.py proves the
        # tunnel path.
        "singlewindow_ipsec__enabled": False,
        "singlewindow_app__bind": "127.0.0.1",
        "singlewindow_app__mta_port": ports.mta,
        "singlewindow_app__msa_port": ports.msa,
        "singlewindow_app__pop3_port": ports.pop3,
        "singlewindow_app__pop3s_port": ports.pop3s,
        "singlewindow_app__reinject_port": ports.reinject,
        "singlewindow_firewall__rules": [
            {"name": "mta", "port": ports.mta, "networks": ["127.0.4.0/24"]}],
        "singlewindow_app__metrics_address": "127.0.0.1",
        "singlewindow_app__metrics_port": ports.metrics,
        "singlewindow_app__console_address": MANAGEMENT,
        "singlewindow_app__console_port": ports.console,
        # An existing Prometheus "on the node": its directories inside the root (the
        # test's Prometheus runs on the host and reads them there). No promtool and no
        # prometheus service in the root.
        "singlewindow_monitoring__prometheus_rules_dir": PROMETHEUS_RULES,
        "singlewindow_monitoring__prometheus_file_sd_dir": PROMETHEUS_FILE_SD,
        "singlewindow_monitoring__promtool": "",
        "singlewindow_monitoring__prometheus_service": "",
    }
    extra_vars = work / "extra-vars.json"
    extra_vars.write_text(json.dumps(extra))
    result = Converge(root, ports)
    for _ in range(2):
        started = time.monotonic()
        result.runs.append(playbook(root, extra_vars))
        (work / f"run{len(result.runs)}.log").write_text(result.runs[-1])
        result.seconds.append(time.monotonic() - started)
    print(f"converge {result.seconds[0]:.0f} s, second run {result.seconds[1]:.0f} s")
    return result


def test_fresh_root_is_usable_by_unprivileged_users(root: Root) -> None:
    """The extracted root's ``/`` is as debootstrap makes it (root's, 0755), so package
    scripts that drop privileges (``pg_createcluster`` as postgres) work in it."""
    st = root.path.stat()
    assert (oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid) == (oct(0o755), 0, 0)
    root.run("/bin/true", user="nobody", group="nogroup")
    assert root.run("/bin/ls", "/etc/debian_version", user="nobody",
                    group="nogroup").stdout.strip() == "/etc/debian_version"


def test_first_run_changes_the_fresh_root(converged: Converge) -> None:
    first = recaps(converged.runs[0])[NODE]
    assert first["failed"] == 0 and first["unreachable"] == 0
    assert first["changed"] > 0
    root = converged.root
    root.run("/usr/local/bin/swctl", "--help")
    root.run("postfix", "check")
    root.run("doveconf", "-n")
    for unit in DAEMONS:
        assert (root.path / f"etc/systemd/system/{unit}.service").is_file()
    rules = root.path / PROMETHEUS_RULES.lstrip("/") / "singlewindow.yml"
    assert rules.read_text() == (REPO / "conf/prometheus/alerts.yml").read_text()
    target = root.path / PROMETHEUS_FILE_SD.lstrip("/") / "singlewindow-sw1.example.internal.json"
    assert json.loads(target.read_text()) == [{
        "targets": [f"127.0.0.1:{converged.ports.metrics}"],
        "labels": {"job": "singlewindow", "node": "sw1.example.internal"}}]


def test_second_run_changes_nothing(converged: Converge) -> None:
    second = recaps(converged.runs[1])[NODE]
    assert second["failed"] == 0 and second["unreachable"] == 0
    assert second["changed"] == 0, changed_tasks(converged.runs[1])


# --- The services, started the way their units would start, and the smoke test ---------

DAEMONS = ("sw-policyd", "sw-milter", "sw-transport", "sw-metrics", "sw-console")
CONFIG = "/etc/singlewindow/singlewindow.toml"
DOMAIN = "sw.example.org"  # inventories/single-node/group_vars/all.yml


@dataclass
class Hub:
    root: Root
    ports: Ports
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def swctl(self, *args: str, input_: str | None = None) -> str:
        return self.root.run("env", f"SW_CONFIG={CONFIG}", "/usr/local/bin/swctl", *args,
                             input_=input_).stdout


@pytest.fixture(scope="module")
def hub(converged: Converge) -> Iterator[Hub]:
    """PostgreSQL (pg_ctlcluster, already started by the role), the daemons and the web
    console as their units run them, Postfix (`postfix start`) and Dovecot (`dovecot -F`,
    the Debian unit's ExecStart), all inside the root."""
    root = converged.root
    hub = Hub(root, converged.ports)
    try:
        root.run("pg_ctlcluster", "15", "main", "status")
        for name in DAEMONS:
            hub.procs.append(root.start_notify_daemon(name))
        root.run("postfix", "start")
        hub.procs.append(root.spawn("/usr/sbin/dovecot", "-F"))
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", hub.ports.pop3), 1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "Dovecot does not listen"
                time.sleep(0.2)
        yield hub
    finally:
        root.run("postfix", "stop", check=False)
        for proc in hub.procs:
            proc.terminate()
        for proc in hub.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_smoke_submission_dsn_agency_xml_and_pop3_response(hub: Hub) -> None:
    """An MTA submission from a registered peer reaches the agency sink as XML and gets
    its DSN; the agency's response is fetched by POP3 from the mail client's maildrop."""
    co_sink, ag_sink = Sink(free_port()).start(), Sink(free_port()).start()
    try:
        tag = secrets.token_hex(3)
        co, ag, mc = f"co-{tag}", f"ag-{tag}", f"mc-{tag}"
        co_peer, ag_peer = "127.0.4.10", "127.0.4.11"
        hub.swctl("party", "add", co, "--kind", "company", "--peer", f"{co_peer}/32",
                  "--relay", f"127.0.0.1:{co_sink.port}")
        hub.swctl("address", "add", f"{co}@{DOMAIN}", "--party", co,
                  "--physical", f"edi@{co}.example")
        hub.swctl("party", "add", ag, "--kind", "agency", "--peer", f"{ag_peer}/32",
                  "--relay", f"127.0.0.1:{ag_sink.port}")
        hub.swctl("address", "add", f"{ag}@{DOMAIN}", "--party", ag,
                  "--physical", f"edi@{ag}.example")
        password = secrets.token_urlsafe(12)
        hub.swctl("party", "add", mc, "--kind", "company")
        hub.swctl("account", "add", mc, "--party", mc, "--password-stdin",
                  input_=password + "\n")
        hub.swctl("address", "add", f"{mc}@{DOMAIN}", "--party", mc,
                  "--physical", f"clerk@{mc}.example", "--maildrop", mc)

        subj = f"converge {tag}"
        data = mail(f"edi@{co}.example", f"{ag}@{DOMAIN}", subj, factory.gendec(),
                    "application/xml; charset=utf-8")
        with smtplib.SMTP("127.0.0.1", hub.ports.mta, timeout=30,
                          source_address=(co_peer, 0)) as smtp:
            assert smtp.sendmail(f"edi@{co}.example", [f"{ag}@{DOMAIN}"], data) == {}

        [copy] = ag_sink.wait_for(lambda r: f"Subject: {subj}".encode() in r.data, timeout=90)
        assert copy.rcpt_tos == [f"edi@{ag}.example"]
        assert copy.mail_from == f"{co}@{DOMAIN}"
        assert copy.message.get_content_type() == "application/xml"
        [dsn] = co_sink.wait_for(lambda r: dsn_about(r, subj), timeout=90)
        [status] = delivery_status(dsn)
        assert status["action"] == "delivered" and status["status"].startswith("2.")
        assert dsn.rcpt_tos == [f"edi@{co}.example"]

        reply = f"response {tag}"
        data = mail(f"edi@{ag}.example", f"{mc}@{DOMAIN}", reply,
                    factory.declaration_response(), "application/xml; charset=utf-8")
        with smtplib.SMTP("127.0.0.1", hub.ports.mta, timeout=30,
                          source_address=(ag_peer, 0)) as smtp:
            assert smtp.sendmail(f"edi@{ag}.example", [f"{mc}@{DOMAIN}"], data) == {}
        context = ssl.create_default_context(
            cafile=str(hub.root.path / "etc/singlewindow/tls/cert.pem"))
        context.check_hostname = False  # by IP; the chain is still verified
        deadline = time.monotonic() + 90
        while True:
            session = POP3From("127.0.0.1", hub.ports.pop3, "127.0.0.2", timeout=30)
            try:
                session.stls(context)
                session.user(mc)
                session.pass_(password)
                count, _ = session.stat()
                fetched = [b"\r\n".join(session.retr(i + 1)[1]) for i in range(count)]
            finally:
                session.quit()
            if any(f"Subject: {reply}".encode() in m for m in fetched):
                break
            assert time.monotonic() < deadline, "the response never reached the maildrop"
            time.sleep(1)
    finally:
        co_sink.stop()
        ag_sink.stop()


def test_metrics_of_the_node_reach_an_existing_prometheus(
        hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The exporter, started as its unit starts it, serves the smoke test's submissions
    from the message log; a Prometheus configured as README's "Monitoring" says loads
    the rules the roles installed and scrapes the node through their scrape target."""
    with urllib.request.urlopen(f"http://127.0.0.1:{hub.ports.metrics}/metrics",
                                timeout=30) as response:
        exposed = response.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(exposed)
               for s in family.samples}
    # The smoke test: a company's MTA to an agency, the agency's MTA to a mail client.
    accepted = (("listener", "mta"), ("outcome", "accepted"))
    assert samples[("singlewindow_submissions_total", accepted)] >= 2
    assert samples[("singlewindow_copies_total", (("state", "injected"),))] >= 1

    base = hub.root.path
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [f"{base}{PROMETHEUS_RULES}/*.yml"],
        # The job's name does not matter: the target's own labels name it "singlewindow".
        "scrape_configs": [{"job_name": "hub", "file_sd_configs": [
            {"files": [f"{base}{PROMETHEUS_FILE_SD}/singlewindow-*.json"]}]}],
    }
    with prometheus(config, tmp_path_factory.mktemp("prometheus")) as server:
        [found] = server.wait_for('singlewindow_submissions_total{job="singlewindow",'
                                  'listener="mta",outcome="accepted"}')
        assert found["metric"]["node"] == "sw1.example.internal"
        assert found["metric"]["instance"] == f"127.0.0.1:{hub.ports.metrics}"
        assert float(found["value"][1]) >= 2
        deadline = time.monotonic() + 30
        while True:
            groups = server.api("rules")["groups"]
            health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
            if health and set(health.values()) == {"ok"}:
                break
            assert time.monotonic() < deadline, health
            time.sleep(0.5)
        assert {g["name"] for g in groups} == {
            "singlewindow-queue", "singlewindow-agencies", "singlewindow-submissions",
            "singlewindow-components", "singlewindow-tls"}
        assert server.query('up{job="singlewindow"} == 1')


def test_swctl_health_on_the_deployed_node(hub: Hub) -> None:
    """``swctl health`` with the node's own configuration (/etc/singlewindow), as a
    monitoring system's check runs it: every component answers, exit 0."""
    out = hub.swctl("health")
    assert out.startswith("SINGLEWINDOW OK - 7 of 7 components answer; queue "), out


def _console(port: int, cafile: Path, method: str, path: str, body: object = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, object], str]:
    """One request to the console on the management address; status, JSON body, cookie."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = False  # by its address; the chain is still verified
    client = http.client.HTTPSConnection(MANAGEMENT, port, timeout=30, context=context)
    try:
        client.request(method, path, None if body is None else json.dumps(body),
                       {"Content-Type": "application/json", **(headers or {})})
        response = client.getresponse()
        text = response.read()
        return response.status, json.loads(text or b"{}"), response.getheader("Set-Cookie", "")
    finally:
        client.close()


def test_the_console_serves_the_management_address_only(hub: Hub) -> None:
    """sw-console, started as its unit starts it (the singlewindow user), serves HTTPS on
    the management address with its copy of the node's certificate, whose key that user
    alone reads; nothing answers on the public listeners' address. An operator added on
    the node with swctl (as sw_admin) logs in and sees the smoke test's messages."""
    root, port = hub.root, hub.ports.console
    key = root.path / "etc/singlewindow/console/key.pem"
    owner = root.run("stat", "-c", "%U %a", "/etc/singlewindow/console/key.pem").stdout
    assert owner.split() == ["singlewindow", "600"]
    assert key.read_bytes() == (root.path / "etc/singlewindow/tls/key.pem").read_bytes()
    config = tomllib.loads((root.path / CONFIG.lstrip("/")).read_text())
    assert config["console"]["listen"] == f"{MANAGEMENT}:{port}"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), 5).close()

    password = secrets.token_urlsafe(16)
    assert "operator night added" in hub.swctl("operator", "add", "night", "--password-stdin",
                                               input_=password + "\n")
    cafile = root.path / "etc/singlewindow/console/cert.pem"
    status, body, cookie = _console(port, cafile, "POST", "/api/session",
                                    {"login": "night", "password": password})
    assert status == 200, body
    assert (body["kind"], body["login"]) == ("operator", "night")
    session = cookie.split(";", 1)[0]
    assert session.startswith("sw_session=") and "Secure" in cookie and "HttpOnly" in cookie
    status, found, _ = _console(port, cafile, "GET", "/api/messages",
                                headers={"Cookie": session})
    assert status == 200, found
    messages = found["messages"]
    assert isinstance(messages, list)
    [submitted] = [m for m in messages if str(m["subject"]).startswith("converge ")]
    # Its timeline, as swctl trace has it: the copy's delivery from the node's Postfix log,
    # which the console reads as the singlewindow user.
    status, one, _ = _console(port, cafile, "GET", f"/api/messages/{submitted['id']}",
                              headers={"Cookie": session})
    assert status == 200, one
    steps = one["timeline"]
    assert isinstance(steps, list)
    assert any(step["kind"] == "copy" and any("status=sent" in line for line in step["details"])
               for step in steps), steps
    status, _, _ = _console(port, cafile, "POST", "/api/session",
                            {"login": "night", "password": password + "x"})
    assert status == 401


def mail(sender: str, to: str, subject: str, body: bytes, content_type: str) -> bytes:
    lines = [f"From: <{sender}>", f"To: <{to}>", f"Subject: {subject}",
             f"Message-ID: <{secrets.token_hex(8)}@converge.example>",
             "Date: Sat, 28 Nov 2026 12:00:00 +0000", "MIME-Version: 1.0",
             f"Content-Type: {content_type}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
