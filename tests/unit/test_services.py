"""The node's daemons and the process checks on them: real processes, sockets and pid
files, no Postfix needed."""

from __future__ import annotations

import http.server
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from singlewindow import services
from singlewindow.config import Config, Console, Metrics, Paths, Tls
from tests.support import pki
from tests.support.local import free_port, scratch_state_dir


@pytest.fixture
def state() -> Iterator[Path]:
    with scratch_state_dir() as path:
        yield path


def test_every_daemon_is_a_module_of_the_package_and_answers_where_the_config_says(
        state: Path) -> None:
    config = replace(Config(), paths=Paths(state),
                     metrics=Metrics(listen="127.0.0.1:9155"),
                     console=Console(listen="127.0.0.1:9156"))
    assert set(services.DAEMONS) == {"policyd", "transport", "milter", "metrics", "console"}
    for daemon in services.DAEMONS.values():
        assert daemon.module.startswith("singlewindow.")
        __import__(daemon.module)  # each one exists
    assert services.DAEMONS["policyd"].where(config) == str(config.paths.policy_socket)
    assert services.DAEMONS["transport"].where(config) == str(config.paths.lmtp_socket)
    assert services.DAEMONS["milter"].where(config) == str(config.paths.milter_socket)
    assert services.DAEMONS["metrics"].where(config) == "127.0.0.1:9155"
    assert services.DAEMONS["console"].where(config) == "127.0.0.1:9156"


def test_a_pid_file_is_read_and_a_broken_one_is_none(state: Path) -> None:
    pid_file = state / "x.pid"
    assert services.read_pid(pid_file) is None  # missing
    pid_file.write_text("")
    assert services.read_pid(pid_file) is None  # empty
    pid_file.write_text("not-a-pid\n")
    assert services.read_pid(pid_file) is None
    pid_file.write_text("  4242\n")  # Postfix's master.pid pads with blanks
    assert services.read_pid(pid_file) == 4242


def test_alive_means_that_pid_runs_the_named_program() -> None:
    child = subprocess.Popen([sys.executable, "-c",
                              "import time; print('up', flush=True); time.sleep(30)",
                              "sw-services-marker"], stdout=subprocess.PIPE)
    try:
        # Running its own code, so exec is done: before it, /proc shows pytest's cmdline.
        assert child.stdout is not None and child.stdout.readline() == b"up\n"
        assert services.alive(child.pid, "sw-services-marker")
        # A reused pid running something else is not the daemon.
        assert not services.alive(child.pid, "singlewindow.transport")
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert not services.alive(child.pid, "sw-services-marker")


def test_a_unix_socket_serves_only_once_it_is_0660_and_accepts(state: Path) -> None:
    path = state / "d.sock"
    assert not services.serving(path)  # missing
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(path))
        os.chmod(path, 0o600)
        listener.listen()
        assert not services.serving(path)  # root could connect, Postfix could not
        os.chmod(path, 0o660)
        assert services.serving(path)
    finally:
        listener.close()
    assert not services.serving(path)  # a stale socket refuses


def test_readiness_over_tcp_is_a_port_that_accepts(state: Path) -> None:
    port = free_port()
    config = replace(Config(), paths=Paths(state),
                     metrics=Metrics(listen=f"127.0.0.1:{port}"))
    metrics = services.DAEMONS["metrics"]
    assert not metrics.ready(config)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert metrics.ready(config)
        assert services.port_open("127.0.0.1", port)
    assert not services.port_open("127.0.0.1", port)


# --- the console's probe: a real HTTPS server ----------------------------------------------

@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA with a server certificate (``server.crt``), and a second CA that signed
    nothing the server shows."""
    where = tmp_path_factory.mktemp("pki")
    pki.make_ca(where, "ca")
    pki.make_ca(where, "other")
    pki.issue(where, "ca", "console.test", "server")
    return where


class _Pages(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/login" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _https(certificates: Path, status: int) -> tuple[http.server.HTTPServer, int]:
    handler = type("Pages", (_Pages,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates / "server.crt", certificates / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.mark.parametrize(("status", "trust", "wrong"), [
    (200, "ca.pem", None),
    # The node's own certificate as the anchor (self-signed, or the operator's chain).
    (200, "server.crt", None),
    (503, "ca.pem", "answers GET /login with HTTP 503"),
    (200, "other.pem", "TLS: CERTIFICATE_VERIFY_FAILED")])
def test_the_console_answers_a_page_over_verified_tls(certificates: Path, status: int,
                                                      trust: str, wrong: str | None) -> None:
    server, port = _https(certificates, status)
    try:
        found = services.https_answers("127.0.0.1", port, "/login", certificates / trust, 5)
    finally:
        server.shutdown()
        server.server_close()
    assert found == wrong


def test_the_console_probe_trusts_the_nodes_ca_else_its_own_certificate(
        certificates: Path, state: Path) -> None:
    server, port = _https(certificates, 200)
    try:
        config = replace(Config(), paths=Paths(state),
                         console=Console(listen=f"127.0.0.1:{port}",
                                         cert_file=certificates / "server.crt"))
        assert services.console_trust(config) == certificates / "server.crt"
        assert services.console_answers(config, 5) is None
        config = replace(config, tls=Tls(ca_file=certificates / "other.pem"))
        assert services.console_trust(config) == certificates / "other.pem"
        assert services.console_answers(config, 5) == "TLS: CERTIFICATE_VERIFY_FAILED"
    finally:
        server.shutdown()
        server.server_close()
    assert services.console_answers(config, 5) == "connection refused"
