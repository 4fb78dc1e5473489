"""The one config object: a file names only what differs from the defaults it is read
over, and a local stack's defaults are the stack's own paths (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from singlewindow import config as configmod
from singlewindow.config import Config, ConfigError

PORTS_ONLY = "[listeners]\nmta_port = 3525\nmsa_port = 3465\n"


def test_a_file_that_moves_only_the_ports_gets_the_stacks_database(tmp_path: Path) -> None:
    (tmp_path / configmod.STATE_CONFIG_NAME).write_text(PORTS_ONLY)
    config = configmod.for_state_dir(tmp_path)
    assert (config.listeners.mta_port, config.listeners.msa_port) == (3525, 3465)
    assert config.listeners.pop3_port == Config().listeners.pop3_port
    assert config.database.conninfo == f"host={tmp_path}/run/pg dbname=singlewindow"
    assert config.paths.state_dir == tmp_path
    assert config.paths.lmtp_socket == tmp_path / "run" / "lmtp.sock"
    assert config.postfix_config == tmp_path / "postfix"
    # The same with no file at all.
    assert configmod.for_state_dir(tmp_path / "empty").database.conninfo == \
        f"host={tmp_path}/empty/run/pg dbname=singlewindow"


def test_a_table_that_sets_one_option_keeps_the_others_from_the_stack(tmp_path: Path) -> None:
    (tmp_path / configmod.STATE_CONFIG_NAME).write_text("[database]\nconnect_timeout = 2\n")
    config = configmod.for_state_dir(tmp_path)
    assert config.database.connect_timeout == 2
    assert config.database.conninfo == f"host={tmp_path}/run/pg dbname=singlewindow"


def test_what_the_file_sets_wins(tmp_path: Path) -> None:
    (tmp_path / configmod.STATE_CONFIG_NAME).write_text(
        '[database]\nconninfo = "host=db.example dbname=sw"\n')
    assert configmod.for_state_dir(tmp_path).database.conninfo == "host=db.example dbname=sw"


def test_a_deployed_nodes_file_is_read_over_the_plain_defaults(tmp_path: Path) -> None:
    path = tmp_path / "singlewindow.toml"
    path.write_text(PORTS_ONLY)
    config = configmod.load(path)
    assert config.database.conninfo == Config().database.conninfo
    assert config.paths == Config().paths


def test_unknown_options_are_still_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / configmod.STATE_CONFIG_NAME).write_text("[database]\nsocket = 1\n")
    with pytest.raises(ConfigError, match=r"unknown option database\.socket"):
        configmod.for_state_dir(tmp_path)


def test_the_maildrop_hop_options(tmp_path: Path) -> None:
    """Issue 15: [maildrop] as the shared contract names it, defaults for a single node."""
    default = Config().maildrop
    assert (default.backend, default.listen, default.clients, default.lock_wait) == \
        ("", "127.0.0.1:24", (), 60.0)
    config = configmod.parse('[maildrop]\nbackend = "pop1.sw.test:24"\n'
                             'listen = "[2001:db8::10]:24"\n'
                             'clients = ["10.0.2.11", "2001:db8::11"]\nlock_wait = 5\n')
    assert config.maildrop.backend_address == ("pop1.sw.test", 24)
    assert config.maildrop.listen_address == ("2001:db8::10", 24)
    assert config.maildrop.clients == ("10.0.2.11", "2001:db8::11")
    assert config.maildrop.lock_wait == 5.0
    assert configmod.parse(configmod.to_toml(config)) == config


@pytest.mark.parametrize(("table", "error"), [
    ('backend = "pop1.sw.test"', r"maildrop\.backend must be HOST:PORT"),
    ('backend = "pop1:99999"', r"maildrop\.backend must be HOST:PORT"),
    ('listen = ":24"', r"maildrop\.listen must be HOST:PORT"),
    ('clients = ["10.0.2.0/24"]', r"maildrop\.clients: '10\.0\.2\.0/24' is not a single IP"),
    ('clients = ["edge1"]', r"maildrop\.clients: 'edge1' is not a single IP"),
    ('clients = "10.0.2.11"', r"maildrop\.clients must be a list"),
    ("lock_wait = -1", r"maildrop\.lock_wait must be 0 or more seconds"),
])
def test_maildrop_options_that_cannot_work_are_refused_by_name(table: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        configmod.parse(f"[maildrop]\n{table}\n")


def test_the_state_directory_layout_is_spelled_out_in_paths_alone() -> None:
    """config.Paths is the one place that says where each file lives in the state
    directory: the stack, the supervisor, the daemons and the config's defaults ask it."""
    state = Path("/tmp/sw-layout")
    paths = configmod.Paths(state)
    assert paths.config_file == state / "singlewindow.toml"
    assert (paths.run_dir, paths.log_dir) == (state / "run", state / "log")
    assert (paths.tls_dir, paths.keys_dir) == (state / "tls", state / "keys")
    assert (paths.pg_data, paths.pg_socket_dir) == (state / "pg" / "data", state / "run" / "pg")
    assert (paths.postfix_conf, paths.postfix_queue, paths.postfix_data) == (
        state / "postfix", state / "spool", state / "lib" / "postfix")
    assert paths.postfix_log == state / "log" / "postfix.log"
    assert (paths.dovecot_conf, paths.dovecot_base, paths.dovecot_state) == (
        state / "dovecot", state / "run" / "dovecot", state / "lib" / "dovecot")
    assert paths.dovecot_log == state / "log" / "dovecot.log"
    assert (paths.maildrop_dir, paths.maps_dir) == (state / "maildrops", state / "maps")
    assert paths.demo_credentials == state / "demo-credentials"
    assert paths.pid_file("policyd") == state / "run" / "policyd.pid"
    assert paths.notify_socket("milter") == state / "run" / "milter.notify"
    sockets = [paths.policy_socket, paths.lmtp_socket, paths.milter_socket,
               paths.table_socket, paths.supervisor_socket, paths.notify_socket("transport")]
    assert all(s.parent == paths.run_dir for s in sockets)
    assert len({*sockets}) == len(sockets)


def test_the_configs_file_defaults_come_from_the_layout(tmp_path: Path) -> None:
    config = configmod.for_state_dir(tmp_path)
    paths = config.paths
    assert config.cert_file == paths.tls_dir / "cert.pem"
    assert config.key_file == paths.tls_dir / "key.pem"
    assert config.ca_file == paths.tls_dir / "ca.pem"
    assert config.stamp_key_file == paths.keys_dir / "stamp.key"
    assert config.reinject_cert_file == paths.keys_dir / "reinject-cert.pem"
    assert config.reinject_key_file == paths.keys_dir / "reinject-key.pem"
    assert config.postfix_maillog == paths.postfix_log
    assert config.dovecot_log == paths.dovecot_log
    assert config.postfix_config == paths.postfix_conf
    assert config.dovecot_config == paths.dovecot_conf / "dovecot.conf"
    assert config.metrics_dir == paths.run_dir / "metrics"
