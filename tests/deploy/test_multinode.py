"""The multi-node hub, converged and proven (issue 15): two edges, a POP3 backend and a
database node, each a Debian 12 root in its own network namespace, on one lab bridge.

The four roots come from the same cached debootstrap tarball as the single-node converge
(tests/support/debian_root.py); each has a network namespace with the inventory's
address, joined by a veth pair to a bridge on the host (tests/support/lab.py). The host
side of the bridge carries the management address 10.0.0.1 and the MTA parties'
addresses the inventory's firewall lets in on port 25 (a company in 10.1.0.0/24, an
agency in 10.9.0.0/28): the test process plays the operator, the company and the agency.

``ansible/site.yml`` is applied with ``inventories/multi-node`` as it is but for IPsec,
off here (the parties reach port 25 in clear; test_ipsec.py proves the tunnels), through
the ``community.general.chroot`` connection: the inventory's ``ansible_host`` (the node's
address) names a symlink to the root in the controller's working directory, and
``ansible_chroot_exe`` a per-node wrapper that enters the root inside the node's
namespace (``ip netns exec``, which fails if the namespace is missing: never the host's
network). So every task, and every server a task starts (PostgreSQL by pg_ctlcluster),
runs with the node's real address and ports, and the firewall role loads its nftables
rules into the node's namespace (``singlewindow_firewall__apply: true``). The roots have
no route out: apt goes through a small forward proxy on the bridge that caches packages
(tests/support/apt_proxy.py), pip installs from a wheelhouse built once on the host.
Each node gets a certificate for its inventory name from a test CA; the database roles'
passwords are generated, given in a 0600 extra-vars file. A second run reports
``changed=0`` on every host.

Then the services start the way their units would (no systemd in a root), each inside
its node's namespace, and the smoke test crosses the nodes: submission at edge 1 to an
agency, the agency's response at edge 2 to a mail client's maildrop on the backend,
fetched by POP3S at edge 1 through the proxy; the backend refuses anyone but the edges;
every database connection is TLS with the server verified; edge 1 down, edge 2 carries
the traffic, and what edge 1 had queued is delivered when it comes back.

Nothing here skips. Teardown stops every process in the roots by pid, unmounts, and
removes the namespaces, veths and bridge, even after a failure.
"""

from __future__ import annotations

import json
import os
import poplib
import secrets
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import factory
from tests.support.converge import ANSIBLE, LabRoots, lab_roots, own_wheel, root_vars
from tests.support.converge import playbook as run_playbook
from tests.support.converge import xml_mail as mail
from tests.support.debian_root import (
    Root,
    changed_tasks,
    recaps,
)
from tests.support.lab import Node, chroot_wrapper
from tests.support.local import free_port
from tests.support.logs import wait_for_lines
from tests.support.pki import issue, make_ca
from tests.support.pop3 import POP3From
from tests.support.sinks import Sink, delivery_status, dsn_about

#: inventories/multi-node/hosts.yml, by group.
EDGES = {"edge1.example.internal": "10.0.2.11", "edge2.example.internal": "10.0.2.12"}
BACKEND = {"pop1.example.internal": "10.0.3.10"}
DATABASE = {"db1.example.internal": "10.0.4.10"}
NODES = {**EDGES, **BACKEND, **DATABASE}
EDGE1, EDGE2 = EDGES
[POP1] = BACKEND
[DB1] = DATABASE
#: The host's side of the bridge: the operator, a company's MTA, an agency's MTA (the
#: edges' firewall lets 10.1.0.0/24 and 10.9.0.0/28 in on port 25).
OPERATOR, COMPANY, AGENCY = "10.0.0.1", "10.1.0.10", "10.9.0.10"
DOMAIN = "sw.example.org"  # inventories/multi-node/group_vars/all.yml
CONFIG = "/etc/singlewindow/singlewindow.toml"
VAULT_ROLES = ("owner", "admin", "daemon", "postfix", "dovecot", "console")
#: The contract's maildrop service on the POP3 backend (helper-common.md).
MAILDROP_UNIT = "sw-maildrop"
#: Does the inventory have the roles write every node's name into /etc/hosts?
ROLES_WRITE_HOSTS = "singlewindow_app__hosts_entries" in (
    ANSIBLE / "inventories/multi-node/group_vars/all.yml").read_text()


