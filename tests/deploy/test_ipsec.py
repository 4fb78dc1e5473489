"""The MTA interface behind IPsec, proven in network namespaces (issue 16, SPEC D11).

Four Debian 12 roots, each in its own network namespace on one lab bridge
(tests/support/lab.py, debian_root.py): the hub, converged with ``ansible/site.yml`` and
``inventories/single-node`` (IPsec on, as the inventory has it) through the chroot
connection, as tests/deploy/test_multinode.py converges its nodes; and three MTA
parties, each a gateway running its own charon with a ``swanctl.conf`` as its network
team would write it:

- company A at gateway 10.1.0.1, its mail server 172.16.1.10 (network 172.16.1.0/24),
  authenticated by a pre-shared key;
- company B at gateway 10.2.0.1, its mail server 172.16.2.10, authenticated by a
  certificate from the test CA, which also signed the hub's (the hub's TLS certificate,
  for mail.sw.example.org, is its IKE certificate);
- the agency at gateway 10.9.0.1, its mail server 172.16.9.10, a responder only: the
  hub initiates its tunnel to deliver to it.

A party's mail server address sits on its gateway's loopback and is an SMTP sink there
(company A's and the agency's): no route to 172.16.0.0/12 exists but the tunnels' own.
The PSKs reach the hub only in an ansible-vault encrypted vars file the test makes (with
a vault password file), as the inventory's ``vault_singlewindow_ipsec_psks``: the role
writes them into the 0600 secrets file, nothing else holds them.

This kernel has XFRM but no ESP, so every charon here runs strongSwan's userland ESP
(``kernel-libipsec``, TUN device ``ipsec0``, ESP in UDP 4500): the hub through the role's
``singlewindow_ipsec__esp: libipsec``, the parties through their own settings
(tests/support/strongswan.py says what each needs, and why a trap policy never starts a
tunnel there). Deployed nodes use the kernel's ESP.

The hub is converged once, then charon and the services start as their units would;
the parties are registered with ``swctl party add ... --ipsec-*``, which names the
connection each adds; a second converge renders and loads them (the role's handler).
Then: (a) the tunnels come up, both sides holding the CHILD_SA with the party's network;
(b) a submission from company A's mail server over its tunnel is accepted, the agency's
sink receives the XML over the agency's tunnel, A's DSN comes back through A's tunnel to
A's mail server; (c) the same source address without the tunnel gets nothing, the hub's
firewall drops it; (d) company B can use neither A's identity (even with A's key) nor
A's address range; (e) a tunnel added, changed and its party removed: swctl names each
change, and after the render and load it prints, charon has what it says.

Nothing here skips. Teardown stops every process in the roots by pid, unmounts, and
removes the namespaces, veths and bridge, even after a failure. One lab per host at a
time: a second run finds the lab's range taken and fails (tests/support/lab.py).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shlex
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import factory, strongswan
from tests.support.converge import BIN, LabRoots, lab_roots, own_wheel, playbook, root_vars
from tests.support.converge import xml_mail as mail
from tests.support.debian_root import Root, recaps, require_tools
from tests.support.lab import chroot_wrapper, ip
from tests.support.netns import in_netns
from tests.support.pki import issue, make_ca
from tests.support.sinks import Sink, delivery_status, dsn_about

#: The single-node inventory's one host, its IKE identity (the name in its certificate,
#: inventories/single-node's singlewindow_ipsec__local_id), and its address in the lab
#: (IKE and the MTA listener).
HUB = "sw1.example.internal"
HUB_ID = "mail.sw.example.org"
HUB_ADDRESS = "10.0.2.11"
OPERATOR = "10.0.0.1"  # the host's side of the bridge: the apt proxy
DOMAIN = "sw.example.org"  # inventories/single-node/group_vars/all.yml
CONFIG = "/etc/singlewindow/singlewindow.toml"
MTA_PORT = 25


@dataclass(frozen=True)
class Party:
    """An MTA party: its gateway (a lab node) and the network behind it."""
    name: str  # swctl's party name; the hub's connection is sw-NAME
    kind: str
    node: str  # the lab node of its gateway
    gateway: str
    network: str
    mail_server: str  # its MTA's address, in ``network``
    ike_id: str
    auth: str  # psk | cert

    @property
    def connection(self) -> str:
        return f"sw-{self.name}"


COMPANY_A = Party("co-a", "company", "companya.lab", "10.1.0.1", "172.16.1.0/24",
                  "172.16.1.10", "gw.company-a.example", "psk")
COMPANY_B = Party("co-b", "company", "companyb.lab", "10.2.0.1", "172.16.2.0/24",
                  "172.16.2.10", "gw.company-b.example", "cert")
AGENCY = Party("ag", "agency", "agency.lab", "10.9.0.1", "172.16.9.0/24", "172.16.9.10",
               "gw.agency.example", "psk")
PARTIES = (COMPANY_A, COMPANY_B, AGENCY)
NODES = {HUB: HUB_ADDRESS, **{p.node: p.gateway for p in PARTIES}}
#: The parties' proposals: what the hub accepts by default ([ipsec] ike_proposals,
#: esp_proposals: AES-GCM-256, PRF SHA-384, ECP-384 or curve25519, PFS on rekeying).
PROPOSALS = "aes256gcm16-prfsha384-ecp384-x25519"
ESP_PROPOSALS = "aes256gcm16-ecp384-x25519"


def party_conf(party: Party, psk: str, initiate: bool, more: str = "") -> str:
    """A party's own swanctl.conf, as its network team writes it: one connection to the
    hub, its network on its side, the hub's MTA address on the other; the PSK (or its
    certificate and the CA that signed the hub's) in its own configuration."""
    if party.auth == "psk":
        local = f"auth = psk\n      id = {party.ike_id}"
        remote = f"auth = psk\n      id = {HUB_ID}"
        secret = (f'secrets {{\n  ike-hub {{\n    id-hub = {HUB_ID}\n    id-me = {party.ike_id}\n'
                  f'    secret = "{psk}"\n  }}\n}}\n')
    else:
        local = f"auth = pubkey\n      id = {party.ike_id}\n      certs = {party.name}.pem"
        remote = f"auth = pubkey\n      id = {HUB_ID}\n      cacerts = lab-ca.pem"
        secret = ""
    start = "start_action = start\n        dpd_action = restart" if initiate else ""
    return f"""\
connections {{
  single-window {{
    version = 2
    local_addrs = {party.gateway}
    remote_addrs = {HUB_ADDRESS}
    proposals = {PROPOSALS}
    dpd_delay = 10s
    local {{
      {local}
    }}
    remote {{
      {remote}
    }}
    children {{
      single-window {{
        local_ts = {party.network}
        remote_ts = {HUB_ADDRESS}/32
        esp_proposals = {ESP_PROPOSALS}
        {start}
      }}
{more}
    }}
  }}
}}
{secret}"""


