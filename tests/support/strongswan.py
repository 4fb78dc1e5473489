"""strongSwan in a lab root (tests/deploy/test_ipsec.py): charon started as its unit
would, swanctl talking to it over the vici socket in the root, and what ``--list-sas``
shows.

What charon needs in a Debian 12 root inside a network namespace, found by trying:
- the packages ``strongswan-swanctl charon-systemd libcharon-extra-plugins``, and
  ``libstrongswan-standard-plugins`` (its openssl and gcm plugins: without them charon
  has neither AES-GCM nor ECP-384 and every proposal here fails; no package depends on
  it);
- this kernel has XFRM but no ESP, so ESP is strongSwan's userland one: the
  ``kernel-libipsec`` plugin (``load = yes``; Debian ships it ``load = no``), which opens
  the TUN device ``ipsec0`` (``/dev/net/tun``, absent from a debootstrap root: made with
  mknod) and sends ESP in UDP 4500; charon then installs a route per remote traffic
  selector via ipsec0 in table 220, trap policies included; but libipsec sends no
  acquire for a packet that meets a trap policy without an SA (it drops it: "could not
  find an outbound IPsec SA for reqid", libipsec/ipsec_processor.c), so a trap never
  brings a tunnel up: some side must initiate;
- ``/usr/sbin/charon-systemd`` runs in the foreground without systemd; it logs to the
  journal, which a root has not, so a ``filelog`` is added; its vici socket
  (/run/charon.vici) is there about 0.2 s after the start;
- a party whose remote traffic selector is the hub's IKE address itself (the hub's MTA
  listener): kernel-libipsec's ``allow_peer_ts = yes``, and IKE kept out of table 220 by
  a mark (socket-default ``fwmark = 0x42``, kernel-netlink ``fwmark = !0x42``), or the
  route via ipsec0 swallows IKE itself. The hub needs neither: its remote selectors are
  the parties' own networks, never their gateways.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field

from tests.support.debian_root import Root

PACKAGES = ("strongswan-swanctl", "charon-systemd", "libcharon-extra-plugins",
            "libstrongswan-standard-plugins")
#: charon's log in a root (the journal's stand-in).
LOG = "/var/log/charon.log"
#: What the test adds at a party's gateway: charon's log in a file.
LOG_CONF = f"""\
# tests/support/strongswan.py: no journal in a test root, charon logs to a file.
charon-systemd {{
  filelog {{
    lab {{
      path = {LOG}
      time_format = %T
      flush_line = yes
      default = 1
      ike = 2
      cfg = 2
    }}
  }}
}}
"""
#: What a company's or an agency's network team sets on their own side (a userland-ESP
#: gateway whose remote selector is the hub's IKE address).
PARTY_CONF = """\
charon {
  plugins {
    kernel-libipsec {
      load = yes
      allow_peer_ts = yes
    }
    kernel-netlink {
      fwmark = !0x42
    }
    socket-default {
      fwmark = 0x42
    }
  }
}
"""
#: The mark IKE carries on a party's side: a socket with it skips table 220 (ipsec0).
BYPASS_MARK = 0x42


def apt_install(root: Root, proxy: str, *packages: str) -> None:
    """Packages in the root through the lab's apt proxy (http://ADDRESS:PORT)."""
    env = ["env", f"http_proxy={proxy}", "DEBIAN_FRONTEND=noninteractive"]
    root.run(*env, "apt-get", "update", "-q", timeout=900)
    root.run(*env, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages,
             timeout=900)


def prepare(root: Root, party: bool) -> None:
    """The TUN device; for a party's gateway (``party``) its own kernel-libipsec
    settings and the log file as well (the hub's come from the role:
    singlewindow_ipsec__esp, __log_file)."""
    if not (root.path / "dev/net/tun").exists():
        (root.path / "dev/net").mkdir(exist_ok=True)
        root.run("mknod", "-m", "0600", "/dev/net/tun", "c", "10", "200")
    if party:
        (root.path / "etc/strongswan.d/zz-lab-log.conf").write_text(LOG_CONF)
        (root.path / "etc/strongswan.d/zz-party.conf").write_text(PARTY_CONF)


def start_charon(root: Root) -> subprocess.Popen[bytes]:
    """charon as charon-systemd.service runs it (ExecStart=/usr/sbin/charon-systemd),
    until its vici socket answers."""
    vici = root.path / "run/charon.vici"
    vici.unlink(missing_ok=True)
    with (root.path / "var/log/charon.out").open("ab") as output:
        proc = subprocess.Popen([*root.prefix(), "/usr/sbin/charon-systemd"],
                                start_new_session=True, stdout=output, stderr=output)
    deadline = time.monotonic() + 30
    while not vici.exists():
        assert proc.poll() is None and time.monotonic() < deadline, (
            f"charon did not start in {root.path} (exit {proc.poll()}):\n{log(root)}")
        time.sleep(0.1)
    return proc


def log(root: Root) -> str:
    path = root.path / LOG.lstrip("/")
    return path.read_text(errors="replace") if path.exists() else "(no charon log)"


def swanctl(root: Root, *args: str, check: bool = True) -> str:
    """swanctl in the root (its vici socket is the root's charon); its output."""
    result = root.run("swanctl", *args, check=False, timeout=60)
    # swanctl names every plugin it could not load on stderr: noise, not an error.
    if check:
        assert result.returncode == 0, (
            f"swanctl {' '.join(args)}: {result.stdout}{result.stderr}\n"
            f"{log(root)[-3000:]}")
    return result.stdout


@dataclass(frozen=True)
class Child:
    """A CHILD_SA as ``swanctl --list-sas`` shows it."""
    ike: str
    name: str
    state: str
    local_ts: tuple[str, ...]
    remote_ts: tuple[str, ...]


@dataclass
class _Block:
    ike: str = ""
    name: str = ""
    state: str = ""
    local: tuple[str, ...] = field(default_factory=tuple)
    remote: tuple[str, ...] = field(default_factory=tuple)


def children(root: Root) -> list[Child]:
    """Every CHILD_SA charon in the root holds now."""
    found: list[Child] = []
    current: _Block | None = None
    ike = ""
    for line in swanctl(root, "--list-sas").splitlines():
        if head := re.match(r"^(\S+): #\d+, ", line):
            ike = head.group(1)
        elif child := re.match(r"^  (\S+): #\d+, reqid \d+, (\w+),", line):
            if current:
                found.append(Child(current.ike, current.name, current.state,
                                   current.local, current.remote))
            current = _Block(ike, child.group(1), child.group(2))
        elif current and (ts := re.match(r"^    (local|remote) +(.+)$", line)):
            if ts.group(1) == "local":
                current.local = tuple(ts.group(2).split())
            else:
                current.remote = tuple(ts.group(2).split())
    if current:
        found.append(Child(current.ike, current.name, current.state, current.local,
                           current.remote))
    return found


def wait_for_child(root: Root, name: str, timeout: float = 30) -> Child:
    """The installed CHILD_SA ``name``, once there."""
    deadline = time.monotonic() + timeout
    while True:
        for child in children(root):
            if child.name == name and child.state == "INSTALLED":
                return child
        assert time.monotonic() < deadline, (
            f"no CHILD_SA {name} in {root.path}:\n{swanctl(root, '--list-sas')}\n"
            f"{log(root)[-4000:]}")
        time.sleep(0.2)


def wait_for_log(root: Root, needle: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log(root):
        assert time.monotonic() < deadline, (
            f"not in charon's log in {root.path}: {needle!r}\n{log(root)[-4000:]}")
        time.sleep(0.2)
