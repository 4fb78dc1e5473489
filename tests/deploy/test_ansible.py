"""The Ansible roles (ansible/): lint, syntax, and the multi-node inventory rendered by the
roles' own tasks and checked by Postfix and Dovecot themselves.

Nothing here skips: ansible-lint, ansible-playbook (from the project's test extra),
postfix and doveconf (scripts/install) missing is a failure, so CI cannot go green
without them. The converge into a debootstrapped Debian root is test_converge.py.
"""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import re
import secrets
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from singlewindow.config import (
    ADMIN_ROLE,
    DAEMON_ROLE,
    DOVECOT_ROLE,
    OWNER_ROLE,
    POSTFIX_ROLE,
    Config,
    Database,
    Maildrop,
)
from singlewindow.config import load as load_config
from tests.support.prometheus import promtool

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent
INVENTORIES = ("single-node", "multi-node")
#: The multi-node inventory's Vault variables, vault_singlewindow_db_ROLE_password.
VAULT_ROLES = ("owner", "admin", "daemon", "postfix", "dovecot", "console")
PASSWORD = "render-test-only-"
EDGES = {"edge1.example.internal": "10.0.2.11", "edge2.example.internal": "10.0.2.12"}
HUB_NODES = (*EDGES, "pop1.example.internal")


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles"),
           "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(cmd, cwd=ANSIBLE, env=env, capture_output=True, text=True,
                            check=False, timeout=600)
    output = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{cmd[0]} failed:\n{output}"
    return result


def test_ansible_lint_production_profile() -> None:
    result = run([str(BIN / "ansible-lint"), "--offline"])
    assert "passed" in (result.stdout + result.stderr)


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_syntax_check(inventory: str) -> None:
    run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", f"inventories/{inventory}",
         "site.yml"])


#: The parties' pre-shared keys, as an operator's Vault gives them (throwaways, fresh
#: per run: the test looks for them in the playbook's output).
PSKS = {"co-acme": {"id": "203.0.113.10", "secret": secrets.token_urlsafe(33)},
        "ag-customs": {"id": "CN=gw.customs.example, O=Customs", "secret":
                       secrets.token_urlsafe(24) + ":'\\ \"} #"}}
#: A party's CA (auth cert): any PEM will do for the file.
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBrender+test+only\n-----END CERTIFICATE-----\n"