#: Company B's attempts at company A's tunnel: a connection with A's identity (and, at
#: worst, A's key), and a child of its own tunnel proposing A's network.
B_AS_A = f"""\
connections {{
  as-company-a {{
    version = 2
    local_addrs = {COMPANY_B.gateway}
    remote_addrs = {HUB_ADDRESS}
    proposals = {PROPOSALS}
    local {{
      auth = psk
      id = {COMPANY_A.ike_id}
    }}
    remote {{
      auth = psk
      id = {HUB_ID}
    }}
    children {{
      as-company-a {{
        local_ts = {COMPANY_A.network}
        remote_ts = {HUB_ADDRESS}/32
        esp_proposals = {ESP_PROPOSALS}
      }}
    }}
  }}
}}
secrets {{
  ike-as-a {{
    id-hub = {HUB_ID}
    id-a = {COMPANY_A.ike_id}
    secret = "{{psk}}"
  }}
}}
"""
B_A_RANGE_CHILD = f"""\
      company-a-range {{
        local_ts = {COMPANY_A.network}
        remote_ts = {HUB_ADDRESS}/32
        esp_proposals = {ESP_PROPOSALS}
      }}"""


@dataclass
class Lab(LabRoots):
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def hub(self) -> Root:
        return self.roots[HUB]

    def root(self, party: Party) -> Root:
        return self.roots[party.node]

    def netns(self, party: Party) -> str:
        return self.net.nodes[party.node].netns

    def swctl(self, *args: str, input_: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.hub.run("env", f"SW_CONFIG={CONFIG}", "/usr/local/bin/swctl", *args,
                            input_=input_, check=check)


@pytest.fixture(scope="module")
def lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    """The four roots in their namespaces on one bridge, the apt proxy, the wheelhouse in
    the hub's root, each party's mail server address on its gateway's loopback."""
    require_tools("openssl")
    with lab_roots("test_ipsec", NODES, (OPERATOR,), (HUB,), False, pytestconfig) as base:
        the_lab = Lab(base.net, base.roots, base.work, base.proxy, base.times)
        for party in PARTIES:
            ip("-n", the_lab.netns(party), "addr", "add", f"{party.mail_server}/32", "dev", "lo")
        try:
            yield the_lab
        finally:
            for proc in the_lab.procs:
                proc.terminate()


@dataclass
class Converge:
    runs: list[str] = field(default_factory=list)
    psks: dict[str, str] = field(default_factory=dict)
    vault_file: Path = Path()
    registered: dict[str, str] = field(default_factory=dict)  # party: swctl's output


def hub_extra_vars(lab: Lab, pki: Path, wheel: Path, wrapper: Path) -> dict[str, object]:
    """What the operator's inventory would say for this hub, and the test root's
    switches (no systemd, the firewall loaded into the hub's own namespace)."""
    return {
        **root_vars(wheel, str(wrapper)),
        # The chroot connection's "host": a symlink to the root in the controller's
        # directory, entered by the wrapper inside the hub's namespace.
        "ansible_host": HUB_ADDRESS,
        "singlewindow_app__metrics_address": HUB_ADDRESS,
        "singlewindow_app__console_address": HUB_ADDRESS,
        "singlewindow_tls__ca_src": str(pki / "ca.pem"),
        "singlewindow_tls__cert_src": str(pki / f"{HUB_ID}.crt"),
        "singlewindow_tls__key_src": str(pki / f"{HUB_ID}.key"),
        # IPsec as the inventory has it (enabled, its identity, the PSKs from Vault), on
        # the lab's address; userland ESP (this kernel has none); charon started by the
        # test (no systemd in a root), logging to a file (no journal either).
        "singlewindow_ipsec__esp": "libipsec",
        "singlewindow_ipsec__systemd": False,
        "singlewindow_ipsec__log_file": strongswan.LOG,
        "singlewindow_ipsec__local_addrs": [HUB_ADDRESS],
        "singlewindow_ipsec__local_ts": [f"{HUB_ADDRESS}/32"],
        # Company B's CA (here the test CA, which also signed the hub's certificate).
        "singlewindow_ipsec__cacerts": {COMPANY_B.name: (pki / "ca.pem").read_text()},
    }


def vault_vars(work: Path, psks: dict[str, str]) -> tuple[Path, Path]:
    """The PSKs in an ansible-vault encrypted vars file, as the inventory expects them
    (group_vars/all/vault.yml: vault_singlewindow_ipsec_psks, party -> its key; the role
    binds each to the identity of the party's tunnel in the database): the file and its
    password file, both 0600."""
    password_file, vault_file = work / "vault-password", work / "vault.yml"
    for path in (password_file, vault_file):
        path.touch(mode=0o600)
    password_file.write_text(secrets.token_urlsafe(24) + "\n")
    vault_file.write_text(json.dumps({"vault_singlewindow_ipsec_psks": psks}))
    subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file",
                    str(password_file), str(vault_file)], check=True, capture_output=True)
    assert vault_file.read_text().startswith("$ANSIBLE_VAULT;")
    return vault_file, password_file


