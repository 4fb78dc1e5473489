"""Configuration files of a deployed node, rendered from the same ``conf/`` templates.

The local stack (``stack.py``) renders ``conf/postfix`` and ``conf/dovecot`` into its
state directory for private instances. A node deployed by Ansible (SPEC D8) renders the
very same templates, with the same context (:mod:`singlewindow.node`), into the
distribution's directories (``/etc/postfix``, ``/etc/dovecot``) for the system services:
``private_instance`` is off, so Postfix keeps its Debian queue and Dovecot its
``base_dir``. The Ansible roles call
``swctl render``, which is :func:`render_target`; what differs per node in a multi-node
hub (SPEC D9: the POP3 proxy's backend, the proxies' networks) comes in as
:class:`NodeRole`. An edge's IPsec tunnels (SPEC D11) are rendered the same way from the
tunnels in the database: strongSwan's connections and the firewall's tunnels chain.

A file is written only when its text, mode or group differs, so a second run changes
nothing and Ansible reports ``changed=0``.
"""

from __future__ import annotations

import grp
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from singlewindow import ipsec, render
from singlewindow.config import Config
from singlewindow.node import dovecot_context
from singlewindow.node import template_context as base_context
from singlewindow.notices import bounce

POSTFIX_DIR = Path("/etc/postfix")


class DeployError(Exception):
    """A node's configuration cannot be rendered; the text says what to do."""


@dataclass(frozen=True, slots=True)
class Output:
    """One rendered file: template, name in the target directory, mode, owning group.

    Files that may carry the database password are not world-readable.
    """

    template: str
    name: str
    mode: int = 0o644
    group: str = "root"
    #: Postfix's DSN texts, a notice (:mod:`singlewindow.notices.bounce`): the package's
    #: template or the operator's own in ``[notices] templates_dir``, not one of ``conf/``.
    notice: bool = False


#: What ``swctl render --target`` writes, per target.
TARGETS: dict[str, tuple[Output, ...]] = {
    "postfix": (
        Output("postfix/main.cf.j2", "main.cf"),
        Output("postfix/master.cf.j2", "master.cf"),
        Output(bounce.TEMPLATE, bounce.FILE, notice=True),
        Output("postfix/command-filter.j2", "command-filter"),
    ),
    "dovecot": (
        # dovecot-lda runs as the maildrop user and reads dovecot.conf (no secrets in it).
        Output("dovecot/dovecot.conf.j2", "dovecot.conf"),
        Output("dovecot/sql-strong.conf.ext.j2", "sql-strong.conf.ext", 0o640, "dovecot"),
        Output("dovecot/sql-digest-md5.conf.ext.j2", "sql-digest-md5.conf.ext", 0o640,
               "dovecot"),
        Output("dovecot/sql-userdb.conf.ext.j2", "sql-userdb.conf.ext", 0o640, "dovecot"),
    ),
    # Issue 16 (SPEC D11), from the tunnels in the database: strongSwan's connections
    # (/etc/swanctl/conf.d) and the firewall's tunnels chain (/etc/nftables.d). Neither
    # holds a secret; both describe who may reach the MTA port, so only root reads them.
    "ipsec": (Output("strongswan/singlewindow.conf.j2", "singlewindow.conf", 0o640),),
    "tunnels": (Output("nftables/singlewindow-tunnels.nft.j2", "singlewindow-tunnels.nft",
                       0o640),),
}
#: The targets rendered from the tunnels in the database (:mod:`singlewindow.ipsec`).
TUNNEL_TARGETS = ("ipsec", "tunnels")


@dataclass(frozen=True, slots=True)
class NodeRole:
    """What one node of a multi-node hub adds to the shared configuration (SPEC D9)."""

    #: On an edge: the name of the Dovecot backend that holds the POP3 maildrops (Dovecot
    #: proxying). The proxy speaks TLS to it and checks that its certificate, signed by
    #: ``tls.ca_file``, carries this name: the clients' USER/PASS never cross in clear.
    pop3_backend: str | None = None
    #: On an edge: the backend's address, when its name does not resolve to it.
    pop3_backend_address: str | None = None
    #: On the backend: the edges' addresses, each one host, whose proxied logins Dovecot
    #: trusts (login_trusted_networks); nobody else is trusted, and a login on a
    #: connection from any other address is refused (the passdbs' allow_real_nets).
    pop3_proxies: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for text in (*self.pop3_proxies, *filter(None, [self.pop3_backend_address])):
            try:
                ipaddress.ip_address(text)
            except ValueError:
                raise DeployError(
                    f"{text!r} is not one address: the POP3 backend trusts its edges one "
                    "by one, never a network") from None


def template_context(config: Config, node: NodeRole = NodeRole(), *,
                     postfix_dir: Path = POSTFIX_DIR) -> dict[str, Any]:
    """Every node's context (:func:`singlewindow.node.template_context`), with the paths
    of a system-wide installation."""
    ctx = base_context(config)
    ctx["postfix"] = {
        **ctx["postfix"],
        "private_instance": False,
        # master.cf binds each listener to listeners.bind (which may be 0.0.0.0).
        "inet_interfaces": "all",
        "config_directory": postfix_dir,
        # The transport reads this log after a crash (SPEC D4), so both take it from
        # the one config file.
        "maillog_file": config.postfix_maillog,
        "maillog_prefix": config.postfix_maillog.parent,
    }
    ctx["dovecot"] = {
        **dovecot_context(config, private=False),
        "proxy_host": node.pop3_backend,
        "proxy_hostip": node.pop3_backend_address,
        "login_trusted_networks": list(node.pop3_proxies),
    }
    if node.pop3_backend and config.tls.ca_file is None:
        raise DeployError("an edge verifies the POP3 backend's certificate: set "
                          "[tls] ca_file to the deployment's CA")
    return ctx


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise DeployError(f"group {name!r} does not exist: install its package first") \
            from None


def _context(config: Config, target: str, dest: Path, node: NodeRole,
             tunnels: list[ipsec.Tunnel] | None) -> dict[str, Any]:
    if target not in TUNNEL_TARGETS:
        return template_context(config, node, postfix_dir=dest)
    if not config.ipsec.enabled:
        raise DeployError(f"--target {target}: [ipsec] enabled is false in this "
                          "node's configuration (the local stack has no IPsec)")
    if tunnels is None:
        raise DeployError(f"--target {target} is rendered from the tunnels in the "
                          "database")
    return ipsec.template_context(config, tunnels)


def render_target(config: Config, target: str, dest: Path, *, node: NodeRole = NodeRole(),
                  conf_dir: Path = render.CONF_DIR, check: bool = False,
                  tunnels: list[ipsec.Tunnel] | None = None) -> list[Path]:
    """Render ``target``'s files into ``dest``; return those that changed (or would).
    ``tunnels``: for the targets in :data:`TUNNEL_TARGETS`, every tunnel in the store."""
    ctx = _context(config, target, dest, node, tunnels)
    changed: list[Path] = []
    for out in TARGETS[target]:
        path = dest / out.name
        text = (bounce.text(ctx, config.notices.templates_dir) if out.notice
                else render.render(out.template, ctx, conf_dir))
        gid = _group_id(out.group)
        try:
            st = path.stat()
            same = (path.read_text(encoding="utf-8") == text
                    and (st.st_mode & 0o7777) == out.mode and st.st_gid == gid)
        except (OSError, UnicodeDecodeError):
            same = False
        if same:
            continue
        changed.append(path)
        if not check:
            render.write_atomic(path, text, out.mode)
            os.chown(path, 0, gid)
    return changed