def render_inventory(root: Path, inventory: str, *extra: str) -> Path:
    """Every node of ``inventory``, rendered by the roles' own tasks into ``root``; the
    roles' handlers run `postfix check` and `doveconf -n` on the rendered files. The
    playbook runs with --diff (what a changed file would show) and its output is kept in
    root/ansible.log."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=edge.test", "-keyout", str(root / "key.pem"),
                    "-out", str(root / "cert.pem")], check=True, capture_output=True)
    ipsec = {"vault_singlewindow_ipsec_psks": PSKS,
             "singlewindow_ipsec__cacerts": {"ag-customs": CA_PEM}}
    result = run([str(BIN / "ansible-playbook"), "--diff", "-v", "-i", f"inventories/{inventory}",
                  str(REPO / "tests/deploy/render-multi-node.yml"),
                  "-e", f"render_root={root}", "-e", f"swctl={BIN / 'swctl'}",
                  "-e", f"conf_dir={REPO / 'conf'}",
                  "-e", f"ansible_python_interpreter={sys.executable}",
                  "-e", json.dumps(ipsec), *extra])
    (root / "ansible.log").write_text(result.stdout + result.stderr)
    return root


@pytest.fixture(scope="module")
def multi_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_inventory(
        tmp_path_factory.mktemp("multi-node"), "multi-node",
        # Throwaways for the test; operators give theirs from Ansible Vault.
        *[arg for role in VAULT_ROLES
          for arg in ("-e", f"vault_singlewindow_db_{role}_password={PASSWORD}{role}")])


@pytest.mark.parametrize("edge", list(EDGES))
def test_edges_postfix_check_and_proxy(multi_node: Path, edge: str) -> None:
    postfix = multi_node / edge / "postfix"
    subprocess.run(["postfix", "-c", str(postfix), "check"], check=True)
    main_cf = (postfix / "main.cf").read_text()
    # Tables the policy daemon generates on the node, not the database (issue 13).
    state = multi_node / edge / "state"
    assert (f"relay_recipient_maps = hash:{state}/maps/relay_recipients,\n"
            f"    socketmap:unix:{state}/run/tables.sock:relay_recipients\n") in main_cf
    assert not list(postfix.glob("pgsql-*"))
    dovecot = multi_node / edge / "dovecot" / "dovecot.conf"
    shown = subprocess.run(["doveconf", "-c", str(dovecot), "-n"], check=True,
                           capture_output=True, text=True).stdout
    # The proxy speaks TLS to the backend's POP3S port and verifies its certificate and
    # name against the deployment's CA (ssl_ca: Dovecot 2.3's login proxy ignores
    # ssl_client_ca_file): USER/PASS never cross in clear.
    assert f"\nssl_ca = <{multi_node}/cert.pem\n" in shown
    assert "ssl_client_ca_file" not in shown
    strong = (multi_node / edge / "dovecot" / "sql-strong.conf.ext").read_text()
    assert "'Y' AS proxy, 'pop1.example.internal' AS host, \\\n  '10.0.3.10' AS hostip, " \
           "\\\n  '995' AS port, 'yes' AS ssl FROM account" in strong


def test_pop3_backend_trusts_edges_only(multi_node: Path) -> None:
    dovecot = multi_node / "pop1.example.internal" / "dovecot" / "dovecot.conf"
    shown = subprocess.run(["doveconf", "-c", str(dovecot), "-n"], check=True,
                           capture_output=True, text=True).stdout
    # Exactly the edges' addresses, not their network.
    assert "login_trusted_networks = 10.0.2.11 10.0.2.12\n" in shown
    # And a login counts only on a connection from one of them, whichever passdb.
    for name in ("sql-strong.conf.ext", "sql-digest-md5.conf.ext"):
        passdb = (dovecot.parent / name).read_text()
        assert "'10.0.2.11,10.0.2.12' AS allow_real_nets FROM account" in passdb, name
    # Only POP3S: the plain listener the proxies used to reach in clear is off.
    pop3 = shown.split("inet_listener pop3 {", 1)[1].split("}", 1)[0]
    assert "port = 0" in pop3
    assert not (multi_node / "pop1.example.internal" / "postfix").exists()


@pytest.fixture(scope="module")
def single_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-node inventory (no database passwords: peer authentication)."""
    return render_inventory(tmp_path_factory.mktemp("single-node"), "single-node")


def test_edges_hand_maildrop_deliveries_to_the_backend(multi_node: Path) -> None:
    """The maildrop hop as the config loader reads it: each edge names the backend by the
    name in its certificate, port 24; the backend listens on its own address and serves
    exactly the edges."""
    for edge in EDGES:
        config = load_config(multi_node / edge / "singlewindow.toml")
        assert config.maildrop.backend == "pop1.example.internal:24"
        assert config.maildrop.clients == ()
        assert config.tls.ca_file == multi_node / "cert.pem"
    backend = load_config(multi_node / "pop1.example.internal" / "singlewindow.toml")
    assert backend.maildrop.backend == ""
    assert backend.maildrop.listen == "10.0.3.10:24"
    assert backend.maildrop.clients == tuple(EDGES.values())
    # What `swctl health` probes there: its POP3S and its maildrop service, nothing an
    # edge runs; an edge keeps the full set (and probes the backend).
    assert backend.health.components == ("dovecot", "maildrop")
    for edge in EDGES:
        assert load_config(multi_node / edge / "singlewindow.toml").health.components == \
            Config().health.components


def test_single_node_delivers_locally(single_node: Path) -> None:
    """No [maildrop] table on a single node: it delivers into its own maildrops with
    dovecot-lda, as before; its Dovecot neither proxies nor restricts logins."""
    node = single_node / "sw1.example.internal"
    text = (node / "singlewindow.toml").read_text()
    assert "maildrop" not in tomllib.loads(text)
    assert load_config(node / "singlewindow.toml").maildrop == Maildrop()
    assert load_config(node / "singlewindow.toml").health.components == \
        Config().health.components
    for name in ("sql-strong.conf.ext", "sql-digest-md5.conf.ext"):
        passdb = (node / "dovecot" / name).read_text()
        assert "AS proxy" not in passdb and "allow_real_nets" not in passdb
    assert "ssl_ca" not in (node / "dovecot" / "dovecot.conf").read_text()
    # No DNS entries to write: /etc/hosts is left alone.
    assert not (node / "hosts").exists()