def start_hub_services(hub: Root) -> list[subprocess.Popen[bytes]]:
    """The daemons as their units run them, Dovecot (``dovecot -F``), Postfix."""
    procs = []
    units = sorted(p.stem for p in (hub.path / "etc/systemd/system").glob("sw-*.service"))
    after = [u for u in units if "dovecot.service" in hub.unit_fields(u).get("After", "")]
    for unit in units:
        if unit not in after:
            procs.append(hub.start_notify_daemon(unit))
    procs.append(hub.spawn("/usr/sbin/dovecot", "-F"))
    for unit in after:
        procs.append(hub.start_notify_daemon(unit))
    hub.run("postfix", "start")
    return procs


def party_gateway(lab: Lab, pki: Path, party: Party) -> None:
    """A party's gateway: strongSwan installed and prepared, its certificate and the
    lab CA in place if it authenticates with one."""
    root = lab.root(party)
    strongswan.apt_install(root, lab.proxy_url, *strongswan.PACKAGES)
    strongswan.prepare(root, party=True)
    if party.auth == "cert":
        swan = root.path / "etc/swanctl"
        (swan / "x509" / f"{party.name}.pem").write_bytes(
            (pki / f"{party.name}.crt").read_bytes())
        (swan / "private" / f"{party.name}.key").write_bytes(
            (pki / f"{party.name}.key").read_bytes())
        (swan / "x509ca/lab-ca.pem").write_bytes((pki / "ca.pem").read_bytes())