def elapsed(since: float) -> str:
    return f"{time.monotonic() - since:.0f} s"


@dataclass
class Lab(LabRoots):
    def swctl(self, *args: str, input_: str | None = None, node: str = EDGE1) -> str:
        return self.roots[node].run("env", f"SW_CONFIG={CONFIG}", "/usr/local/bin/swctl",
                                    *args, input_=input_).stdout


@pytest.fixture(scope="module")
def lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    """The four roots, their namespaces and the bridge, the apt proxy, the wheelhouse
    copied into each hub node, /etc/hosts naming every node (unless the roles write
    the names)."""
    with lab_roots("test_multinode", NODES, (OPERATOR, COMPANY, AGENCY), (*EDGES, *BACKEND),
                   not ROLES_WRITE_HOSTS, pytestconfig) as base:
        yield Lab(base.net, base.roots, base.work, base.proxy, base.times)


@dataclass
class Converge:
    runs: list[str] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)


def playbook(lab: Lab, extra_vars: Path) -> str:
    return run_playbook("multi-node", lab.work / "controller", lab.proxy_url,
                        "-e", f"@{extra_vars}")


@pytest.fixture(scope="module")
def converged(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Converge:
    """site.yml applied twice with inventories/multi-node, each node in its namespace."""
    work = lab.work
    controller, wrappers, pki = work / "controller", work / "bin", work / "pki"
    for folder in (controller, wrappers, pki):
        folder.mkdir()
    for name, node in lab.net.nodes.items():
        # The chroot connection's "host" is the inventory's address: here, a directory.
        (controller / node.address).symlink_to(lab.roots[name].path)
        chroot_wrapper(wrappers / f"chroot-{name}", node, lab.roots[name].path)
    make_ca(pki, "ca")
    for name in NODES:
        issue(pki, "ca", name, name)
    wheel = own_wheel(work / "dist")
    result = Converge(passwords={role: secrets.token_urlsafe(18) for role in VAULT_ROLES})
    extra = {
        **root_vars(wheel, f"{wrappers}/chroot-{{{{ inventory_hostname }}}}"),
        # The company and the agency reach the edges' port 25 in clear from their
        # networks (the inventory's IPsec off, its MTA rule then opens them);
        # tests/deploy/test_ipsec.py proves the tunnel path.
        "singlewindow_ipsec__enabled": False,
        "singlewindow_tls__ca_src": str(pki / "ca.pem"),
        "singlewindow_tls__cert_src": f"{pki}/{{{{ inventory_hostname }}}}.crt",
        "singlewindow_tls__key_src": f"{pki}/{{{{ inventory_hostname }}}}.key",
        **{f"vault_singlewindow_db_{role}_password": password
           for role, password in result.passwords.items()},
    }
    logs = tmp_path_factory.mktemp("multinode")  # kept by pytest for a look afterwards
    extra_vars = work / "extra-vars.json"
    extra_vars.touch(mode=0o600)
    extra_vars.write_text(json.dumps(extra))
    for run in ("converge", "second converge"):
        started = time.monotonic()
        result.runs.append(playbook(lab, extra_vars))
        (logs / f"run{len(result.runs)}.log").write_text(result.runs[-1])
        lab.times[run] = time.monotonic() - started
    return result


def test_the_chroot_wrapper_never_runs_outside_its_namespace(tmp_path: Path) -> None:
    """Without its network namespace the wrapper runs nothing (never in the host's
    network), nor for another node's address."""
    witness = tmp_path / "ran"
    gone = Node(EDGE1, EDGES[EDGE1], f"sw{os.getpid()}-gone")
    wrapper = chroot_wrapper(tmp_path / "chroot", gone, Path("/"))
    for address in (EDGES[EDGE1], EDGES[EDGE2]):
        result = subprocess.run([str(wrapper), address, "/bin/touch", str(witness)],
                                capture_output=True, text=True, check=False)
        assert result.returncode != 0 and not witness.exists(), result


def test_first_run_converges_every_node(converged: Converge, lab: Lab) -> None:
    first = recaps(converged.runs[0])
    assert set(first) == set(NODES)
    for host, counts in first.items():
        assert counts["failed"] == 0 and counts["unreachable"] == 0, (host, counts)
        assert counts["changed"] > 0, host
    for name in (*EDGES, *BACKEND):
        lab.roots[name].run("doveconf", "-n")
    for name in EDGES:
        lab.roots[name].run("postfix", "check")
    # Each hub node reaches the others by the names their certificates carry.
    for name in (*EDGES, *BACKEND):
        for other, address in NODES.items():
            shown = lab.roots[name].run("getent", "hosts", other).stdout.split()
            assert shown[:2] == [address, other], (name, shown)
    # Every password reached the nodes only through the extra-vars file, never a log.
    for run in converged.runs:
        assert not any(p in run for p in converged.passwords.values())


def test_second_run_changes_nothing(converged: Converge) -> None:
    second = recaps(converged.runs[1])
    assert set(second) == set(NODES)
    for host, counts in second.items():
        assert counts["failed"] == 0 and counts["unreachable"] == 0, (host, counts)
    assert all(c["changed"] == 0 for c in second.values()), changed_tasks(converged.runs[1])


def test_each_node_loaded_its_firewall_into_its_own_namespace(converged: Converge,
                                                              lab: Lab) -> None:
    """The rules are in each node's namespace, with its group's ports; the host's
    namespace has no singlewindow table."""
    host = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                          check=True).stdout
    assert "singlewindow" not in host
    ports = {EDGE1: "25", EDGE2: "25", POP1: "995", DB1: "5432"}
    for name, root in lab.roots.items():
        rules = root.run("nft", "list", "table", "inet", "singlewindow").stdout
        assert f"tcp dport {ports[name]} ip saddr @" in rules, name
        assert "policy drop" in rules