@pytest.mark.parametrize("node", HUB_NODES)
def test_nodes_resolve_each_other_by_inventory_name(multi_node: Path, node: str) -> None:
    """Without DNS the hub nodes find each other by the names their certificates carry
    (db1 for verify-full, pop1 for the hop and the POP3 proxy): one managed block."""
    lines = (multi_node / node / "hosts").read_text().splitlines()
    assert lines == [
        "# BEGIN Single Window nodes (role singlewindow_app)",
        "10.0.4.10 db1.example.internal",
        "10.0.2.11 edge1.example.internal",
        "10.0.2.12 edge2.example.internal",
        "10.0.3.10 pop1.example.internal",
        "# END Single Window nodes (role singlewindow_app)"]


@pytest.mark.parametrize("node", HUB_NODES)
def test_only_the_backends_daemon_user_reads_its_tls_key(multi_node: Path, node: str) -> None:
    """sw-maildrop serves STARTTLS with the node's key as the daemons' user: on the
    backend the key is group singlewindow, 0640; elsewhere root's alone, 0600."""
    st = (multi_node / node / "tls" / "key.pem").stat()
    group = "singlewindow" if node == "pop1.example.internal" else "root"
    mode = 0o640 if node == "pop1.example.internal" else 0o600
    assert (grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode), st.st_uid) == \
        (group, mode, 0)


def _conninfos(multi_node: Path, node: str) -> dict[str, dict[str, str]]:
    """Every libpq connection a hub node makes, by who makes it, as rendered."""
    found: dict[str, dict[str, str]] = {}
    toml = tomllib.loads((multi_node / node / "singlewindow.toml").read_text())
    database = Database(conninfo=toml["database"]["conninfo"],
                        passfile_dir=Path(toml["database"]["passfile_dir"]))
    for role in (DAEMON_ROLE, ADMIN_ROLE, OWNER_ROLE):  # the daemons; swctl
        found[role] = {k: str(v) for k, v in conninfo_to_dict(database.dsn(role)).items()}
    for name in ("sql-strong.conf.ext", "sql-digest-md5.conf.ext", "sql-userdb.conf.ext"):
        text = (multi_node / node / "dovecot" / name).read_text()
        [connect] = [line for line in text.splitlines() if line.startswith("connect = ")]
        found[f"dovecot {name}"] = {
            k: str(v) for k, v in conninfo_to_dict(connect.split(" = ", 1)[1]).items()}
    return found


@pytest.mark.parametrize("node", HUB_NODES)
def test_every_database_client_verifies_the_server(multi_node: Path, node: str) -> None:
    """Daemons, swctl and Dovecot's SQL: TLS, the server's certificate and name checked
    against the deployment's CA, each as its own role, its password from its own file
    (never in the config file). Postfix reads no table of the database (issue 13)."""
    found = _conninfos(multi_node, node)
    assert any(k.startswith("dovecot") for k in found)
    assert not any(k.startswith("postfix") for k in found)
    for who, params in found.items():
        assert params["host"] == "db1.example.internal", who
        assert params["sslmode"] == "verify-full", who
        assert params["sslrootcert"] == f"{multi_node}/cert.pem", who
        assert params["passfile"] == f"{multi_node}/{node}/pgpass/{params['user']}", who
        assert "password" not in params, who
    assert {p["user"] for w, p in found.items() if w.startswith("postfix")} <= {POSTFIX_ROLE}
    assert {p["user"] for w, p in found.items() if w.startswith("dovecot")} == {DOVECOT_ROLE}
    assert PASSWORD not in (multi_node / node / "singlewindow.toml").read_text()


@pytest.mark.parametrize("node", HUB_NODES)
def test_each_node_holds_only_its_roles_passwords(multi_node: Path, node: str) -> None:
    owners = {"sw": "root", "sw_admin": "root", "sw_daemon": "singlewindow",
              "sw_postfix": "postfix", "sw_dovecot": "dovecot", "sw_console": "singlewindow"}
    expected = {"sw_dovecot"}
    if node in EDGES:  # the web console runs there too
        expected |= {"sw_admin", "sw_daemon", "sw_postfix", "sw_console"}
    if node == "edge1.example.internal":  # where migrations run
        expected.add("sw")
    pgpass = multi_node / node / "pgpass"
    assert {p.name for p in pgpass.iterdir()} == expected
    vault = dict(zip(("sw", "sw_admin", "sw_daemon", "sw_postfix", "sw_dovecot", "sw_console"),
                     VAULT_ROLES, strict=True))
    for role in expected:
        path = pgpass / role
        assert path.read_text() == f"*:*:*:{role}:{PASSWORD}{vault[role]}\n"
        st = path.stat()
        # libpq ignores a password file that anyone but its owner may read.
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert pwd.getpwuid(st.st_uid).pw_name == owners[role]