def register_parties(lab: Lab, result: Converge) -> None:
    """Every party and its address with swctl, the tunnel with it; what ``party add``
    printed goes to ``result.registered``."""
    for party in PARTIES:
        relay = f"{party.mail_server}:{MTA_PORT}"
        out = lab.swctl("party", "add", party.name, "--kind", party.kind,
                        "--peer", party.network, "--relay", relay,
                        "--ipsec-gateway", party.gateway, "--ipsec-id", party.ike_id,
                        "--ipsec-auth", party.auth).stdout
        result.registered[party.name] = out
        lab.swctl("address", "add", f"{party.name}@{DOMAIN}", "--party", party.name,
                  "--physical", f"edi@{party.name}.example")


def parties_tunnels_up(lab: Lab, psks: dict[str, str]) -> None:
    """Each party's charon loads its own configuration; the companies initiate, and
    their child SAs come up."""
    started = time.monotonic()
    for party in PARTIES:
        root = lab.root(party)
        (root.path / "etc/swanctl/conf.d/single-window.conf").write_text(
            party_conf(party, psks.get(party.name, ""),
                       initiate=party.kind == "company"))
        strongswan.swanctl(root, "--load-all")
    for party in (COMPANY_A, COMPANY_B):
        strongswan.wait_for_child(lab.root(party), "single-window")
    lab.times["tunnels up"] = time.monotonic() - started


@pytest.fixture(scope="module")
def converged(lab: Lab) -> Iterator[Converge]:
    """The hub converged; its charon and services started; the parties' gateways with
    strongSwan; the parties registered with swctl; the hub converged again (the role
    renders and loads the tunnels); every party's charon up with its own configuration."""
    work = lab.work
    controller, pki = work / "controller", work / "pki"
    for folder in (controller, pki):
        folder.mkdir()
    hub_node = lab.net.nodes[HUB]
    (controller / HUB_ADDRESS).symlink_to(lab.hub.path)
    wrapper = chroot_wrapper(work / "chroot-hub", hub_node, lab.hub.path)
    make_ca(pki, "ca")
    issue(pki, "ca", HUB_ID, HUB_ID)
    issue(pki, "ca", COMPANY_B.ike_id, COMPANY_B.name)
    wheel = own_wheel(work / "dist")
    result = Converge(psks={p.name: secrets.token_urlsafe(24)
                            for p in PARTIES if p.auth == "psk"})
    extra_vars = work / "extra-vars.json"
    extra_vars.touch(mode=0o600)
    extra_vars.write_text(json.dumps(hub_extra_vars(lab, pki, wheel, wrapper)))
    vault_file, password_file = vault_vars(work, result.psks)
    result.vault_file = vault_file
    args = ("-e", f"@{extra_vars}", "-e", f"@{vault_file}",
            "--vault-password-file", str(password_file))

    def converge(label: str, *more: str) -> None:
        started = time.monotonic()
        result.runs.append(playbook("single-node", controller, lab.proxy_url, *args, *more))
        (work / f"run{len(result.runs)}.log").write_text(result.runs[-1])
        lab.times[label] = time.monotonic() - started

    # The hub's converge and the gateways' apt at once (one apt run per root).
    with ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(converge, "converge"),
                *(pool.submit(party_gateway, lab, pki, p) for p in PARTIES)]
        for job in jobs:
            job.result()

    started = time.monotonic()
    strongswan.prepare(lab.hub, party=False)
    lab.procs.append(strongswan.start_charon(lab.hub))
    lab.procs.extend(start_hub_services(lab.hub))
    for party in PARTIES:
        lab.procs.append(strongswan.start_charon(lab.root(party)))
    lab.times["services"] = time.monotonic() - started

    register_parties(lab, result)
    # charon runs now: the role's handler loads what changed (swanctl --load-all).
    converge("second converge", "-e", '{"singlewindow_ipsec__load": true}')

    parties_tunnels_up(lab, result.psks)
    yield result


