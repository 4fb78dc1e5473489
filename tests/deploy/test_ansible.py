"""The Ansible roles (ansible/): lint, syntax, and the multi-node inventory rendered by the
roles' own tasks and checked by Postfix and Dovecot themselves.

Nothing here skips: ansible-lint, ansible-playbook (from the project's test extra),
postfix and doveconf (scripts/install) missing is a failure, so CI cannot go green
without them. The converge into a debootstrapped Debian root is test_converge.py.
"""

from __future__ import annotations

import grp
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent
INVENTORIES = ("single-node", "multi-node")


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


@pytest.fixture(scope="module")
def multi_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every node of the multi-node inventory, rendered by the roles' own tasks; the
    roles' handlers run `postfix check` and `doveconf -n` on the rendered files."""
    root = tmp_path_factory.mktemp("multi-node")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=edge.test", "-keyout", str(root / "key.pem"),
                    "-out", str(root / "cert.pem")], check=True, capture_output=True)
    run([str(BIN / "ansible-playbook"), "-i", "inventories/multi-node",
         str(REPO / "tests/deploy/render-multi-node.yml"),
         "-e", f"render_root={root}", "-e", f"swctl={BIN / 'swctl'}",
         "-e", f"conf_dir={REPO / 'conf'}", "-e", f"ansible_python_interpreter={sys.executable}",
         # A throwaway for the test; operators give theirs from Ansible Vault.
         "-e", "vault_singlewindow_database_password=render-test-only"])
    return root


@pytest.mark.parametrize("edge", ["edge1.example.internal", "edge2.example.internal"])
def test_edges_postfix_check_and_proxy(multi_node: Path, edge: str) -> None:
    postfix = multi_node / edge / "postfix"
    subprocess.run(["postfix", "-c", str(postfix), "check"], check=True)
    main_cf = (postfix / "main.cf").read_text()
    assert f"relay_recipient_maps = proxy:pgsql:{postfix}/pgsql-logical.cf" in main_cf
    assert "hosts = inet:db1.example.internal:5432" in (postfix / "pgsql-logical.cf").read_text()
    dovecot = multi_node / edge / "dovecot" / "dovecot.conf"
    subprocess.run(["doveconf", "-c", str(dovecot), "-n"], check=True, capture_output=True)
    strong = (multi_node / edge / "dovecot" / "sql-strong.conf.ext").read_text()
    assert "'Y' AS proxy, '10.0.3.10' AS host" in strong


def test_pop3_backend_trusts_edges_only(multi_node: Path) -> None:
    dovecot = multi_node / "pop1.example.internal" / "dovecot" / "dovecot.conf"
    shown = subprocess.run(["doveconf", "-c", str(dovecot), "-n"], check=True,
                           capture_output=True, text=True).stdout
    assert "login_trusted_networks = 10.0.2.0/24" in shown
    assert not (multi_node / "pop1.example.internal" / "postfix").exists()


def test_database_node_allows_hub_networks_by_password(multi_node: Path) -> None:
    hba = (multi_node / "db1.example.internal" / "postgresql" / "pg_hba.conf").read_text()
    assert "hostssl singlewindow  sw  10.0.2.0/24  scram-sha-256" in hba
    assert "hostssl singlewindow  sw  10.0.3.0/24  scram-sha-256" in hba
    assert "render-test-only" not in hba


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