def test_database_node_lets_each_role_in_from_its_nodes_over_tls_only(
        multi_node: Path) -> None:
    db = multi_node / "db1.example.internal" / "postgresql"
    hba = [line.split() for line in (db / "pg_hba.conf").read_text().splitlines()
           if line.strip() and not line.startswith("#")]
    assert {line[0] for line in hba} == {"local", "hostssl"}
    remote = {(line[2], line[3]) for line in hba if line[0] == "hostssl"}
    assert all(line[1] == "singlewindow" and line[4:] == ["scram-sha-256"]
               for line in hba if line[0] == "hostssl")
    expected = {(role, f"{address}/32") for address in EDGES.values()
                for role in ("sw_admin", "sw_daemon", "sw_postfix", "sw_dovecot", "sw_console")}
    expected |= {("sw", "10.0.2.11/32"), ("sw_dovecot", "10.0.3.10/32")}
    assert remote == expected
    assert PASSWORD not in (db / "pg_hba.conf").read_text()
    # Over the socket only the operator (root: swctl and its migrations).
    ident = [line.split() for line in (db / "pg_ident.conf").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert ident == [["sw", "root", "sw"], ["sw", "root", "sw_admin"]]
    conf = (db / "conf.d" / "singlewindow.conf").read_text()
    assert "\nssl = on\n" in conf and "ssl_min_protocol_version = 'TLSv1.2'" in conf
    key = db / "singlewindow-server.key"
    assert f"ssl_key_file = '{key}'" in conf
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert pwd.getpwuid(key.stat().st_uid).pw_name == "postgres"


@pytest.mark.parametrize("edge", ["edge1.example.internal", "edge2.example.internal"])
def test_edges_one_way_in(multi_node: Path, edge: str) -> None:
    """Issue 12: the re-injection listener trusts only the certificate the app role made
    for the transport, whose key (like the stamp key) only the daemons' group reads; the
    config file names the key files, never a key; sendmail/postdrop refuse everyone."""
    node = multi_node / edge
    keys = node / "keys"
    master = subprocess.run(["postconf", "-c", str(node / "postfix"), "-P"], check=True,
                            capture_output=True, text=True).stdout
    [service] = [line.split("/syslog_name", 1)[0] for line in master.splitlines()
                 if line.endswith("/syslog_name = postfix/reinject")]
    reinject = {name.strip(): value.strip() for name, _, value in (
        line[len(service) + 1:].partition("=") for line in master.splitlines()
        if line.startswith(service + "/"))}
    assert reinject["smtpd_tls_req_ccert"] == "yes"
    assert reinject["smtpd_tls_security_level"] == "encrypt"
    assert reinject["smtpd_tls_CAfile"] == f"{keys}/reinject-cert.pem"
    assert "mynetworks" not in " ".join(reinject.values())
    main = subprocess.run(["postconf", "-c", str(node / "postfix"), "-h",
                           "authorized_submit_users"], check=True, capture_output=True,
                          text=True).stdout
    assert main.strip() == ""
    group = grp.getgrnam("singlewindow").gr_gid
    for name, mode in (("stamp.key", 0o640), ("reinject-key.pem", 0o640),
                       ("reinject-cert.pem", 0o644)):
        st = (keys / name).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (mode, group), name
    assert stat.S_IMODE(keys.stat().st_mode) == 0o750
    key = (keys / "stamp.key").read_text().strip()
    assert len(key) == 64
    toml = (node / "singlewindow.toml").read_text()
    assert f'stamp_key_file = "{keys}/stamp.key"' in toml and key not in toml


def test_edges_serve_metrics_on_their_own_address(multi_node: Path) -> None:
    """Each edge's exporter listens on the node's address in the inventory (its
    management address), not on every interface."""
    for edge, address in EDGES.items():
        toml = tomllib.loads((multi_node / edge / "singlewindow.toml").read_text())
        assert toml["metrics"] == {"listen": f"{address}:9750"}


def test_prometheus_gets_the_rules_and_one_target_per_edge(multi_node: Path) -> None:
    """Role singlewindow_monitoring: the alert rules, as promtool checked them, and a
    file_sd target per edge whose job label is the one the rules select."""
    rules = multi_node / "prometheus" / "rules.d" / "singlewindow.yml"
    assert rules.read_text() == (REPO / "conf" / "prometheus" / "alerts.yml").read_text()
    assert stat.S_IMODE(rules.stat().st_mode) == 0o644
    checked = promtool("check", "rules", rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    targets = sorted((multi_node / "prometheus" / "file_sd").iterdir())
    assert [t.name for t in targets] == [f"singlewindow-{edge}.json" for edge in sorted(EDGES)]
    for path in targets:
        edge = path.name.removeprefix("singlewindow-").removesuffix(".json")
        assert json.loads(path.read_text()) == [
            {"targets": [f"{EDGES[edge]}:9750"], "labels": {"job": "singlewindow", "node": edge}}]
    assert 'up{job="singlewindow"}' in rules.read_text()


# --- The web console (issue 18): on the edges, on the management address only -----------

def _console_table(address: str, root: Path) -> dict[str, object]:
    return {"listen": f"{address}:8443", "cert_file": f"{root}/console/cert.pem",
            "key_file": f"{root}/console/key.pem", "session_idle_seconds": 1800,
            "session_max_seconds": 43200, "login_delay": 1.0, "login_attempts": 5,
            "login_window_seconds": 900}


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_the_console_listens_on_the_management_address_of_each_edge(
        request: pytest.FixtureRequest, inventory: str) -> None:
    """[console] as the config loader reads it: the node's management address (the
    inventory's, like the exporter's), port 8443, the documented session and login
    settings, a certificate of its own; no console where no transport runs."""
    root = _rendered(request, inventory)
    edges = {"sw1.example.internal": "10.0.0.5"} if inventory == "single-node" else EDGES
    for edge, address in edges.items():
        path = root / edge / "singlewindow.toml"
        assert tomllib.loads(path.read_text())["console"] == _console_table(address, root / edge)
        config = load_config(path)
        assert config.console.address == (address, 8443)
        assert config.console_key_file == root / edge / "console" / "key.pem"
        assert "console" in config.health.components
    if inventory == "multi-node":
        assert "console" not in tomllib.loads(
            (root / "pop1.example.internal" / "singlewindow.toml").read_text())
        assert not (root / "pop1.example.internal" / "console").exists()


def test_a_single_node_lets_the_console_in_as_sw_console_by_peer(single_node: Path) -> None:
    """The console runs as the daemons' user: pg_ident.conf maps that user to sw_console
    (beside sw_daemon), and pg_hba.conf lets the role in over the unix socket only."""
    db = single_node / "sw1.example.internal" / "postgresql"
    ident = [line.split() for line in (db / "pg_ident.conf").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert ["sw", "singlewindow", "sw_console"] in ident
    assert [line for line in ident if line[2] == "sw_console"] == [
        ["sw", "singlewindow", "sw_console"]]
    hba = [line.split() for line in (db / "pg_hba.conf").read_text().splitlines()
           if line.strip() and not line.startswith("#")]
    [local] = [line for line in hba if line[0] == "local" and line[1] == "singlewindow"]
    assert "sw_console" in local[2].split(",") and local[3:] == ["peer", "map=sw"]
    assert not any(line[0].startswith("host") for line in hba)


@pytest.mark.parametrize("edge", list(EDGES))
def test_only_the_daemons_user_reads_the_consoles_key(multi_node: Path, edge: str) -> None:
    """The console serves the node's certificate from a copy of its own: the key the
    singlewindow user's alone (0600), while the node's key stays root's (Postfix,
    Dovecot)."""
    console = multi_node / edge / "console"
    user = pwd.getpwnam("singlewindow")
    key = (console / "key.pem").stat()
    assert (stat.S_IMODE(key.st_mode), key.st_uid) == (0o600, user.pw_uid)
    cert = (console / "cert.pem").stat()
    assert (stat.S_IMODE(cert.st_mode), cert.st_uid) == (0o644, 0)
    assert (stat.S_IMODE(console.stat().st_mode), console.stat().st_gid) == \
        (0o750, user.pw_gid)
    assert (console / "key.pem").read_bytes() == \
        (multi_node / edge / "tls" / "key.pem").read_bytes()
    assert (console / "cert.pem").read_bytes() == \
        (multi_node / edge / "tls" / "cert.pem").read_bytes()
    node_key = (multi_node / edge / "tls" / "key.pem").stat()
    assert (stat.S_IMODE(node_key.st_mode), node_key.st_uid) == (0o600, 0)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "198.51.100.25"])
def test_a_console_on_a_public_address_is_refused(tmp_path: Path, address: str) -> None:
    """Every interface, or the address the public listeners are bound to: the run stops
    before any file is written, naming the variable."""
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles"),
           "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "inventories/single-node",
         str(REPO / "tests/deploy/render-multi-node.yml"), "--limit", "sw1.example.internal",
         "-e", json.dumps({"render_root": str(tmp_path), "swctl": str(BIN / "swctl"),
                           "conf_dir": str(REPO / "conf"),
                           "ansible_python_interpreter": sys.executable,
                           "singlewindow_app__bind": "198.51.100.25",
                           "singlewindow_app__console_address": address})],
        cwd=ANSIBLE, env=env, capture_output=True, text=True, check=False, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert f"singlewindow_app__console_address is {address}: the web console listens on " \
           "the node's management address only" in " ".join(out.split()), out[-3000:]
    assert not (tmp_path / "sw1.example.internal" / "singlewindow.toml").exists()