# --- The services, started the way their units would start ---------------------------

@dataclass
class Hub:
    lab: Lab
    procs: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    #: Why the backend's maildrop service did not start (its own test fails with it;
    #: the tests that need only the edges, the proxy and the database go on).
    maildrop_failed: str = ""

    def units(self, name: str) -> list[str]:
        """The Single Window daemons this node runs: on an edge every installed sw-*
        unit; on a POP3 backend that is no edge the maildrop service."""
        installed = sorted(p.stem for p in
                           (self.lab.roots[name].path / "etc/systemd/system").glob("sw-*.service"))
        if name in EDGES:
            return installed
        return [u for u in installed if u == MAILDROP_UNIT]

    def start(self, name: str) -> None:
        root, procs = self.lab.roots[name], self.procs.setdefault(name, [])
        # In the units' order: Dovecot before a unit that is After=dovecot.service
        # (dovecot-lda asks its auth service), the daemons Before=postfix.service.
        units = self.units(name)
        after = [u for u in units if "dovecot.service" in
                 root.unit_fields(u).get("After", "").split()]
        for unit in units:
            if unit not in after:
                procs.append(root.start_notify_daemon(unit))
        procs.append(root.spawn("/usr/sbin/dovecot", "-F"))
        wait_listening(root, 995)
        for unit in after:
            try:
                procs.append(root.start_notify_daemon(unit))
            except AssertionError as error:
                if unit != MAILDROP_UNIT or name in EDGES:
                    raise
                self.maildrop_failed = str(error)
        if name in EDGES:
            root.run("postfix", "start")

    def stop(self, name: str) -> None:
        if name in EDGES:
            self.lab.roots[name].run("postfix", "stop", check=False)
        procs = self.procs.pop(name, [])
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_listening(root: Root, port: int, timeout: float = 30) -> None:
    """Until something listens on ``port`` in the node's namespace."""
    assert root.netns
    deadline = time.monotonic() + timeout
    while f":{port} " not in subprocess.run(["ip", "netns", "exec", root.netns, "ss", "-Htln"],
                                           capture_output=True, text=True, check=True).stdout:
        assert time.monotonic() < deadline, f"nothing listens on {port} in {root.netns}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def hub(converged: Converge, lab: Lab) -> Iterator[Hub]:
    """PostgreSQL (started by the role) on db1; on each edge its daemons as their units
    run them, Postfix and Dovecot; on the backend Dovecot and the maildrop service."""
    started = time.monotonic()
    hub = Hub(lab)
    try:
        lab.roots[DB1].run("pg_ctlcluster", "15", "main", "status")
        for name in (POP1, *EDGES):
            hub.start(name)
        lab.times["services"] = time.monotonic() - started
        yield hub
    finally:
        for name in list(hub.procs):
            hub.stop(name)


