"""What a node's ``conf/`` templates are rendered with: one context for every node.

Below both the local stack (:mod:`singlewindow.stack`, private Postfix, Dovecot and
PostgreSQL instances under the state directory) and a deployed node
(:mod:`singlewindow.deploy`, the distribution's system services, SPEC D8): the stack
renders :func:`template_context` as it is, a deployed node replaces the paths of the
private instances with the system's. Where each file lives inside the state directory is
:class:`singlewindow.config.Paths`. No I/O but looking the maildrop user up.
"""

from __future__ import annotations

import pwd
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from singlewindow import config as configmod
from singlewindow.config import Config

#: The system user that owns the POP3 maildrops and runs dovecot-lda (scripts/install and
#: the Ansible role create it); the daemons run as it on a deployed node.
MAILDROP_USER = "singlewindow"

#: Local stack: which system user may log in as which role over the unix socket (peer
#: authentication, pg_ident.conf). The daemons run as root here, as the maildrop user on a
#: deployed node; root is also the operator (swctl).
PEER_MAP: tuple[tuple[str, str], ...] = (
    ("root", configmod.OWNER_ROLE),
    ("root", configmod.ADMIN_ROLE),
    ("root", configmod.DAEMON_ROLE),
    (MAILDROP_USER, configmod.DAEMON_ROLE),
    ("postfix", configmod.POSTFIX_ROLE),
    ("dovecot", configmod.DOVECOT_ROLE),
    ("root", configmod.CONSOLE_ROLE),
    (MAILDROP_USER, configmod.CONSOLE_ROLE),
)

#: Diffie-Hellman parameters Debian's Dovecot package ships, used when present.
DOVECOT_DH = Path("/usr/share/dovecot/dh.pem")
#: Dovecot's default base_dir on Debian (a deployed node); its auth socket lives there.
DOVECOT_BASE_DIR = Path("/run/dovecot")
#: The name of Dovecot's auth socket for Postfix, relative to Dovecot's base_dir.
AUTH_SOCKET_NAME = "auth-postfix"


def template_context(config: Config) -> dict[str, Any]:
    """Everything conf/ templates may name, for the local stack in
    ``config.paths.state_dir``."""
    paths = config.paths
    maildrop = pwd.getpwnam(MAILDROP_USER)
    return {
        "hub": config.hub,
        "hub_name": "Single Window",
        "sw_domain": config.hub.domain,
        # The transport writes this into the headers a DSN returns, in place of the
        # origin stamp, which names peers and logins and never leaves the hub (issue 12).
        "message_id_header": "X-SingleWindow-Message",
        "listeners": config.listeners,
        "queue": config.queue,
        "transport": config.transport,
        "paths": paths,
        "tls": {"cert_file": config.cert_file, "key_file": config.key_file,
                "ca_file": config.tls.ca_file},
        # Issue 12: the re-injection listener trusts this one certificate, nothing else.
        "reinject": {"cert_file": config.reinject_cert_file},
        "postfix": {
            "private_instance": True,
            "inet_interfaces": config.listeners.bind,
            "config_directory": paths.postfix_conf,
            "queue_directory": paths.postfix_queue,
            "data_directory": paths.postfix_data,
            "maillog_file": paths.postfix_log,
            "maillog_prefix": paths.log_dir,
            "message_size_limit": config.transport.message_size_limit,
            "milter": paths.milter_socket,
        },
        "dovecot": dovecot_context(config, private=True),
        "database": _database(config),
        "maildrop": {"uid": maildrop.pw_uid, "gid": maildrop.pw_gid},
    }


def dovecot_context(config: Config, *, private: bool) -> dict[str, Any]:
    """The ``dovecot`` part of the context: a private instance under the state directory,
    or (``private`` false) the system's, whose ``base_dir`` Debian keeps in /run/dovecot."""
    paths = config.paths
    base = paths.dovecot_base if private else DOVECOT_BASE_DIR
    context: dict[str, Any] = {
        "private_instance": private,
        "config_directory": paths.dovecot_conf if private else config.dovecot_config.parent,
        "log_path": config.dovecot_log,
        "ssl_dh": DOVECOT_DH if DOVECOT_DH.exists() else None,
        # Relative to base_dir for Dovecot; Postfix gets the absolute path.
        "auth_socket_name": AUTH_SOCKET_NAME,
        "auth_socket": base / AUTH_SOCKET_NAME,
        # A multi-node edge proxies POP3 to its maildrop backend (deploy.py).
        "proxy_host": None,
        "login_trusted_networks": [],
    }
    if private:
        context.update(base_dir=base, instance_name="sw-" + paths.state_dir.name,
                       state_dir=paths.dovecot_state)
    return context


def _database(config: Config) -> dict[str, Any]:
    db = conninfo_to_dict(config.database.conninfo)
    return {
        "dbname": db.get("dbname", "singlewindow"),
        "roles": list(configmod.ROLES),
        # Dovecot logs in as its own role (migration 0007), with the password from
        # its own password file when the database is remote. Postfix reads no table
        # of the database: its lookup tables are files (singlewindow.maps).
        "dovecot_connect": config.database.dsn(configmod.DOVECOT_ROLE),
        # Who reaches the database over TCP (a multi-node deployment): role, address.
        "tcp_clients": [],
        "peer_map": [list(pair) for pair in PEER_MAP],
    }