# --- IPsec for the MTA interface (issue 16): what the roles write besides swctl's files --

#: The edges that run IPsec in the inventories, and the IKE identity each gives the hub.
IPSEC_EDGES = [("single-node", "sw1.example.internal", "mail.sw.example.org", "198.51.100.25"),
               *[("multi-node", edge, edge, address) for edge, address in EDGES.items()]]
SECRET = re.compile(r'  ike-sw-(\S+) \{\n    id-hub = "(.*)"\n    id-party = "(.*)"\n'
                    r"    secret = 0s(\S+)\n  \}\n")


def _rendered(request: pytest.FixtureRequest, inventory: str) -> Path:
    root: Path = request.getfixturevalue(inventory.replace("-", "_"))
    return root


@pytest.mark.parametrize(("inventory", "edge", "local_id", "address"), IPSEC_EDGES,
                         ids=[e for _, e, _, _ in IPSEC_EDGES])
def test_edges_hold_the_parties_keys_for_root_alone(request: pytest.FixtureRequest,
                                                    inventory: str, edge: str,
                                                    local_id: str, address: str) -> None:
    """Each pre-shared key from the vault, bound to the hub's and the party's identities,
    in a file only root reads; the hub's key beside it, root's alone; the parties' CAs.
    No key in clear in any file, nor in the playbook's output (run with --diff -v)."""
    root = _rendered(request, inventory)
    swanctl = root / edge / "swanctl"
    path = swanctl / "conf.d" / "singlewindow-secrets.conf"
    for private in (path, swanctl / "private" / "singlewindow.key"):
        st = private.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 0, 0), private
    assert stat.S_IMODE((swanctl / "private").stat().st_mode) == 0o700
    text = path.read_text()
    found = {name: (hub, party, base64.b64decode(secret).decode())
             for name, hub, party, secret in SECRET.findall(text)}
    assert found == {name: (local_id, psk["id"], psk["secret"]) for name, psk in PSKS.items()}
    assert text.count("ike-sw-") == len(PSKS)
    assert (swanctl / "private" / "singlewindow.key").read_bytes() == \
        (root / "key.pem").read_bytes()
    assert (swanctl / "x509" / "singlewindow.pem").read_bytes() == \
        (root / "cert.pem").read_bytes()
    assert (swanctl / "x509ca" / "sw-ag-customs.pem").read_text() == CA_PEM
    log = (root / "ansible.log").read_text()
    assert "Write the parties' pre-shared keys" in log
    for psk in PSKS.values():
        assert psk["secret"] not in log
        for file in (root / edge).rglob("*"):
            assert not file.is_file() or psk["secret"].encode() not in file.read_bytes(), file