@dataclass
class Parties:
    tag: str
    company: str
    agency: str
    client: str
    password: str
    co_sink: Sink
    ag_sink: Sink


@pytest.fixture(scope="module")
def parties(hub: Hub) -> Iterator[Parties]:
    """A company (an MTA at 10.1.0.10), an agency (an MTA at 10.9.0.10) and a mail
    client company with a maildrop, registered from edge 1 (one database for all)."""
    tag = secrets.token_hex(3)
    co_sink = Sink(free_port(), host=COMPANY).start()
    ag_sink = Sink(free_port(), host=AGENCY).start()
    try:
        got = Parties(tag, f"co-{tag}", f"ag-{tag}", f"mc-{tag}",
                      secrets.token_urlsafe(12), co_sink, ag_sink)
        lab = hub.lab
        lab.swctl("party", "add", got.company, "--kind", "company", "--peer",
                  f"{COMPANY}/32", "--relay", f"{COMPANY}:{co_sink.port}")
        lab.swctl("address", "add", f"{got.company}@{DOMAIN}", "--party", got.company,
                  "--physical", f"edi@{got.company}.example")
        lab.swctl("party", "add", got.agency, "--kind", "agency", "--peer", f"{AGENCY}/32",
                  "--relay", f"{AGENCY}:{ag_sink.port}")
        lab.swctl("address", "add", f"{got.agency}@{DOMAIN}", "--party", got.agency,
                  "--physical", f"edi@{got.agency}.example")
        lab.swctl("party", "add", got.client, "--kind", "company")
        lab.swctl("account", "add", got.client, "--party", got.client, "--password-stdin",
                  input_=got.password + "\n")
        lab.swctl("address", "add", f"{got.client}@{DOMAIN}", "--party", got.client,
                  "--physical", f"clerk@{got.client}.example", "--maildrop", got.client)
        yield got
    finally:
        co_sink.stop()
        ag_sink.stop()


def submit(edges: list[str], source: str, sender: str, to: str, data: bytes,
           wait: float = 60) -> tuple[str, list[str]]:
    """An MTA's delivery to the hub's MX pair: each edge in turn until one takes it
    (the edges' listeners may still be settling, so retry a refused pair up to ``wait``
    seconds). Returns the edge that took it and the ones that refused the connection."""
    deadline = time.monotonic() + wait
    while True:
        refused = []
        for edge in edges:
            try:
                smtp = smtplib.SMTP(NODES[edge], 25, timeout=30,
                                    source_address=(source, 0))
            except OSError:
                refused.append(edge)
                continue
            with smtp:
                assert smtp.sendmail(sender, [to], data) == {}
            return edge, refused
        assert time.monotonic() < deadline, f"every edge refused: {refused}"
        time.sleep(1)


def ca_context(lab: Lab) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(lab.work / "pki" / "ca.pem"))


def test_company_submits_at_edge1_and_the_agency_receives_xml(parties: Parties) -> None:
    """(a) The company's MTA submits to edge 1; the agency's sink gets the XML copy and
    the company its DSN."""
    subject = f"gendec {parties.tag}"
    data = mail(f"edi@{parties.company}.example", f"{parties.agency}@{DOMAIN}", subject,
                factory.gendec())
    edge, refused = submit([EDGE1], COMPANY, f"edi@{parties.company}.example",
                           f"{parties.agency}@{DOMAIN}", data)
    assert (edge, refused) == (EDGE1, [])
    [copy] = parties.ag_sink.wait_for(lambda r: f"Subject: {subject}".encode() in r.data,
                                      timeout=90)
    assert copy.rcpt_tos == [f"edi@{parties.agency}.example"]
    assert copy.mail_from == f"{parties.company}@{DOMAIN}"
    assert copy.message.get_content_type() == "application/xml"
    [dsn] = parties.co_sink.wait_for(lambda r: dsn_about(r, subject), timeout=90)
    [status] = delivery_status(dsn)
    assert status["action"] == "delivered" and status["status"].startswith("2.")