# --- What swctl and the playbook said -------------------------------------------------

APPLY = ("ipsec: apply with: swctl render --target ipsec --dest /etc/swanctl/conf.d "
         "&& swanctl --load-all (the singlewindow_ipsec role does both)")


def test_party_add_names_the_connection_it_adds(converged: Converge) -> None:
    """``swctl party add ... --ipsec-*`` prints the connection it added and how to
    apply it; party list shows each tunnel."""
    for party in PARTIES:
        lines = [line for line in converged.registered[party.name].splitlines()
                 if line.startswith("ipsec:")]
        assert lines == [f"ipsec: connection {party.connection} added", APPLY], lines


def test_a_party_without_a_tunnel_is_refused_on_an_ipsec_hub(lab: Lab,
                                                            converged: Converge) -> None:
    result = lab.swctl("party", "add", "co-clear", "--kind", "company", "--peer",
                       "172.16.5.0/24", check=False)
    assert result.returncode == 1, result
    assert "port 25 is reachable only through IPsec" in result.stdout + result.stderr
    listed = lab.swctl("party", "list").stdout
    assert "co-clear" not in listed
    for party in PARTIES:
        [line] = [line for line in listed.splitlines() if line.split()[:1] == [party.name]]
        assert party.gateway in line and party.ike_id in line and party.auth in line, line


def test_the_second_converge_loads_the_tunnels_with_keys_from_vault(
        lab: Lab, converged: Converge) -> None:
    """The role renders the connections from the parties and loads them; the PSKs come
    from the vault file and land only in the 0600 secrets file; the hub's rendered
    configuration holds no secret; a clean run; the firewall has the tunnels chain."""
    second = recaps(converged.runs[1])[HUB]
    assert second["failed"] == 0 and second["unreachable"] == 0, second
    conns = strongswan.swanctl(lab.hub, "--list-conns")
    for party in PARTIES:
        assert f"{party.connection}: IKEv2" in conns, conns
    swan = lab.hub.path / "etc/swanctl/conf.d"
    rendered = (swan / "singlewindow.conf").read_text()
    secrets_file = swan / "singlewindow-secrets.conf"
    assert oct(secrets_file.stat().st_mode & 0o777) == oct(0o600)
    held = secrets_file.read_text()
    ids = {p.name: p.ike_id for p in PARTIES}
    for name, psk in converged.psks.items():
        # The role writes each key base64-encoded (swanctl's 0s prefix), bound to the
        # identity of the party's tunnel in the database.
        encoded = base64.b64encode(psk.encode()).decode()
        assert (f'id-party = "{ids[name]}"\n    secret = 0s{encoded}') in held, name
        assert psk not in rendered
        assert not any(psk in run for run in converged.runs)
        assert psk.encode() not in converged.vault_file.read_bytes()
    rules = lab.hub.run("nft", "list", "table", "inet", "singlewindow").stdout
    assert "jump tunnels" in rules, rules
    assert f'tcp dport {MTA_PORT} iifname "ipsec0"' in rules, rules


# --- (a) The tunnels -------------------------------------------------------------------

