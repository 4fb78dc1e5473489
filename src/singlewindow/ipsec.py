"""IPsec for the MTA interface (SPEC D11, issue 16): one tunnel per MTA party.

On a deployed edge each MTA party (a company or agency with ``--peer`` networks) reaches
port 25 only through its own IPsec tunnel: strongSwan's connection ``sw-NAME``, whose
remote traffic selectors are the party's peer networks, and a firewall rule that takes
the MTA port only from packets that came through that tunnel. Both are rendered from the
store (:mod:`singlewindow.store.tunnels`) by ``swctl render --target ipsec|tunnels``
(:mod:`singlewindow.deploy`), from ``conf/strongswan/`` and ``conf/nftables/``.

This module holds the decisions, without I/O: what a valid IKE identity and gateway are,
what a connection is called, which change a command made and what ``swctl`` prints about
it, and the two templates' context. The local stack runs on loopback without IPsec.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from singlewindow.config import Config

#: How a party authenticates (``--ipsec-auth``): a pre-shared key (from Ansible Vault, in
#: the secrets file the role writes) or a certificate issued by the party's CA.
AUTHS = ("psk", "cert")
#: ``[ipsec] esp``: the kernel's ESP (XFRM), or strongSwan's userland ESP (kernel-libipsec
#: on a TUN device), for test labs and kernels without ESP.
ESP_MODES = ("kernel", "libipsec")
#: The TUN device kernel-libipsec creates; decrypted packets arrive on it.
LIBIPSEC_DEVICE = "ipsec0"
#: What the operator (or the singlewindow_ipsec role) does after a connection changed.
APPLY_HINT = ("ipsec: apply with: swctl render --target ipsec --dest /etc/swanctl/conf.d "
              "&& swanctl --load-all (the singlewindow_ipsec role does both)")
#: Why an MTA party needs a tunnel when ``[ipsec] enabled`` is true.
TUNNEL_REQUIRED = "port 25 is reachable only through IPsec on this hub"

#: Characters that would end a quoted swanctl.conf value or open or close a section.
_ID_FORBIDDEN = frozenset('"\\{}')


@dataclass(frozen=True, slots=True)
class Tunnel:
    """One party's tunnel, as stored, with the party's peer networks."""

    party: str
    reqid: int
    gateway: str
    remote_id: str
    auth: str
    peers: tuple[str, ...] = ()

    @property
    def connection(self) -> str:
        return connection_name(self.party)

    @property
    def settings(self) -> tuple[str, str, str]:
        """What the operator sets: a change of any of these changes the connection."""
        return (self.gateway, self.remote_id, self.auth)

    def peers_of(self, version: int) -> list[str]:
        return [p for p in self.peers if ipaddress.ip_network(p).version == version]


def connection_name(party: str) -> str:
    """The swanctl connection (and CHILD_SA) of ``party``'s tunnel."""
    return f"sw-{party}"


def name_problem(party: str) -> str | None:
    """swanctl.conf section names cannot hold a dot (strongswan.conf(5), "SYNTAX"), and
    the connection is named after the party."""
    if "." in party:
        return (f"party name {party!r} has a '.', which a swanctl connection name cannot "
                "hold: a party with a tunnel needs a name without one")
    return None


def id_problem(text: str) -> str | None:
    """Why ``text`` cannot be an IKE identity in swanctl.conf, or None.

    An identity is an address, FQDN, email address or distinguished name
    (``C=NL, O=Company A, CN=gw.a.example``); the template quotes it, so spaces and
    commas are fine, but not what would end the quoted value or a section.
    """
    if not text:
        return "is empty"
    if text != text.strip():
        return "has leading or trailing white space"
    if len(text) > 255:
        return "is longer than 255 characters"
    bad = next((c for c in text if c in _ID_FORBIDDEN or not c.isprintable()), None)
    if bad is not None:
        return f"has {bad!r}, which a swanctl.conf value cannot hold"
    return None


def gateway_problem(text: str) -> str | None:
    """Why ``text`` cannot be a party's IKE endpoint, or None: one unicast address."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return "is not one IP address (a gateway is an address, not a network or a name)"
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        return "is not a unicast address of another host"
    return None


def change(before: Tunnel | None, after: Tunnel | None) -> str | None:
    """What happened to a connection: ``added``, ``changed``, ``removed``, or None when
    nothing did (setting a tunnel to the values it has is no change)."""
    if before is None:
        return None if after is None else "added"
    if after is None:
        return "removed"
    return None if before.settings == after.settings else "changed"


def report(party: str, what: str | None) -> list[str]:
    """What ``swctl`` prints about the connection: nothing when it did not change."""
    if what is None:
        return []
    return [f"ipsec: connection {connection_name(party)} {what}", APPLY_HINT]


def required_problem(enabled: bool, peers: Iterable[str], has_tunnel: bool) -> str | None:
    """With ``[ipsec] enabled``, an MTA party (one with peer networks) has a tunnel."""
    if enabled and any(True for _ in peers) and not has_tunnel:
        return TUNNEL_REQUIRED
    return None


def template_context(config: Config, tunnels: Iterable[Tunnel]) -> dict[str, Any]:
    """What conf/strongswan/ and conf/nftables/ templates name."""
    ordered = sorted(tunnels, key=lambda t: t.party)
    gateways = sorted({ipaddress.ip_address(t.gateway) for t in ordered},
                      key=lambda a: (a.version, a))
    return {
        "ipsec": config.ipsec,
        "mta_port": config.listeners.mta_port,
        "libipsec_device": LIBIPSEC_DEVICE,
        "tunnels": [{"party": t.party, "connection": t.connection, "reqid": t.reqid,
                     "gateway": t.gateway, "remote_id": t.remote_id, "auth": t.auth,
                     "peers": list(t.peers), "peers_v4": t.peers_of(4),
                     "peers_v6": t.peers_of(6)} for t in ordered],
        "gateways_v4": [str(a) for a in gateways if a.version == 4],
        "gateways_v6": [str(a) for a in gateways if a.version == 6],
    }
