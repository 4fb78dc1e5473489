"""deploy.py: the stack's conf/ templates rendered for a deployed node (swctl render)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from singlewindow import cli, deploy
from singlewindow.config import Config, Database, Paths, Transport


def node_config(tmp_path: Path) -> Config:
    return replace(
        Config(), paths=Paths(state_dir=Path("/var/lib/singlewindow")),
        database=Database(conninfo="host=db.sw.internal port=5433 dbname=singlewindow "
                                   "user=sw password=s3cret"),
        transport=Transport(dovecot_config=tmp_path / "dovecot" / "dovecot.conf"))


def test_system_paths_not_a_private_instance(tmp_path: Path) -> None:
    ctx = deploy.template_context(node_config(tmp_path))
    assert ctx["postfix"]["private_instance"] is False
    assert ctx["postfix"]["config_directory"] == Path("/etc/postfix")
    assert ctx["dovecot"]["auth_socket"] == Path("/run/dovecot/auth-postfix")
    assert ctx["database"]["postfix_hosts"] == "inet:db.sw.internal:5433"


def test_render_writes_once_then_nothing(tmp_path: Path) -> None:
    config = node_config(tmp_path)
    dest = tmp_path / "postfix"
    first = deploy.render_target(config, "postfix", dest)
    assert {p.name for p in first} == {o.name for o in deploy.TARGETS["postfix"]}
    main_cf = (dest / "main.cf").read_text()
    assert "queue_directory" not in main_cf
    assert "maillog_file = /var/lib/singlewindow/log/postfix.log" in main_cf
    assert "hosts = inet:db.sw.internal:5433" in (dest / "pgsql-logical.cf").read_text()
    # The database password is readable by root and Postfix only.
    assert (dest / "pgsql-logical.cf").stat().st_mode & 0o777 == 0o640
    assert deploy.render_target(config, "postfix", dest) == []
    (dest / "main.cf").write_text("edited by hand\n")
    assert deploy.render_target(config, "postfix", dest, check=True) == [dest / "main.cf"]
    assert (dest / "main.cf").read_text() == "edited by hand\n"


def test_edge_proxies_pop3_backend_trusts_edges(tmp_path: Path) -> None:
    config = node_config(tmp_path)
    edge, backend = tmp_path / "edge", tmp_path / "backend"
    deploy.render_target(config, "dovecot", edge,
                         node=deploy.NodeRole(pop3_backend="10.0.3.10"))
    deploy.render_target(config, "dovecot", backend,
                         node=deploy.NodeRole(pop3_proxy_networks=("10.0.2.0/24",)))
    assert "'Y' AS proxy, '10.0.3.10' AS host" in (edge / "sql-strong.conf.ext").read_text()
    assert "proxy" not in (backend / "sql-strong.conf.ext").read_text().split("driver")[1]
    assert "login_trusted_networks = 10.0.2.0/24" in (backend / "dovecot.conf").read_text()
    assert "login_trusted_networks" not in (edge / "dovecot.conf").read_text()
    assert "base_dir" not in (edge / "dovecot.conf").read_text()


def test_swctl_render_prints_changed_files(tmp_path: Path, capsys: object) -> None:
    config_file = tmp_path / "singlewindow.toml"
    config_file.write_text('[paths]\nstate_dir = "/var/lib/singlewindow"\n')
    argv = ["render", "--target", "dovecot", "--dest", str(tmp_path / "d"),
            "--config", str(config_file)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert out.count("changed: ") == len(deploy.TARGETS["dovecot"])
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == ""  # type: ignore[attr-defined]


def test_size_limits_come_from_the_one_config(tmp_path: Path) -> None:
    config = node_config(tmp_path)
    config = replace(config, transport=replace(config.transport, message_size_limit=30_000_000,
                                               copy_size_limit=40_000_000))
    dest = tmp_path / "postfix"
    deploy.render_target(config, "postfix", dest)
    assert "\nmessage_size_limit = 30000000\n" in (dest / "main.cf").read_text()
    master = (dest / "master.cf").read_text()
    reinject = master.split(f":{config.listeners.reinject_port} inet", 1)[1].split("\n\n")[0]
    assert "-o message_size_limit=40000000" in reinject
    # The transport's LMTP server takes everything Postfix took; copies leave room for
    # their headers around the base64-encoded XML.
    assert config.transport.lmtp_size_limit > 30_000_000 * 65 // 64
    xml = config.transport.xml_size_limit
    assert xml > 0.72 * 40_000_000 and (xml + 56) // 57 * 78 < 40_000_000 - 64 * 1024