class POP3SAt(POP3From):
    """POP3S from a chosen source address, the server's certificate verified against
    ``context`` for ``name``."""

    def __init__(self, name: str, address: str, source: str,
                 context: ssl.SSLContext) -> None:
        self.name, self.context = name, context
        super().__init__(address, 995, source, timeout=30)

    def _create_socket(self, timeout: float) -> socket.socket:
        return self.context.wrap_socket(super()._create_socket(timeout),
                                        server_hostname=self.name)


def pop3s_session(lab: Lab, parties: Parties) -> list[bytes]:
    """The mail client's POP3S session at edge 1 (TLS verified against the test CA, the
    edge's name checked), from the company's address: every message, then QUIT."""
    session = POP3SAt(EDGE1, EDGES[EDGE1], COMPANY, ca_context(lab))
    try:
        session.user(parties.client)
        session.pass_(parties.password)
        count, _ = session.stat()
        return [b"\r\n".join(session.retr(i + 1)[1]) for i in range(count)]
    finally:
        session.quit()


def dovecot_log_file(lab: Lab, name: str) -> Path:
    return lab.roots[name].path / "var/lib/singlewindow/log/dovecot.log"


def dovecot_log(lab: Lab, name: str) -> str:
    return dovecot_log_file(lab, name).read_text()


def test_pop3s_login_at_edge1_is_proxied_to_the_backend_over_tls(
        lab: Lab, parties: Parties) -> None:
    """(b, the proxy) The mail client logs in by POP3S at edge 1; edge 1 proxies the login
    to the backend over TLS; the backend logs a login forwarded by a trusted edge."""
    try:
        pop3s_session(lab, parties)
    except poplib.error_proto as error:
        raise AssertionError(f"{error!r}; edge 1's Dovecot log:\n"
                             f"{dovecot_log(lab, EDGE1)[-3000:]}\nthe backend's:\n"
                             f"{dovecot_log(lab, POP1)[-3000:]}") from None
    # Each Dovecot's log process writes the line a moment after the client's answer.
    proxied = (f"proxy({parties.client},{BACKEND[POP1]}:995): Started proxying to "
               f"<{BACKEND[POP1]}> (<{POP1}>)")
    wait_for_lines(dovecot_log_file(lab, EDGE1), lambda line: proxied in line)
    logins = wait_for_lines(dovecot_log_file(lab, POP1),
                            lambda line: f"Login: user=<{parties.client}>" in line)
    assert len(logins) == 1, dovecot_log(lab, POP1)[-3000:]
    [login] = logins
    # The client's own address, which only a trusted proxy may forward; over TLS.
    assert f"rip={COMPANY}" in login and "TLS" in login


def test_agency_response_at_edge2_reaches_the_maildrop_on_the_backend(
        lab: Lab, hub: Hub, parties: Parties) -> None:
    """(b, the hop) The agency's response enters at edge 2; edge 2 hands it over the
    maildrop hop to the backend (sw-maildrop); the client fetches it by POP3S at edge 1."""
    assert hub.units(POP1) == [MAILDROP_UNIT], "the backend runs no sw-maildrop"
    assert not hub.maildrop_failed, hub.maildrop_failed
    subject = f"response {parties.tag}"
    data = mail(f"edi@{parties.agency}.example", f"{parties.client}@{DOMAIN}", subject,
                factory.declaration_response())
    edge, _ = submit([EDGE2], AGENCY, f"edi@{parties.agency}.example",
                     f"{parties.client}@{DOMAIN}", data)
    assert edge == EDGE2
    deadline = time.monotonic() + 90
    while not any(f"Subject: {subject}".encode() in m for m in pop3s_session(lab, parties)):
        assert time.monotonic() < deadline, (
            "the response never reached the maildrop; the backend's Dovecot log:\n"
            f"{dovecot_log(lab, POP1)[-3000:]}")
        time.sleep(1)
    maildrop = lab.roots[POP1].path / "var/lib/singlewindow/maildrops" / parties.client
    assert maildrop.is_dir()
    assert not (lab.roots[EDGE2].path / "var/lib/singlewindow/maildrops"
                / parties.client).exists()



