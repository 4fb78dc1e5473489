"""The hub's PostgreSQL roles as the servers reach them: a system user (postfix, dovecot,
the daemons' user) running the real psql over the unix socket, logging in as a role by
peer authentication (the stack's pg_ident map, issue 12)."""

from __future__ import annotations

from singlewindow import stack
from singlewindow.config import Config


def psql(config: Config, os_user: str, role: str, sql: str) -> tuple[int, str]:
    """Run ``sql`` with the real psql as ``os_user``, logging in as ``role``."""
    layout = config.paths
    result = stack.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                        "-h", str(layout.pg_socket_dir), "-U", role, "-d", "singlewindow",
                        "-c", sql], user=os_user, check=False, cwd=layout.state_dir)
    return result.returncode, result.stdout


def refused(config: Config, os_user: str, role: str, sql: str) -> None:
    code, out = psql(config, os_user, role, sql)
    assert code != 0 and "permission denied" in out, f"{role} may: {sql}\n{out}"
