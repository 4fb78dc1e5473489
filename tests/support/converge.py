"""What the converge tests in network namespaces share (tests/deploy/test_multinode.py,
test_ipsec.py): the lab of roots in namespaces, the package's dependencies as a
wheelhouse (the roots have no route out), the package's own wheel, and
``ansible/site.yml`` applied through the chroot connection with apt going through the
lab's proxy (tests/support/apt_proxy.py)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.apt_proxy import ProxyServer, apt_proxy
from tests.support.debian_root import CACHE_DIR, Root, debian_root, require_tools
from tests.support.lab import Network, network

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent
#: Where the wheelhouse is copied in each root that installs the package.
WHEELHOUSE = "/opt/singlewindow/wheelhouse"


def wheelhouse() -> Path:
    """The package's dependencies as wheels, built once per dependency set on the host
    (host and roots are both Debian 12 with CPython 3.11)."""
    key = hashlib.sha256(b"".join((REPO / f).read_bytes()
                                  for f in ("pyproject.toml", "setup.py"))).hexdigest()[:12]
    house = CACHE_DIR / f"wheelhouse-{key}"
    if not house.is_dir():
        partial = Path(tempfile.mkdtemp(dir=CACHE_DIR, prefix="wheelhouse-partial-"))
        subprocess.run([str(BIN / "pip"), "wheel", "-q", "-w", str(partial), str(REPO)],
                       check=True, capture_output=True, timeout=1200)
        for own in partial.glob("singlewindow-*.whl"):
            own.unlink()  # built fresh on every run
        partial.rename(house)
    return house


def own_wheel(dist: Path) -> Path:
    """The package itself as a wheel in ``dist`` (the role's singlewindow_app__package)."""
    subprocess.run([str(BIN / "pip"), "wheel", "--no-deps", "-q", "-w", str(dist),
                    str(REPO)], check=True, capture_output=True)
    [wheel] = dist.glob("singlewindow-*.whl")
    return wheel


def playbook(inventory: str, controller: Path, proxy: str, *args: str) -> str:
    """``site.yml`` with ``inventories/INVENTORY`` run from ``controller`` (where the
    chroot connection's hosts are symlinks to the roots), apt through ``proxy``
    (http://ADDRESS:PORT); ``args`` are more ansible-playbook options (``-e @FILE``)."""
    # The chroot connection passes this environment into the roots: apt's proxy, and no
    # host paths for pip.
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
    env = {**env, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
           "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0", "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           # Each module through the connection's stdin: no temporary files to put,
           # chmod and remove in the root, a third of the chroot calls.
           "ANSIBLE_PIPELINING": "1",
           # A node's facts gathered once per run, not again in each of site.yml's plays.
           "ANSIBLE_GATHERING": "smart",
           "http_proxy": proxy}
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(ANSIBLE / "inventories" / inventory),
         str(ANSIBLE / "site.yml"), *args],
        cwd=controller, env=env, capture_output=True, text=True, check=False,
        timeout=2400)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"ansible-playbook failed:\n{output[-8000:]}"
    return output


@dataclass
class LabRoots:
    """The lab's namespaces and bridge, a Debian root per node (by inventory name), the
    apt proxy on the bridge, the module's work folder, and how long each step took."""
    net: Network
    roots: dict[str, Root]
    work: Path
    proxy: ProxyServer
    times: dict[str, float] = field(default_factory=dict)

    @property
    def proxy_url(self) -> str:
        return f"http://{self.net.host_addresses[0]}:{self.proxy.server_address[1]}"


@contextlib.contextmanager
def lab_roots(label: str, nodes: dict[str, str], host_addresses: tuple[str, ...],
              packaged: Collection[str], hosts_others: bool,
              pytestconfig: pytest.Config) -> Iterator[LabRoots]:
    """``nodes`` ({inventory name: address}) each in a root in its namespace, on one
    bridge carrying ``host_addresses`` (the apt proxy on the first); the wheelhouse in
    the roots of the nodes in ``packaged``; /etc/hosts naming the other nodes too
    (``hosts_others``). Everything torn down after, even after a failure; the times
    printed as ``LABEL: step N s, ...``."""
    started = time.monotonic()
    require_tools("ip", "nft")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir="/tmp", prefix="swl-"))
    times: dict[str, float] = {}
    try:
        with contextlib.ExitStack() as stack:
            net = stack.enter_context(network(nodes, host_addresses))
            proxy = stack.enter_context(apt_proxy(host_addresses[0], CACHE_DIR / "debs"))
            house = wheelhouse()
            roots = {}
            for name, node in net.nodes.items():
                root = stack.enter_context(debian_root(f"swl-{node.short}-", node.netns))
                (root.path / "etc/hosts").write_text(net.hosts_file(others=hosts_others))
                if name in packaged:
                    shutil.copytree(house, root.path / WHEELHOUSE.lstrip("/"))
                roots[name] = root
            times["lab"] = time.monotonic() - started
            yield LabRoots(net, roots, work, proxy, times)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        times["module"] = time.monotonic() - started
        shown = ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
        capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(f"\n{label}: {shown}")


def root_vars(wheel: Path, chroot_exe: str) -> dict[str, object]:
    """The extra vars every lab root needs: the chroot connection through ``chroot_exe``
    (the node's wrapper, tests/support/lab.py), the package from ``wheel`` and the
    wheelhouse, no systemd (the test starts the services), the firewall loaded into the
    node's own namespace."""
    return {
        "ansible_connection": "community.general.chroot",
        "ansible_chroot_exe": chroot_exe,
        "ansible_python_interpreter": "/usr/bin/python3",
        "singlewindow_app__package": str(wheel),
        "singlewindow_app__pip_extra_args": f"--no-index --find-links {WHEELHOUSE}",
        "singlewindow_app__systemd": False,
        "singlewindow_postgresql__systemd": False,
        "singlewindow_postfix__systemd": False,
        "singlewindow_dovecot__systemd": False,
        # The rules go into the node's own namespace; no systemd to enable them at boot.
        "singlewindow_firewall__apply": True,
        "singlewindow_firewall__systemd": False,
    }


def xml_mail(sender: str, to: str, subject: str, body: bytes) -> bytes:
    """An MTA party's message as the lab tests send it: the XML ``body`` as the whole of
    a message from ``sender`` to ``to``."""
    lines = [f"From: <{sender}>", f"To: <{to}>", f"Subject: {subject}",
             f"Message-ID: <{secrets.token_hex(8)}@lab.example>",
             "Date: Mon, 30 Nov 2026 12:00:00 +0000", "MIME-Version: 1.0",
             "Content-Type: application/xml; charset=utf-8"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