@pytest.mark.parametrize(("inventory", "edge", "local_id", "address"), IPSEC_EDGES,
                         ids=[e for _, e, _, _ in IPSEC_EDGES])
def test_edges_config_and_charon_settings_for_ipsec(request: pytest.FixtureRequest,
                                                    inventory: str, edge: str,
                                                    local_id: str, address: str) -> None:
    """The [ipsec] table holds what the inventory sets, no more (the proposals keep
    config.py's defaults); charon runs with the kernel's ESP and the settings docs/ipsec.md
    explains."""
    root = _rendered(request, inventory)
    toml = tomllib.loads((root / edge / "singlewindow.toml").read_text())
    assert toml["ipsec"] == {"enabled": True, "local_id": local_id, "local_addrs": [address],
                             "local_ts": [f"{address}/32"]}
    ipsec = load_config(root / edge / "singlewindow.toml").ipsec
    assert (ipsec.enabled, ipsec.local_id, ipsec.esp) == (True, local_id, "kernel")
    charon = (root / edge / "strongswan.conf").read_text()
    for line in ("make_before_break = yes", "follow_redirects = no", "install_routes = yes",
                 "install_virtual_ip = no", "send_vendor_id = no"):
        assert f"\n  {line}\n" in charon, line
    assert "bypass-lan {\n      load = no\n" in charon
    assert "kernel-libipsec" not in charon and "filelog" not in charon
    assert "journal {\n    default = 1\n" in charon


