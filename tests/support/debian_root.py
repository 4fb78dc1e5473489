"""Debian 12 roots for the converge tests (tests/deploy): one ``debootstrap`` cached as a
tarball, extracted per node into a short /tmp folder, with /proc, /dev/pts and /dev/shm
mounted for the run; commands and services run inside with ``chroot`` (and, for a node
of the multi-node lab, inside its network namespace with ``ip netns exec``).

Teardown stops every process whose root is the node's by its pid and unmounts what was
mounted; a mount left behind is a failure. Nothing here skips: a missing tool fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CACHE_DIR = Path(os.environ.get("SW_CONVERGE_CACHE", "/var/cache/singlewindow"))
BASE_TAR = CACHE_DIR / "bookworm-base.tar"
MIRROR = os.environ.get("SW_DEBIAN_MIRROR", "http://deb.debian.org/debian")
#: What Ansible needs in the root: Python, python3-apt for the apt module, sudo for
#: ``become_user: postgres``, CA certificates for pip's PyPI.
INCLUDE = "python3,python3-apt,sudo,ca-certificates"
#: Mounts the converge needs, in mount order.
MOUNTS = (("proc", "proc", "proc", "nosuid,nodev,noexec"),
          ("devpts", "dev/pts", "devpts", "newinstance,ptmxmode=0666,mode=0620"),
          ("tmpfs", "dev/shm", "tmpfs", "mode=1777"))
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
IP = shutil.which("ip") or "/usr/sbin/ip"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def build_base() -> None:
    """debootstrap once into the cache (a tarball, so each run starts pristine)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir="/tmp", prefix="swc-base-"))
    try:
        # mkdtemp makes 0700; the tarball's "./" entry carries this mode to every root.
        make_debian_root_dir(work)
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={INCLUDE}",
                        "bookworm", str(work), MIRROR], check=True, capture_output=True,
                       timeout=1800)
        policy = work / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\n# Single Window converge test: never start services.\n"
                          "exit 101\n")
        policy.chmod(0o755)
        shutil.rmtree(work / "var/cache/apt/archives", ignore_errors=True)
        (work / "var/cache/apt/archives/partial").mkdir(parents=True)
        partial = BASE_TAR.with_suffix(".tar.partial")
        subprocess.run(["tar", "--numeric-owner", "-C", str(work), "-cf", str(partial), "."],
                       check=True)
        partial.rename(BASE_TAR)
    finally:
        assert not mounts_under(work), f"debootstrap left mounts under {work}"
        shutil.rmtree(work, ignore_errors=True)


def make_debian_root_dir(path: Path) -> None:
    """The root directory as debootstrap leaves ``/``: root's, mode 0755. Without it no
    user but root can reach anything inside (``pg_createcluster`` as postgres fails)."""
    os.chown(path, 0, 0)
    path.chmod(0o755)


def mounts_under(root: Path) -> list[str]:
    shown = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], check=True,
                           capture_output=True, text=True).stdout.split()
    return [m for m in shown if m == str(root) or m.startswith(f"{root}/")]


