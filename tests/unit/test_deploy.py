"""deploy.py: the stack's conf/ templates rendered for a deployed node (swctl render)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from singlewindow import cli, deploy
from singlewindow.config import Config, Database, Paths, Tls, Transport


def node_config(tmp_path: Path) -> Config:
    return replace(
        Config(), paths=Paths(state_dir=Path("/var/lib/singlewindow")),
        database=Database(conninfo="host=db.sw.internal port=5433 dbname=singlewindow "
                                   "sslrootcert=/etc/singlewindow/tls/ca.pem",
                          passfile_dir=Path("/etc/singlewindow/pgpass")),
        tls=Tls(ca_file=Path("/etc/singlewindow/tls/ca.pem")),
        transport=Transport(dovecot_config=tmp_path / "dovecot" / "dovecot.conf"))


def test_system_paths_not_a_private_instance(tmp_path: Path) -> None:
    ctx = deploy.template_context(node_config(tmp_path))
    assert ctx["postfix"]["private_instance"] is False
    assert ctx["postfix"]["config_directory"] == Path("/etc/postfix")
    assert ctx["dovecot"]["auth_socket"] == Path("/run/dovecot/auth-postfix")
    # Postfix reads no table of the database: its tables are files (singlewindow.maps).
    assert "postfix_hosts" not in ctx["database"]


def test_render_writes_once_then_nothing(tmp_path: Path) -> None:
    config = node_config(tmp_path)
    dest = tmp_path / "postfix"
    first = deploy.render_target(config, "postfix", dest)
    assert {p.name for p in first} == {o.name for o in deploy.TARGETS["postfix"]}
    main_cf = (dest / "main.cf").read_text()
    assert "queue_directory" not in main_cf
    assert "maillog_file = /var/lib/singlewindow/log/postfix.log" in main_cf
    assert "relay_recipient_maps = hash:/var/lib/singlewindow/maps/relay_recipients" in main_cf
    assert "transport_maps = hash:/var/lib/singlewindow/maps/transport" in main_cf
    assert "pgsql" not in main_cf
    assert deploy.render_target(config, "postfix", dest) == []
    (dest / "main.cf").write_text("edited by hand\n")
    assert deploy.render_target(config, "postfix", dest, check=True) == [dest / "main.cf"]
    assert (dest / "main.cf").read_text() == "edited by hand\n"


def test_edge_proxies_pop3_backend_trusts_edges(tmp_path: Path) -> None:
    config = node_config(tmp_path)
    edge, backend = tmp_path / "edge", tmp_path / "backend"
    deploy.render_target(config, "dovecot", edge,
                         node=deploy.NodeRole(pop3_backend="pop1.sw.internal",
                                              pop3_backend_address="10.0.3.10"))
    deploy.render_target(config, "dovecot", backend,
                         node=deploy.NodeRole(pop3_proxies=("10.0.2.11", "10.0.2.12")))
    strong = (edge / "sql-strong.conf.ext").read_text()
    assert "'Y' AS proxy, 'pop1.sw.internal' AS host," in strong
    assert "'10.0.3.10' AS hostip," in strong
    assert f"'{config.listeners.pop3s_port}' AS port, 'yes' AS ssl FROM account" in strong
    edge_conf, backend_conf = (edge / "dovecot.conf").read_text(), \
        (backend / "dovecot.conf").read_text()
    # Dovecot 2.3's login proxy verifies the backend against ssl_ca (it ignores
    # ssl_client_ca_file), read as the file's content.
    assert "\nssl_ca = </etc/singlewindow/tls/ca.pem\n" in edge_conf
    assert "\nssl_client_ca_file" not in edge_conf
    assert "AS proxy" not in (backend / "sql-strong.conf.ext").read_text()
    assert "login_trusted_networks = 10.0.2.11 10.0.2.12\n" in backend_conf
    # The backend serves the proxies on POP3S only: its plain POP3 listener is off.
    assert "inet_listener pop3 {\n    # The backend: only the edges' proxies connect, and " \
           "only to POP3S.\n    port = 0\n" in backend_conf
    assert "login_trusted_networks" not in (edge / "dovecot.conf").read_text()
    assert "base_dir" not in (edge / "dovecot.conf").read_text()


def test_backend_takes_logins_only_on_the_edges_connections(tmp_path: Path) -> None:
    """On the backend both passdbs answer allow_real_nets with the edges' addresses: the
    address of the connection itself, which a trusted proxy cannot forward away (it
    forwards its client's as rip, which allow_nets would check). Elsewhere, nothing."""
    config = node_config(tmp_path)
    edge, backend, single = tmp_path / "edge", tmp_path / "backend", tmp_path / "single"
    deploy.render_target(config, "dovecot", edge,
                         node=deploy.NodeRole(pop3_backend="pop1.sw.internal",
                                              pop3_backend_address="10.0.3.10"))
    deploy.render_target(config, "dovecot", backend,
                         node=deploy.NodeRole(pop3_proxies=("10.0.2.11", "10.0.2.12")))
    deploy.render_target(config, "dovecot", single)
    for name, column in (("sql-strong.conf.ext", "password_hash"),
                         ("sql-digest-md5.conf.ext", "digest_md5_hash")):
        query = (backend / name).read_text().split("password_query = ", 1)[1]
        assert query.startswith(
            f"SELECT login AS user, {column} AS password, \\\n"
            "  '10.0.2.11,10.0.2.12' AS allow_real_nets FROM account \\\n"
            "  WHERE login = '%n'"), query
        for other in (edge, single):
            assert "allow_real_nets" not in (other / name).read_text(), (other, name)
        assert "AS allow_nets" not in (backend / name).read_text()
    # The edge takes DIGEST-MD5 for SMTP AUTH only: the proxy could not log in with it.
    assert "WHERE '%s' = 'smtp' AND login = '%n'" in (edge / "sql-digest-md5.conf.ext").read_text()
    for other in (backend, single):
        assert "'%s'" not in (other / "sql-digest-md5.conf.ext").read_text()


def test_backend_trusts_edges_one_by_one_never_a_network(tmp_path: Path) -> None:
    for given in ("10.0.2.0/24", "edge1.sw.internal"):
        with pytest.raises(deploy.DeployError, match="not one address"):
            deploy.NodeRole(pop3_proxies=("10.0.2.11", given))


def test_edge_without_a_ca_does_not_proxy(tmp_path: Path) -> None:
    config = replace(node_config(tmp_path), tls=Tls())
    with pytest.raises(deploy.DeployError, match="ca_file"):
        deploy.render_target(config, "dovecot", tmp_path / "edge",
                             node=deploy.NodeRole(pop3_backend="pop1.sw.internal"))


def test_every_database_client_verifies_the_server_between_nodes(tmp_path: Path) -> None:
    """Dovecot and the daemons: TLS with the server's certificate and name checked
    against the deployment's CA, each as its own role with its own password file."""
    config = node_config(tmp_path)
    deploy.render_target(config, "dovecot", tmp_path / "dovecot")
    for name in ("sql-strong.conf.ext", "sql-digest-md5.conf.ext", "sql-userdb.conf.ext"):
        text = (tmp_path / "dovecot" / name).read_text()
        [connect] = [line for line in text.splitlines() if line.startswith("connect = ")]
        params = conninfo_to_dict(connect.split(" = ", 1)[1])
        assert params["sslmode"] == "verify-full" and params["user"] == "sw_dovecot"
        assert params["sslrootcert"] == "/etc/singlewindow/tls/ca.pem"
        assert params["passfile"] == "/etc/singlewindow/pgpass/sw_dovecot"
        assert "password" not in params
    daemons = conninfo_to_dict(config.database.dsn())
    assert daemons["sslmode"] == "verify-full" and daemons["user"] == "sw_daemon"
    assert daemons["passfile"] == "/etc/singlewindow/pgpass/sw_daemon"
    # A conninfo that weakens TLS keeps what the operator wrote; without one, verify-full.
    assert conninfo_to_dict(Database(conninfo="host=db port=5432").dsn())["sslmode"] == \
        "verify-full"
    local = conninfo_to_dict(Database(conninfo="host=/run/postgresql").dsn("sw_admin"))
    assert "sslmode" not in local and "passfile" not in local and local["user"] == "sw_admin"


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