def test_nodes_without_an_mta_have_no_ipsec(multi_node: Path) -> None:
    for node in ("pop1.example.internal",):
        assert "ipsec" not in tomllib.loads((multi_node / node / "singlewindow.toml").read_text())
        assert not (multi_node / node / "swanctl").exists()


def render_ipsec(tmp_path: Path, extra: dict[str, object],
                 ok: bool = True) -> subprocess.CompletedProcess[str]:
    """tests/deploy/render-ipsec.yml: one edge's IPsec files and firewall rules."""
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text(f"not a real {name}\n")
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles"),
           "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "--diff", "-v", "-i", "localhost,",
         str(REPO / "tests/deploy/render-ipsec.yml"),
         "-e", json.dumps({"render_root": str(tmp_path),
                           "ansible_python_interpreter": sys.executable, **extra})],
        cwd=ANSIBLE, env=env, capture_output=True, text=True, check=False, timeout=600)
    assert (result.returncode == 0) == ok, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def test_a_short_pre_shared_key_is_refused_by_party_never_shown(tmp_path: Path) -> None:
    short, enough = secrets.token_hex(16)[:31], secrets.token_hex(16)
    result = render_ipsec(tmp_path, {"singlewindow_ipsec__psks": {
        "co-short": short, "co-enough": enough}}, ok=False)
    out = result.stdout + result.stderr
    assert "the key of co-short is shorter than 32 characters" in out, out[-3000:]
    assert "co-enough" not in out
    assert short not in out and enough not in out
    assert not (tmp_path / "swanctl").exists()


def test_a_pinned_pre_shared_key_without_the_partys_id_is_refused(tmp_path: Path) -> None:
    key = secrets.token_hex(24)
    result = render_ipsec(tmp_path, {"singlewindow_ipsec__psks": {
        "co-noid": {"secret": key}}}, ok=False)
    out = result.stdout + result.stderr
    assert "the entry of co-noid is the key itself" in out, out[-3000:]
    assert key not in out


