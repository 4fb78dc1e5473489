"""swctl and the IPsec tunnels (issue 16) against a real database: party add with a
tunnel, party tunnel, party remove, party list, and swctl render --target ipsec|tunnels
from what the database holds, with the config file of an edge that has [ipsec] enabled."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from singlewindow import ipsec
from singlewindow.config import Config
from tests.support.swctl import call

Swctl = Callable[..., tuple[int, str, str]]
DN = "C=NL, O=Company A, CN=gw.a.example"
ACME_TUNNEL = ("--ipsec-gateway", "203.0.113.1", "--ipsec-id", "gw.acme.example",
               "--ipsec-auth", "psk")


def lines(party: str, what: str) -> str:
    return f"ipsec: connection sw-{party} {what}\n{ipsec.APPLY_HINT}\n"


@pytest.fixture
def edge_dir(database_config: Config, tmp_path: Path) -> Path:
    """An edge's configuration: [ipsec] enabled, the MTA on port 25, this test database."""
    (tmp_path / "singlewindow.toml").write_text(
        f'[database]\nconninfo = "{database_config.database.conninfo}"\n'
        "[listeners]\nmta_port = 25\n"
        '[ipsec]\nenabled = true\nlocal_addrs = ["198.51.100.10"]\n'
        'local_id = "edge1.sw.example"\nlocal_ts = ["198.51.100.25/32"]\n')
    return tmp_path