def test_tunnels_come_up_with_each_partys_network(lab: Lab, converged: Converge) -> None:
    """(a) Both sides hold the CHILD_SA: the hub's remote selector is the party's
    network, the party's is the hub's MTA address. The hub holds a trap policy for
    every tunnel, up or not (the agency's is not up yet)."""
    policies = strongswan.swanctl(lab.hub, "--list-pols", "--trap")
    for party in PARTIES:
        trap = re.compile(rf"^(\S+/)?{re.escape(party.connection)}, TUNNEL\n"
                          rf"  local:  {re.escape(HUB_ADDRESS)}/32\n"
                          rf"  remote: {re.escape(party.network)}$", re.MULTILINE)
        assert trap.search(policies), policies
    for party in (COMPANY_A, COMPANY_B):
        theirs = strongswan.wait_for_child(lab.root(party), "single-window")
        assert theirs.local_ts == (party.network,)
        assert theirs.remote_ts == (f"{HUB_ADDRESS}/32",)
        ours = strongswan.wait_for_child(lab.hub, party.connection)
        assert ours.ike == party.connection
        assert ours.remote_ts == (party.network,)
        assert ours.local_ts == (f"{HUB_ADDRESS}/32",)


# --- (b) Mail over the tunnels -------------------------------------------------------------

@pytest.fixture(scope="module")
def sinks(lab: Lab, converged: Converge) -> Iterator[dict[str, Sink]]:
    """Company A's and the agency's mail servers: SMTP sinks on their addresses, inside
    their gateways' namespaces (reachable only through their tunnels)."""
    started: dict[str, Sink] = {}
    try:
        for party in (COMPANY_A, AGENCY):
            started[party.name] = in_netns(
                lab.netns(party), Sink(MTA_PORT, host=party.mail_server).start)
        yield started
    finally:
        for sink in started.values():
            sink.stop()


def smtp_from(lab: Lab, party: Party, source: str, subject: str, to: str,
              mark: int = 0) -> None:
    """A submission from ``source`` inside the party's gateway namespace (``mark``: the
    socket's fwmark, to send past the party's own tunnel route)."""
    sender = f"edi@{party.name}.example"
    data = mail(sender, to, subject, factory.gendec())

    def send() -> None:
        smtp = smtplib.SMTP(timeout=5, source_address=(source, 0))
        if mark:
            # Mark the socket before connect: smtplib connects in connect().
            smtp.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            smtp.sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
            smtp.sock.settimeout(5)
            smtp.sock.bind((source, 0))
            smtp.sock.connect((HUB_ADDRESS, MTA_PORT))
            smtp.file = None
            code, msg = smtp.getreply()
            assert code == 220, msg
        else:
            smtp.connect(HUB_ADDRESS, MTA_PORT)
        with smtp:
            assert smtp.sendmail(sender, [to], data) == {}

    in_netns(lab.netns(party), send)


def test_submission_over_the_tunnel_reaches_the_agency_over_its_tunnel(
        lab: Lab, converged: Converge, sinks: dict[str, Sink]) -> None:
    """(b) Company A's mail server submits over A's tunnel: accepted; the hub's Postfix
    delivers to the agency's mail server over the agency's tunnel, which the hub
    initiates; A's DSN comes back through A's tunnel."""
    # On a node with the kernel's ESP the trap policy initiates it at Postfix's first
    # packet; userland ESP sends no acquire (tests/support/strongswan.py), so the hub is
    # told to initiate what its trap would.
    strongswan.swanctl(lab.hub, "--initiate", "--child", AGENCY.connection)
    subject = f"gendec {secrets.token_hex(3)}"
    smtp_from(lab, COMPANY_A, COMPANY_A.mail_server, subject, f"{AGENCY.name}@{DOMAIN}")
    [copy] = sinks[AGENCY.name].wait_for(
        lambda r: f"Subject: {subject}".encode() in r.data, timeout=90)
    assert copy.rcpt_tos == [f"edi@{AGENCY.name}.example"]
    assert copy.mail_from == f"{COMPANY_A.name}@{DOMAIN}"
    assert copy.message.get_content_type() == "application/xml"
    # The hub initiated the agency's tunnel: the agency's charon responded.
    agency = strongswan.wait_for_child(lab.root(AGENCY), "single-window")
    assert agency.local_ts == (AGENCY.network,)
    assert f"{HUB_ADDRESS} is initiating an IKE_SA" in strongswan.log(lab.root(AGENCY))
    [dsn] = sinks[COMPANY_A.name].wait_for(lambda r: dsn_about(r, subject), timeout=90)
    [status] = delivery_status(dsn)
    assert status["action"] == "delivered" and status["status"].startswith("2.")
    assert dsn.rcpt_tos == [f"edi@{COMPANY_A.name}.example"]
    # Both ways through ipsec0: the hub's CHILD_SAs for A and the agency carried bytes.
    for party in (COMPANY_A, AGENCY):
        sas = strongswan.swanctl(lab.hub, "--list-sas", "--ike", party.connection)
        assert " 0 packets" not in sas, sas


