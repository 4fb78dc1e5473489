"""A lab network for the multi-node converge (tests/deploy/test_multinode.py): one network
namespace per node, each joined by a veth pair to one bridge in the host's namespace.

Every interface has an address in 10.0.0.0/12, a test range unused here (the host's own
network is elsewhere): the nodes the inventory's addresses, the host a management
address and the MTA parties' addresses, so the test process plays the operator, the
companies and the agencies. One L2 segment, no router, no route out of a namespace.
Names carry the test's pid (``sw<pid>-edge1``, interfaces ``sw<pid>v0``), so two runs
never share one; everything is removed in teardown, even after a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

IP = shutil.which("ip") or "/usr/sbin/ip"
#: The lab's range: every address is on-link on the bridge.
PREFIX = 12


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([IP, *args], capture_output=True, text=True, check=False,
                            timeout=60)
    if check:
        assert result.returncode == 0, f"ip {' '.join(args)}: {result.stderr}"
    return result


@dataclass(frozen=True)
class Node:
    name: str  # the inventory's name, e.g. edge1.example.internal
    address: str  # the inventory's ansible_host
    netns: str

    @property
    def short(self) -> str:
        return self.name.split(".", 1)[0]


@dataclass
class Network:
    tag: str
    bridge: str
    host_addresses: tuple[str, ...]
    nodes: dict[str, Node] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)

    def hosts_file(self, others: bool = True) -> str:
        """/etc/hosts for a node: loopback, and (``others``) all the nodes by name."""
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        if others:
            lines += [f"{n.address}\t{n.name} {n.short}" for n in self.nodes.values()]
        return "\n".join(lines) + "\n"


def namespaces() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line}


@contextlib.contextmanager
def network(nodes: dict[str, str], host_addresses: tuple[str, ...]) -> Iterator[Network]:
    """Namespaces and veths for ``nodes`` ({inventory name: address}) on one bridge that
    carries ``host_addresses`` (the first one is the host's management address)."""
    assert shutil.which("ip"), "ip is missing (iproute2)"
    tag = f"sw{os.getpid()}"
    net = Network(tag, f"{tag}br", host_addresses)
    taken = ip("-o", "addr", "show", "to", f"{host_addresses[0]}/{PREFIX}").stdout
    assert not taken, f"another lab (or a network) already has the range: {taken}"
    try:
        ip("link", "add", net.bridge, "type", "bridge")
        net.links.append(net.bridge)
        first, *others = host_addresses
        ip("addr", "add", f"{first}/{PREFIX}", "dev", net.bridge)
        for address in others:
            ip("addr", "add", f"{address}/32", "dev", net.bridge)
        ip("link", "set", net.bridge, "up")
        for index, (name, address) in enumerate(nodes.items()):
            node = Node(name, address, f"{tag}-{name.split('.', 1)[0]}")
            ip("netns", "add", node.netns)
            net.nodes[name] = node
            outside, inside = f"{tag}v{index}", f"{tag}p{index}"
            ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            net.links.append(outside)
            ip("link", "set", inside, "netns", node.netns)
            ip("-n", node.netns, "link", "set", inside, "name", "eth0")
            ip("-n", node.netns, "addr", "add", f"{address}/{PREFIX}", "dev", "eth0")
            ip("-n", node.netns, "link", "set", "eth0", "up")
            ip("-n", node.netns, "link", "set", "lo", "up")
            ip("link", "set", outside, "master", net.bridge, "up")
        yield net
    finally:
        for link in reversed(net.links):
            ip("link", "del", link, check=False)
        for node in net.nodes.values():
            ip("netns", "del", node.netns, check=False)
        left = {n.netns for n in net.nodes.values()} & namespaces()
        assert not left, f"network namespaces left: {left}"


def chroot_wrapper(path: Path, node: Node, root: Path) -> Path:
    """The ``ansible_chroot_exe`` of a node: Ansible's chroot connection calls it as
    ``chroot DIR COMMAND...`` with DIR the inventory's address (a symlink to the root in
    the controller's working directory); it runs COMMAND in the node's root and network
    namespace. ``ip netns exec`` fails when the namespace is missing: never the host's."""
    path.write_text(
        "#!/bin/sh\n"
        f"# {node.name}: Ansible's chroot connection, inside netns {node.netns}.\n"
        f'[ "$1" = "{node.address}" ] || {{ echo "not {node.address}: $1" >&2; exit 97; }}\n'
        "shift\n"
        f"exec {IP} netns exec {node.netns} {shutil.which('chroot')} {root} \"$@\"\n")
    path.chmod(0o755)
    return path