def test_keys_are_bound_to_the_tunnels_in_the_database(database_config: Config,
                                                        conn: object, tmp_path: Path) -> None:
    """The vault holds keys only: the role reads each pre-shared key tunnel's party
    identity with `swctl party list` and binds the key to it; a key whose party has no
    such tunnel is not written (and said so), a tunnel without its key stops the run."""
    env = {**os.environ, "SW_STATE_DIR": str(database_config.paths.state_dir)}

    def swctl(*args: str) -> None:
        done = subprocess.run([str(BIN / "swctl"), *args], env=env, capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    for name, net, party_id, auth in (("co-a", "10.1.0.0/24", "CN=gw.a.example, O=A Co", "psk"),
                                      ("co-b", "10.2.0.0/24", "gw.b.example", "cert")):
        swctl("party", "add", name, "--kind", "company", "--peer", net,
              "--ipsec-gateway", f"203.0.113.{net.split('.')[1]}", "--ipsec-id", party_id,
              "--ipsec-auth", auth)
    keys = {"co-a": secrets.token_urlsafe(33), "co-gone": secrets.token_urlsafe(33)}
    extra = {"read_tunnels": True, "singlewindow_ipsec__swctl": str(BIN / "swctl"),
             "singlewindow_ipsec__swctl_environment": {"SW_STATE_DIR": env["SW_STATE_DIR"]},
             "singlewindow_ipsec__psks": keys}
    out = render_ipsec(tmp_path, extra).stdout
    text = (tmp_path / "swanctl" / "conf.d" / "singlewindow-secrets.conf").read_text()
    assert [(name, hub, party, base64.b64decode(secret).decode())
            for name, hub, party, secret in SECRET.findall(text)] == [
        ("co-a", "mail.sw.example.org", "CN=gw.a.example, O=A Co", keys["co-a"])]
    assert "singlewindow_ipsec__psks has a key for co-gone" in out
    assert not any(key in out for key in keys.values())

    swctl("party", "add", "co-c", "--kind", "company", "--peer", "10.3.0.0/24",
          "--ipsec-gateway", "203.0.113.3", "--ipsec-id", "gw.c.example", "--ipsec-auth", "psk")
    refused = render_ipsec(tmp_path, extra, ok=False)
    assert "The tunnel of co-c authenticates with a pre-shared key, but " \
           "singlewindow_ipsec__psks has none for it" in refused.stdout, refused.stdout[-3000:]


def test_the_mta_port_is_refused_beside_the_tunnels(tmp_path: Path) -> None:
    """With IPsec a firewall rule may not open the MTA port: it would let the parties'
    addresses in without their tunnels. Without IPsec the same rule is the lab's way in,
    and the rules neither include nor jump to a tunnels chain."""
    rule = {"name": "mta", "port": 25, "networks": ["10.1.0.0/24"]}
    refused = render_ipsec(tmp_path, {"singlewindow_firewall__rules": [rule]}, ok=False)
    out = refused.stdout + refused.stderr
    assert "singlewindow_firewall__rules: mta opens the MTA port (25) to networks" in out, \
        out[-3000:]
    assert "reached only through each party's tunnel (SPEC D11)" in out
    assert not (tmp_path / "singlewindow.nft").exists()

    render_ipsec(tmp_path, {"singlewindow_firewall__rules": [rule],
                            "singlewindow_ipsec__enabled": False})
    rules = (tmp_path / "singlewindow.nft").read_text()
    assert "tcp dport 25 ip saddr @mta_v4 accept" in rules
    assert "include" not in rules and "jump tunnels" not in rules
    assert not (tmp_path / "singlewindow-tunnels.nft").exists()


def test_with_ipsec_the_table_includes_the_tunnels_and_jumps_there(tmp_path: Path) -> None:
    """The include names the file swctl renders; before swctl has run, it holds an empty
    chain (lets nothing in), which the role never overwrites."""
    render_ipsec(tmp_path, {"singlewindow_firewall__rules": [
        {"name": "mta", "port": 25, "networks": []}]})
    rules = (tmp_path / "singlewindow.nft").read_text()
    tunnels = tmp_path / "singlewindow-tunnels.nft"
    assert f'  include "{tunnels}"\n' in rules
    chain = rules.split("chain input {", 1)[1]
    assert chain.index("jump tunnels") < chain.index("counter")
    assert "tcp dport 25" not in rules and "mta_v4" not in rules
    assert "chain tunnels {\n}\n" in tunnels.read_text()
    assert stat.S_IMODE(tunnels.stat().st_mode) == 0o640
    tunnels.write_text("chain tunnels {\n  # as swctl renders it\n}\n")
    render_ipsec(tmp_path, {})
    assert "as swctl renders it" in tunnels.read_text()


def test_userland_esp_loads_kernel_libipsec_and_a_removed_partys_ca_goes(
        tmp_path: Path) -> None:
    """esp libipsec (a lab): Debian ships the plugin off, the role turns it on; a log file
    when asked. A party's CA no longer listed is removed; files not the role's stay."""
    x509ca = tmp_path / "swanctl" / "x509ca"
    x509ca.mkdir(parents=True)
    (x509ca / "sw-gone.pem").write_text(CA_PEM)
    (x509ca / "operator.pem").write_text(CA_PEM)
    render_ipsec(tmp_path, {"singlewindow_ipsec__esp": "libipsec",
                            "singlewindow_ipsec__log_file": "/var/log/charon.log",
                            "singlewindow_ipsec__cacerts": {"co-kept": CA_PEM}})
    charon = (tmp_path / "strongswan.conf").read_text()
    assert "    kernel-libipsec {\n      load = yes\n    }\n" in charon
    assert '      path = "/var/log/charon.log"\n      default = 1\n' in charon
    assert sorted(p.name for p in x509ca.iterdir()) == ["operator.pem", "sw-co-kept.pem"]