# --- (c), (d) Nothing without the party's own tunnel --------------------------------

def drops(lab: Lab) -> int:
    """The hub firewall's count of what its input chain dropped (the policy's counter)."""
    chain = lab.hub.run("nft", "list", "chain", "inet", "singlewindow", "input").stdout
    counted = [line for line in chain.splitlines()
               if line.strip().startswith("counter packets")]
    assert counted, chain
    return int(counted[-1].split()[2])


def nothing_from(lab: Lab, party: Party, source: str, mark: int = 0) -> None:
    """A connection from ``source`` in the party's namespace gets nothing: it times out."""
    with pytest.raises(OSError) as caught:
        smtp_from(lab, party, source, "never", f"{AGENCY.name}@{DOMAIN}", mark)
    assert isinstance(caught.value, (TimeoutError, socket.timeout)), caught.value


def test_the_same_address_without_the_tunnel_gets_nothing(
        lab: Lab, converged: Converge) -> None:
    """(c) Company A's SAs terminated and its connection unloaded (no policy, no route
    via ipsec0 left on A's side): the same mail server address, now in clear over the
    lab network, gets nothing; the hub's firewall drops it (its drop counter rises).
    A's connection loaded again, its tunnel carries mail again."""
    root = lab.root(COMPANY_A)
    conf = root.path / "etc/swanctl/conf.d/single-window.conf"
    kept = conf.read_text()
    try:
        strongswan.swanctl(root, "--terminate", "--ike", "single-window")
        conf.unlink()
        strongswan.swanctl(root, "--load-all")
        assert not strongswan.children(root)
        assert not ip("-n", lab.netns(COMPANY_A), "route", "show", "table", "220").stdout.strip()
        before = drops(lab)
        nothing_from(lab, COMPANY_A, COMPANY_A.mail_server)
        assert drops(lab) > before
    finally:
        conf.write_text(kept)
        strongswan.swanctl(root, "--load-all")
    strongswan.wait_for_child(root, "single-window")
    strongswan.wait_for_child(lab.hub, COMPANY_A.connection)


def test_company_b_can_use_neither_company_as_tunnel_nor_its_range(
        lab: Lab, converged: Converge) -> None:
    """(d) Company B with A's identity (and even A's key) is refused at IKE
    (AUTHENTICATION_FAILED: A's connection is pinned to A's gateway); B proposing A's
    network in its own tunnel gets no CHILD_SA for it (TS_UNACCEPTABLE); a connection
    from an A address in B's namespace gets nothing, through B's tunnel or in clear."""
    root = lab.root(COMPANY_B)
    conf = root.path / "etc/swanctl/conf.d"
    (conf / "as-company-a.conf").write_text(
        B_AS_A.replace("{psk}", converged.psks[COMPANY_A.name]))
    (conf / "single-window.conf").write_text(
        party_conf(COMPANY_B, "", initiate=True, more=B_A_RANGE_CHILD))
    try:
        strongswan.swanctl(root, "--load-all")
        out = root.run("swanctl", "--initiate", "--child", "as-company-a", "--timeout", "20",
                       check=False)
        assert out.returncode != 0, out.stdout
        strongswan.wait_for_log(root, "received AUTHENTICATION_FAILED notify error")
        out = root.run("swanctl", "--initiate", "--child", "company-a-range",
                       "--timeout", "20", check=False)
        assert out.returncode != 0, out.stdout
        strongswan.wait_for_log(root, "received TS_UNACCEPTABLE notify")
        # B's own tunnel still stands, and A's is untouched.
        strongswan.wait_for_child(root, "single-window")
        strongswan.wait_for_child(lab.hub, COMPANY_A.connection)
        # What the hub gave B carries B's network only (and there is something to check).
        strongswan.wait_for_child(lab.hub, COMPANY_B.connection)
        for child in strongswan.children(lab.hub):
            if child.ike == COMPANY_B.connection:
                assert child.remote_ts == (COMPANY_B.network,), child

        # An A address at B: through B's tunnel route, and in clear past it.
        ip("-n", lab.netns(COMPANY_B), "addr", "add", f"{COMPANY_A.mail_server}/32", "dev", "lo")
        try:
            nothing_from(lab, COMPANY_B, COMPANY_A.mail_server)
            before = drops(lab)
            nothing_from(lab, COMPANY_B, COMPANY_A.mail_server, mark=strongswan.BYPASS_MARK)
            assert drops(lab) > before
        finally:
            ip("-n", lab.netns(COMPANY_B), "addr", "del", f"{COMPANY_A.mail_server}/32",
               "dev", "lo")
    finally:
        (conf / "as-company-a.conf").unlink()
        (conf / "single-window.conf").write_text(party_conf(COMPANY_B, "", initiate=True))
        strongswan.swanctl(root, "--load-all")