def maildrop_holds(lab: Lab, login: str, subject: str) -> bool:
    """Whether the maildrop on the backend holds a message with this subject (read from
    the Maildir on pop1's disk, not through a POP3 session, which would take the lock)."""
    maildir = lab.roots[POP1].path / "var/lib/singlewindow/maildrops" / login / "Maildir"
    needle = f"Subject: {subject}".encode()
    return any(needle in path.read_bytes()
               for sub in ("new", "cur") if (maildir / sub).is_dir()
               for path in (maildir / sub).iterdir())


def test_a_delivery_waits_for_the_pop3_session_held_through_another_edge(
        lab: Lab, hub: Hub, parties: Parties) -> None:
    """(2, the lock across nodes) While the mail client's POP3S session at edge 1 (proxied
    to the backend) holds its maildrop, a response entering at edge 2 is not delivered;
    it lands soon after the session's QUIT, once."""
    assert not hub.maildrop_failed, hub.maildrop_failed
    subject = f"while locked {parties.tag}"
    session = POP3SAt(EDGE1, EDGES[EDGE1], COMPANY, ca_context(lab))
    try:
        session.user(parties.client)
        session.pass_(parties.password)
        session.stat()
        data = mail(f"edi@{parties.agency}.example", f"{parties.client}@{DOMAIN}", subject,
                    factory.declaration_response())
        submit([EDGE2], AGENCY, f"edi@{parties.agency}.example",
               f"{parties.client}@{DOMAIN}", data)
        # Edge 2's transport takes it within a second or two and hands it to the backend,
        # which waits on the lock ([maildrop] lock_wait, 60 s): nothing may land meanwhile.
        held_until = time.monotonic() + 8
        while time.monotonic() < held_until:
            assert not maildrop_holds(lab, parties.client, subject), \
                "delivered while a POP3 session held the maildrop"
            time.sleep(0.5)
    finally:
        session.quit()
    quit_at = time.monotonic()
    while not maildrop_holds(lab, parties.client, subject):
        assert time.monotonic() < quit_at + 30, (
            "not delivered within 30 s of QUIT; the backend's Dovecot log:\n"
            f"{dovecot_log(lab, POP1)[-3000:]}")
        time.sleep(0.2)
    landed = time.monotonic() - quit_at
    print(f"test_multinode: delivered {landed:.1f} s after QUIT")
    assert landed < 10, landed
    fetched = pop3s_session(lab, parties)
    assert sum(f"Subject: {subject}".encode() in m for m in fetched) == 1


# The login attempt from a namespace: connect, then TLS and USER/PASS if anything answers.
PROBE = """
import socket, ssl, sys
try:
    raw = socket.create_connection((sys.argv[1], 995), 5)
except OSError as error:
    print("nothing:", type(error).__name__); sys.exit()
context = ssl.create_default_context(); context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with context.wrap_socket(raw) as s:
    f = s.makefile("rwb")
    print(f.readline().decode().strip())
    for line in ("USER " + sys.argv[2], "PASS " + sys.stdin.read().strip()):
        f.write((line + "\\r\\n").encode()); f.flush(); print(f.readline().decode().strip())
"""


def test_backend_refuses_pop3_logins_from_anyone_but_the_edges(
        lab: Lab, parties: Parties) -> None:
    """(c) Straight to the backend's POP3S port, from the operator's host and from the
    database node: no login (nothing answers, or -ERR)."""
    for netns in (None, lab.net.nodes[DB1].netns):
        prefix = ["ip", "netns", "exec", netns] if netns else []
        result = subprocess.run([*prefix, sys.executable, "-c", PROBE, BACKEND[POP1],
                                 parties.client], input=parties.password,
                                capture_output=True, text=True, timeout=60, check=True)
        lines = result.stdout.splitlines()
        assert lines[0].startswith("nothing:") or lines[-1].startswith("-ERR"), (netns, lines)
        assert not any(line.startswith("+OK Logged in") for line in lines)


