"""node.py: the context conf/ templates are rendered with, for the local stack and (through
deploy.py) a deployed node."""

from __future__ import annotations

import pwd
from pathlib import Path

from singlewindow import config as configmod
from singlewindow import deploy, node
from singlewindow.config import Config

KEYS = {"hub", "hub_name", "sw_domain", "message_id_header", "listeners", "queue",
        "transport", "paths", "tls", "reinject", "postfix", "dovecot", "database",
        "maildrop"}
POSTFIX_KEYS = {"private_instance", "inet_interfaces", "config_directory", "queue_directory",
                "data_directory", "maillog_file", "maillog_prefix", "message_size_limit",
                "milter"}
DOVECOT_KEYS = {"private_instance", "config_directory", "log_path", "ssl_dh",
                "auth_socket_name", "auth_socket", "proxy_host", "login_trusted_networks"}
#: A private Dovecot instance's own directories and name.
PRIVATE_DOVECOT_KEYS = {"base_dir", "instance_name", "state_dir"}


def stack_config(tmp_path: Path) -> Config:
    return configmod.for_state_dir(tmp_path / "sw-node")


def test_a_stacks_context_puts_every_instance_under_the_state_directory(
        tmp_path: Path) -> None:
    config = stack_config(tmp_path)
    paths = config.paths
    ctx = node.template_context(config)
    assert set(ctx) == KEYS
    assert set(ctx["postfix"]) == POSTFIX_KEYS
    assert set(ctx["dovecot"]) == DOVECOT_KEYS | PRIVATE_DOVECOT_KEYS
    postfix, dovecot = ctx["postfix"], ctx["dovecot"]
    assert postfix["private_instance"] is True and dovecot["private_instance"] is True
    assert (postfix["config_directory"], postfix["queue_directory"],
            postfix["data_directory"]) == (paths.postfix_conf, paths.postfix_queue,
                                           paths.postfix_data)
    assert (postfix["maillog_file"], postfix["maillog_prefix"]) == (paths.postfix_log,
                                                                   paths.log_dir)
    assert postfix["milter"] == paths.milter_socket
    assert postfix["inet_interfaces"] == config.listeners.bind
    assert (dovecot["config_directory"], dovecot["base_dir"], dovecot["state_dir"]) == (
        paths.dovecot_conf, paths.dovecot_base, paths.dovecot_state)
    assert dovecot["instance_name"] == "sw-sw-node"
    assert dovecot["auth_socket"] == paths.dovecot_base / "auth-postfix"
    assert dovecot["log_path"] == paths.dovecot_log


def test_the_database_and_maildrop_parts(tmp_path: Path) -> None:
    ctx = node.template_context(stack_config(tmp_path))
    assert ctx["database"]["dbname"] == "singlewindow"
    assert ctx["database"]["roles"] == list(configmod.ROLES)
    assert ["singlewindow", configmod.DAEMON_ROLE] in ctx["database"]["peer_map"]
    assert ["dovecot", configmod.DOVECOT_ROLE] in ctx["database"]["peer_map"]
    user = pwd.getpwnam(node.MAILDROP_USER)
    assert ctx["maildrop"] == {"uid": user.pw_uid, "gid": user.pw_gid}


def test_a_deployed_nodes_context_has_the_same_keys_and_the_systems_paths(
        tmp_path: Path) -> None:
    config = stack_config(tmp_path)
    ctx = deploy.template_context(config, postfix_dir=Path("/etc/postfix"))
    assert set(ctx) == KEYS
    assert set(ctx["postfix"]) == POSTFIX_KEYS
    # The system's Dovecot keeps its own base_dir; a deployed node may proxy POP3.
    assert set(ctx["dovecot"]) == DOVECOT_KEYS | {"proxy_hostip"}
    assert ctx["postfix"]["private_instance"] is False
    assert ctx["postfix"]["config_directory"] == Path("/etc/postfix")
    assert ctx["dovecot"]["private_instance"] is False
    assert ctx["dovecot"]["auth_socket"] == node.DOVECOT_BASE_DIR / "auth-postfix"
    assert ctx["dovecot"]["config_directory"] == config.dovecot_config.parent
    # What is no path is the stack's.
    private = node.template_context(config)
    for key in KEYS - {"postfix", "dovecot"}:
        assert ctx[key] == private[key], key