def pids_in(root: Path) -> list[int]:
    """Processes whose root directory is ``root``: the ones a test started in it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "root") == str(root):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def stop_pids(root: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids_in(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while pids_in(root) and time.monotonic() < deadline:
            time.sleep(0.2)


@dataclass
class Root:
    """A Debian root; with ``netns``, everything in it runs in that network namespace
    (``ip netns exec`` fails if the namespace is gone: never the host's network)."""

    path: Path
    netns: str | None = None
    mounted: list[Path] = field(default_factory=list)

    def prefix(self, user: str | None = None, group: str | None = None,
               groups: str | None = None) -> list[str]:
        """The argv that enters the root (as ``user``:``group``, with ``groups``)."""
        cmd = [IP, "netns", "exec", self.netns] if self.netns else []
        cmd.append(CHROOT)
        if user:
            cmd.append(f"--userspec={user}:{group or user}")
        if groups:
            cmd.append(f"--groups={groups}")
        return [*cmd, str(self.path)]

    def run(self, *argv: str, user: str | None = None, group: str | None = None,
            input_: str | None = None, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """A command inside the root (as ``user`` and ``group``, by default the user's
        name: the unit's User=/Group=)."""
        result = subprocess.run([*self.prefix(user, group), *argv], input=input_,
                                capture_output=True, text=True, check=False,
                                timeout=timeout, env={"PATH": PATH, "LANG": "C.UTF-8"})
        if check:
            assert result.returncode == 0, (
                f"{argv} failed in {self.path}:\n{result.stdout}\n{result.stderr}")
        return result

    def unit_fields(self, name: str) -> dict[str, str]:
        """The [Service] settings of an installed unit (the last one of each name wins)."""
        fields: dict[str, str] = {}
        unit = self.path / f"etc/systemd/system/{name}.service"
        for line in unit.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.startswith("#"):
                fields[key.strip()] = value.strip()
        return fields

    def start_notify_daemon(self, name: str) -> subprocess.Popen[bytes]:
        """Start a Type=notify unit's ExecStart as its User=/Group=/SupplementaryGroups=
        with its Environment= and AmbientCapabilities=, and wait for READY=1 on a
        NOTIFY_SOCKET, as systemd would."""
        unit = self.unit_fields(name)
        notify_path = self.path / f"run/swc-notify-{name}"
        notify_path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            notify_path.chmod(0o777)
            notify.settimeout(1)
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                   "NOTIFY_SOCKET": f"/run/swc-notify-{name}"}
            for setting in shlex.split(unit.get("Environment", "")):
                key, _, value = setting.partition("=")
                env[key] = value
            groups = ",".join(unit.get("SupplementaryGroups", "").split()) or None
            caps = [c.lower().removeprefix("cap_")
                    for c in unit.get("AmbientCapabilities", "").split()]
            if caps:
                # AmbientCapabilities= (a port below 1024): setpriv in the root keeps
                # them across the change of user, as systemd does.
                wanted = ",".join(f"+{c}" for c in caps)
                enter = [*self.prefix(), "setpriv", f"--reuid={unit['User']}",
                         f"--regid={unit['Group']}",
                         f"--groups={groups}" if groups else "--clear-groups",
                         f"--inh-caps={wanted}", f"--ambient-caps={wanted}"]
            else:
                enter = self.prefix(unit["User"], unit["Group"], groups)
            # What the journal would hold: the daemon's standard output and error.
            journal = self.path / f"run/swc-{name}.log"
            with journal.open("ab") as output:
                proc = subprocess.Popen(
                    [*enter, *shlex.split(unit["ExecStart"])],
                    env=env, start_new_session=True, stdout=output, stderr=output)
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(TimeoutError):
                    if b"READY=1" in notify.recv(4096):
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise AssertionError(
                        f"{name} sent no READY=1 (exit status {proc.poll()}) in "
                        f"{self.path}:\n{journal.read_text(errors='replace')[-3000:]}")
        return proc

    def spawn(self, *argv: str) -> subprocess.Popen[bytes]:
        """A foreground service as root in the root (``dovecot -F``)."""
        return subprocess.Popen([*self.prefix(), *argv], start_new_session=True,
                                env={"PATH": PATH})


def require_tools(*more: str) -> None:
    for tool in ("debootstrap", "chroot", "tar", "mount", "umount", "findmnt", *more):
        assert shutil.which(tool), f"{tool} is missing (scripts/install)"


@contextlib.contextmanager
def debian_root(prefix: str = "swc-", netns: str | None = None) -> Iterator[Root]:
    """A fresh Debian 12 root from the cached debootstrap, with /proc and /dev/pts; in
    teardown every process in it is stopped by its pid and everything unmounted."""
    require_tools()
    if not BASE_TAR.exists():
        build_base()
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix=prefix))
    the_root = Root(path, netns)
    try:
        subprocess.run(["tar", "--numeric-owner", "-C", str(path), "-xpf", str(BASE_TAR)],
                       check=True)
        # After tar -p, which restores the "./" entry's mode onto the root: a cache made
        # before build_base set it (0700 from mkdtemp) still gives a usable root.
        make_debian_root_dir(path)
        shutil.copyfile("/etc/resolv.conf", path / "etc/resolv.conf")
        # The site's own CAs (a TLS-inspecting egress proxy), as an operator adds them.
        local_ca = Path("/usr/local/share/ca-certificates")
        if any(local_ca.glob("*.crt")):
            shutil.copytree(local_ca, path / "usr/local/share/ca-certificates",
                            dirs_exist_ok=True)
            Root(path).run("update-ca-certificates")
        for source, target, fstype, options in MOUNTS:
            where = path / target
            where.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "-t", fstype, "-o", options, source, str(where)],
                           check=True)
            the_root.mounted.append(where)
        yield the_root
    finally:
        try:
            if (path / "usr/bin/pg_ctlcluster").exists():
                the_root.run("pg_ctlcluster", "15", "main", "stop", "-m", "fast",
                             check=False)
        finally:
            stop_pids(path)
            for where in reversed(the_root.mounted):
                subprocess.run(["umount", str(where)], check=False)
            left = mounts_under(path)
            if not left:
                shutil.rmtree(path, ignore_errors=True)
        assert not left, f"mounts left under {path}: {left}"


# --- What ansible-playbook reports -----------------------------------------------------

def recaps(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of a run, by host: {host: {"ok": n, "changed": n, ...}}."""
    _, sep, tail = output.rpartition("PLAY RECAP ")
    assert sep, f"no PLAY RECAP in:\n{output[-4000:]}"
    found = {}
    for line in tail.splitlines()[1:]:
        host, colon, counts = line.partition(":")
        if not colon or "=" not in counts:
            continue
        found[host.strip()] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    assert found, f"an empty PLAY RECAP in:\n{output[-4000:]}"
    return found


def changed_tasks(output: str) -> list[str]:
    """The tasks (and handlers) that reported ``changed`` in a run, with their host."""
    found, task = [], ""
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.rstrip(" *")
        elif line.startswith("changed:"):
            found.append(f"{task}: {line}")
    return found
