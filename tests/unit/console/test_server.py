"""``python -m singlewindow.console.server`` for real: HTTPS only with a certificate of a
CA of its own (as the local stack makes one), READY=1 and watchdog pings, a clean stop on
SIGTERM."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from singlewindow import config as configmod
from singlewindow.config import Config, Console, Paths
from tests.support.local import free_port, scratch_state_dir
from tests.support.pki import issue, make_ca


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    notify: socket.socket
    port: int
    ca: Path
    log: Path

    def said(self) -> bytes:
        return self.notify.recv(64)


@pytest.fixture
def served(database_config: Config) -> Iterator[Served]:
    with scratch_state_dir() as state:
        make_ca(state, "ca")
        issue(state, "ca", "localhost", "console")
        port = free_port()
        config = replace(database_config, paths=Paths(state_dir=state), console=Console(
            listen=f"127.0.0.1:{port}", cert_file=state / "console.crt",
            key_file=state / "console.key"))
        file = state / "console.toml"
        file.write_text(configmod.to_toml(config))
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(state / "notify"))
        notify.settimeout(30)
        log = state / "console.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "singlewindow.console.server", "--config", str(file)],
                stdout=out, stderr=out, env={**os.environ, "NOTIFY_SOCKET": str(
                    state / "notify"), "WATCHDOG_USEC": "400000"})
        try:
            yield Served(proc, notify, port, state / "ca.pem", log)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            notify.close()


def test_serves_https_only_and_stops_cleanly_on_sigterm(served: Served) -> None:
    assert served.said() == b"READY=1", served.log.read_text()
    context = ssl.create_default_context(cafile=str(served.ca))
    connection = http.client.HTTPSConnection("localhost", served.port, context=context,
                                             timeout=10)
    connection.request("GET", "/login")
    answer = connection.getresponse()
    page = answer.read().decode()
    assert answer.status == 200 and 'id="login-form"' in page
    assert answer.getheader("strict-transport-security") == "max-age=31536000"
    assert answer.getheader("server") is None
    connection.close()
    # Its event loop runs: the watchdog hears from it (every half of WATCHDOG_USEC).
    assert served.said() == b"WATCHDOG=1"
    # Plain HTTP gets no page.
    plain = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    with pytest.raises((http.client.HTTPException, OSError)):
        plain.request("GET", "/login")
        plain.getresponse().read()
    plain.close()
    # Nor does a client that offers only TLS 1.1 or older.
    old = ssl.create_default_context(cafile=str(served.ca))
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError), socket.create_connection(
            ("127.0.0.1", served.port), timeout=10) as raw, old.wrap_socket(
            raw, server_hostname="localhost"):
        pass
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=30) == 0, served.log.read_text()
    said = served.said()
    while said == b"WATCHDOG=1":
        said = served.said()
    assert said == b"STOPPING=1"