# --- (e) Removing a tunnel, removing a party --------------------------------------------

def apply_line(output: str) -> list[list[str]]:
    """The commands swctl's ``ipsec: apply with:`` line names, run as printed."""
    [line] = [line for line in output.splitlines() if line.startswith("ipsec: apply with: ")]
    commands = line.removeprefix("ipsec: apply with: ").split(" (", 1)[0]
    return [shlex.split(command) for command in commands.split(" && ")]


def test_changing_and_removing_a_tunnel_reloads_the_connections(
        lab: Lab, converged: Converge) -> None:
    """(e) A party's tunnel added, changed, then the party removed: swctl names the
    connection added, changed, removed; after the render and load it prints, charon
    has it, has the new gateway, has it no more. On an IPsec hub a party keeps its
    tunnel while it has peer networks: ``party tunnel NAME --remove`` is refused."""
    gone = "co-gone"
    added = lab.swctl("party", "add", gone, "--kind", "company", "--peer", "172.16.7.0/24",
                      "--ipsec-gateway", "10.7.0.1", "--ipsec-id", "gw.gone.example",
                      "--ipsec-auth", "psk").stdout
    assert f"ipsec: connection sw-{gone} added" in added.splitlines(), added
    for command in apply_line(added):
        lab.hub.run(*command)
    assert "remote: 10.7.0.1" in conn_of(lab, f"sw-{gone}")

    refused = lab.swctl("party", "tunnel", gone, "--remove", check=False)
    assert refused.returncode == 1, refused
    assert "still has peer networks" in refused.stdout + refused.stderr
    assert "ipsec:" not in refused.stdout

    changed = lab.swctl("party", "tunnel", gone, "--gateway", "10.7.0.2", "--id",
                        "gw.gone.example", "--auth", "psk").stdout
    assert f"ipsec: connection sw-{gone} changed" in changed.splitlines(), changed
    for command in apply_line(changed):
        lab.hub.run(*command)
    assert "remote: 10.7.0.2" in conn_of(lab, f"sw-{gone}")

    removed = lab.swctl("party", "remove", gone).stdout
    assert f"ipsec: connection sw-{gone} removed" in removed.splitlines(), removed
    for command in apply_line(removed):
        lab.hub.run(*command)
    conns = strongswan.swanctl(lab.hub, "--list-conns")
    assert f"sw-{gone}:" not in conns, conns
    for party in PARTIES:
        assert f"{party.connection}: IKEv2" in conns
    # A party with addresses cannot go; nothing about IPsec printed then.
    refused = lab.swctl("party", "remove", COMPANY_A.name, check=False)
    assert refused.returncode == 1 and "ipsec:" not in refused.stdout, refused


def conn_of(lab: Lab, name: str) -> str:
    """``swanctl --list-conns`` of one loaded connection (its addresses, ids, children)."""
    shown = strongswan.swanctl(lab.hub, "--list-conns").split("\n")
    start = [i for i, line in enumerate(shown) if line.startswith(f"{name}: ")]
    assert start, f"{name} not loaded:\n" + "\n".join(shown)
    block = [shown[start[0]]]
    for line in shown[start[0] + 1:]:
        if not line.startswith(" "):
            break
        block.append(line)
    return "\n".join(block)