def test_database_serves_every_client_over_verified_tls(lab: Lab, parties: Parties) -> None:
    """(d) On db1 every client connection from the hub nodes is TLS; every node's rendered
    connection strings (daemons, swctl, Dovecot) say sslmode=verify-full."""
    rows = lab.roots[DB1].run(
        "psql", "-X", "-At", "-F", " ", "-d", "singlewindow", "-c",
        "SELECT a.usename, host(a.client_addr), s.ssl FROM pg_stat_activity a"
        " JOIN pg_stat_ssl s USING (pid) WHERE a.client_addr IS NOT NULL",
        user="postgres").stdout.split("\n")
    seen = [row.split() for row in rows if row]
    assert seen, "no client connected over the network"
    assert all(ssl_on == "t" for _, _, ssl_on in seen), seen
    clients = {address for _, address, _ in seen}
    assert set(EDGES.values()) <= clients, seen
    assert clients <= set(EDGES.values()) | set(BACKEND.values()), seen
    for name in (*EDGES, *BACKEND):
        path = lab.roots[name].path
        conninfo = tomllib.loads((path / CONFIG.lstrip("/")).read_text())["database"]
        assert "sslmode=verify-full" in conninfo["conninfo"], name
        for ext in (path / "etc/dovecot").glob("sql-*.conf.ext"):
            [connect] = [line for line in ext.read_text().splitlines()
                         if line.startswith("connect = ")]
            assert "sslmode=verify-full" in connect, (name, ext.name)


def test_swctl_health_on_every_hub_node(lab: Lab, hub: Hub) -> None:
    """``swctl health`` with each node's own configuration, as a monitoring system's check
    runs it: an edge's seven components (the web console among them) and its maildrop
    backend answer; the backend's POP3S and maildrop service answer, and nothing an edge
    runs is asked for there."""
    for edge in EDGES:
        out = lab.swctl("health", node=edge)
        assert out.startswith("SINGLEWINDOW OK - 8 of 8 components answer; "), (edge, out)
    out = lab.swctl("health", node=POP1)
    assert out.startswith("SINGLEWINDOW OK - 2 of 2 components answer"), out


def test_edge1_down_edge2_carries_and_edge1_loses_nothing(
        lab: Lab, hub: Hub, parties: Parties) -> None:
    """(e) A copy deferred in edge 1's queue (its agency's MTA down); edge 1's services
    stopped: the company's MTA, refused by edge 1, submits to edge 2 and the mail
    completes end to end; edge 1 back, its queue flushed, the deferred copy arrives."""
    down = Sink(free_port(), host=AGENCY)
    late = f"ag2-{parties.tag}"
    lab.swctl("party", "add", late, "--kind", "agency", "--peer", "10.9.0.12/32",
              "--relay", f"{AGENCY}:{down.port}")
    lab.swctl("address", "add", f"{late}@{DOMAIN}", "--party", late,
              "--physical", f"edi@{late}.example")
    queued = f"queued {parties.tag}"
    sender = f"edi@{parties.company}.example"
    submit([EDGE1], COMPANY, sender, f"{late}@{DOMAIN}",
           mail(sender, f"{late}@{DOMAIN}", queued, factory.gendec()))
    edge1 = lab.roots[EDGE1]
    deadline = time.monotonic() + 90
    while f"{late}.example" not in edge1.run("postqueue", "-p").stdout:
        assert time.monotonic() < deadline, "the copy for the agency never queued on edge 1"
        time.sleep(1)

    hub.stop(EDGE1)
    failover = f"failover {parties.tag}"
    edge, refused = submit([EDGE1, EDGE2], COMPANY, sender, f"{parties.agency}@{DOMAIN}",
                           mail(sender, f"{parties.agency}@{DOMAIN}", failover,
                                factory.gendec()))
    assert (edge, refused) == (EDGE2, [EDGE1])
    assert parties.ag_sink.wait_for(lambda r: f"Subject: {failover}".encode() in r.data,
                                    timeout=90)
    assert parties.co_sink.wait_for(lambda r: dsn_about(r, failover), timeout=90)

    down.start()
    try:
        hub.start(EDGE1)
        edge1.run("postqueue", "-f")
        [copy] = down.wait_for(lambda r: f"Subject: {queued}".encode() in r.data,
                               timeout=120)
        assert copy.rcpt_tos == [f"edi@{late}.example"]
        deadline = time.monotonic() + 60
        while f"{late}.example" in edge1.run("postqueue", "-p").stdout:
            assert time.monotonic() < deadline, "edge 1's queue still holds the copy"
            time.sleep(1)
    finally:
        down.stop()