@pytest.fixture
def swctl(database_config: Config, conn: psycopg.Connection[Any], edge_dir: Path,
          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Swctl:
    """``swctl ARGV...`` on the edge (``edge=False``: the local stack, no IPsec), on an
    emptied directory (``conn``); returns (exit status, stdout, stderr)."""
    def run(*argv: str, edge: bool = True) -> tuple[int, str, str]:
        state = edge_dir if edge else database_config.paths.state_dir
        monkeypatch.setenv("SW_STATE_DIR", str(state))
        return call(argv, monkeypatch, capsys)
    return run


def test_a_party_added_with_its_tunnel_and_listed(swctl: Swctl) -> None:
    code, out, err = swctl("party", "add", "acme", "--kind", "company", "--peer",
                           "10.1.0.0/24", "--relay", "10.1.0.25:25", *ACME_TUNNEL)
    assert (code, err) == (0, "")
    assert out == "party acme (company) added\n" + lines("acme", "added")
    code, out, _ = swctl("party", "add", "brightline", "--kind", "company")
    assert (code, out) == (0, "party brightline (company) added\n")  # no tunnel, no MTA
    code, out, _ = swctl("party", "list")
    assert out.splitlines() == [
        "acme\tcompany\trelay=10.1.0.25:25\tpeers=10.1.0.0/24\t"
        "tunnel=203.0.113.1 reqid=1000 auth=psk id=gw.acme.example",
        "brightline\tcompany\trelay=-\tpeers=-\ttunnel=-"]


def test_a_changed_tunnel_says_changed_an_unchanged_one_nothing(swctl: Swctl) -> None:
    swctl("party", "add", "acme", "--kind", "company", "--peer", "10.1.0.0/24", *ACME_TUNNEL)
    cert = ("party", "tunnel", "acme", "--gateway", "203.0.113.2", "--id", DN, "--auth", "cert")
    code, out, err = swctl(*cert)
    assert (code, err) == (0, "")
    assert out == "party acme: tunnel changed\n" + lines("acme", "changed")
    code, out, _ = swctl(*cert)
    assert (code, out) == (0, "party acme: tunnel unchanged\n")
    assert "ipsec:" not in out
    _, out, _ = swctl("party", "list")
    assert out.rstrip("\n").endswith(f"\ttunnel=203.0.113.2 reqid=1000 auth=cert id={DN}")


def test_a_tunnel_for_a_party_that_had_none(swctl: Swctl) -> None:
    swctl("party", "add", "acme", "--kind", "company", "--peer", "10.1.0.0/24", edge=False)
    code, out, _ = swctl("party", "tunnel", "acme", "--gateway", "203.0.113.1", "--id",
                         "gw.acme.example", "--auth", "psk")
    assert (code, out) == (0, "party acme: tunnel added\n" + lines("acme", "added"))


def test_removing_a_party_removes_its_connection(swctl: Swctl) -> None:
    swctl("party", "add", "acme", "--kind", "company", "--peer", "10.1.0.0/24", *ACME_TUNNEL)
    swctl("address", "add", "acme@sw.test", "--party", "acme", "--physical",
          "edi@acme.example")
    code, out, err = swctl("party", "remove", "acme")
    assert (code, out) == (1, "")
    assert err == ("swctl: error: party 'acme' still has addresses (acme@sw.test): remove "
                   "them first with swctl address remove LOGICAL\n")
    swctl("address", "remove", "acme@sw.test")
    code, out, err = swctl("party", "remove", "acme")
    assert (code, err) == (0, "")
    assert out == "party acme removed\n" + lines("acme", "removed")
    swctl("party", "add", "brightline", "--kind", "company")
    assert swctl("party", "remove", "brightline")[1] == "party brightline removed\n"
    assert swctl("party", "list")[1] == ""


def test_without_ipsec_a_tunnel_can_go(swctl: Swctl) -> None:
    swctl("party", "add", "acme", "--kind", "company", "--peer", "10.1.0.0/24", *ACME_TUNNEL)
    code, out, _ = swctl("party", "tunnel", "acme", "--remove", edge=False)
    assert (code, out) == (0, "party acme: tunnel removed\n" + lines("acme", "removed"))
    code, out, _ = swctl("party", "tunnel", "acme", "--remove", edge=False)
    assert (code, out) == (0, "party acme: tunnel none to remove\n")


@pytest.mark.parametrize("argv,message", [
    (["party", "add", "acme", "--kind", "company", "--peer", "10.1.0.0/24"],
     "port 25 is reachable only through IPsec on this hub: give its tunnel with "
     "--ipsec-gateway IP --ipsec-id ID --ipsec-auth psk|cert"),
    (["party", "add", "acme", "--kind", "company", "--peer", "10.1.0.0/24",
      "--ipsec-gateway", "203.0.113.1", "--ipsec-auth", "psk"],
     "--ipsec-gateway, --ipsec-id and --ipsec-auth go together"),
    (["party", "add", "acme", "--kind", "company", *ACME_TUNNEL],
     "a tunnel carries an MTA party's --peer networks: give --peer"),
    (["party", "add", "acme", "--kind", "company", "--peer", "10.1.0.0/24",
      "--ipsec-gateway", "198.51.100.10", "--ipsec-id", "gw", "--ipsec-auth", "psk"],
     "gateway 198.51.100.10 is the hub's own address (198.51.100.10/32)"),
    (["party", "add", "acme", "--kind", "company", "--peer", "10.1.0.0/24",
      "--ipsec-gateway", "10.1.0.0/24", "--ipsec-id", "gw", "--ipsec-auth", "psk"],
     "invalid gateway '10.1.0.0/24': is not one IP address"),
    (["party", "add", "acme", "--kind", "company", "--peer", "10.1.0.0/24",
      "--ipsec-gateway", "203.0.113.1", "--ipsec-id", "gw{", "--ipsec-auth", "psk"],
     "invalid IKE identity 'gw{'"),
    (["party", "add", "acme.nl", "--kind", "company", "--peer", "10.1.0.0/24",
      *ACME_TUNNEL], "a swanctl connection name cannot hold"),
    (["party", "tunnel", "ghost", "--gateway", "203.0.113.1", "--id", "gw", "--auth", "psk"],
     "unknown party 'ghost'"),
    (["party", "tunnel", "ghost", "--gateway", "203.0.113.1"],
     "give --gateway IP --id ID --auth psk|cert, or --remove"),
    (["party", "remove", "ghost"], "unknown party 'ghost'"),
])
def test_refusals_store_nothing(swctl: Swctl, argv: list[str], message: str) -> None:
    code, out, err = swctl(*argv)
    assert code == 1 and out == "", out
    assert err.startswith("swctl: error: ") and message in err and err.count("\n") == 1
    assert swctl("party", "list")[1] == ""


def test_on_an_edge_an_mta_partys_tunnel_stays(swctl: Swctl) -> None:
    swctl("party", "add", "acme", "--kind", "company", "--peer", "10.1.0.0/24", *ACME_TUNNEL)
    code, out, err = swctl("party", "tunnel", "acme", "--remove")
    assert (code, out) == (1, "")
    assert err == ("swctl: error: port 25 is reachable only through IPsec on this hub: "
                   "party acme still has peer networks, so its tunnel stays (remove the "
                   "party instead)\n")
    assert "tunnel=203.0.113.1 reqid=1000" in swctl("party", "list")[1]


def test_render_writes_the_edges_tunnels_from_the_database(swctl: Swctl, edge_dir: Path,
                                                           tmp_path: Path) -> None:
    config = str(edge_dir / "singlewindow.toml")
    swanctl, nft = tmp_path / "swanctl", tmp_path / "nftables"

    def render(target: str, dest: Path, *more: str) -> tuple[int, str, str]:
        return swctl("render", "--target", target, "--dest", str(dest), "--config", config,
                     *more)

    assert render("ipsec", swanctl) == (0, f"changed: {swanctl}/singlewindow.conf\n", "")
    assert render("tunnels", nft) == (0, f"changed: {nft}/singlewindow-tunnels.nft\n", "")
    assert "connections {\n}\n" in (swanctl / "singlewindow.conf").read_text()
    assert "tcp dport" not in (nft / "singlewindow-tunnels.nft").read_text()
    swctl("party", "add", "acme", "--kind", "company", "--peer", "10.1.0.0/24",
          "--peer", "2001:db8:a::/48", *ACME_TUNNEL)
    assert render("ipsec", swanctl, "--check") == \
        (0, f"changed: {swanctl}/singlewindow.conf\n", "")
    assert render("ipsec", swanctl)[1] == f"changed: {swanctl}/singlewindow.conf\n"
    assert render("ipsec", swanctl) == (0, "", "")
    assert render("tunnels", nft)[1] == f"changed: {nft}/singlewindow-tunnels.nft\n"
    assert render("tunnels", nft) == (0, "", "")
    conf = (swanctl / "singlewindow.conf").read_text()
    assert conf.startswith("# Generated by Single Window from conf/strongswan/")
    assert "  sw-acme {\n" in conf and "        reqid = 1000\n" in conf
    assert "        remote_ts = 10.1.0.0/24, 2001:db8:a::/48\n" in conf
    assert "    remote_addrs = 203.0.113.1\n" in conf and '      id = "gw.acme.example"\n' in conf
    chain = (nft / "singlewindow-tunnels.nft").read_text()
    assert "tcp dport 25 meta ipsec exists ipsec in reqid 1000 ip6 saddr { 2001:db8:a::/48 }" \
        " accept\n" in chain and "elements = { 203.0.113.1 }" in chain
    # A changed tunnel: the connection changes, the reqid (and so the rule) does not.
    swctl("party", "tunnel", "acme", "--gateway", "203.0.113.7", "--id", DN, "--auth", "cert")
    assert render("ipsec", swanctl)[1] == f"changed: {swanctl}/singlewindow.conf\n"
    assert "        reqid = 1000\n" in (swanctl / "singlewindow.conf").read_text()
    assert render("tunnels", nft)[1] == f"changed: {nft}/singlewindow-tunnels.nft\n"
    assert "elements = { 203.0.113.7 }" in (nft / "singlewindow-tunnels.nft").read_text()


def test_the_local_stack_renders_no_tunnels(swctl: Swctl, tmp_path: Path) -> None:
    dest = tmp_path / "swanctl"
    code, out, err = swctl("render", "--target", "ipsec", "--dest", str(dest), edge=False)
    assert (code, out) == (1, "")
    assert err.startswith("swctl: error: --target ipsec: [ipsec] enabled is false")
    assert not dest.exists()
