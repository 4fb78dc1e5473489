"""The maildrop hop's backend (sw-maildrop) run for a test, and certificates for it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import singlewindow
from singlewindow.config import Config, to_toml


@dataclass(frozen=True)
class Certificates:
    ca: Path
    """The CA the edges trust."""
    cert: Path
    key: Path
    """A certificate the CA issued for ``localhost`` and 127.0.0.1 (and its key)."""
    rogue_cert: Path
    rogue_key: Path
    """A self-signed certificate for the same names: no CA the edges trust issued it."""


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def certificates(directory: Path) -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    names = "subjectAltName=DNS:localhost,IP:127.0.0.1"
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    _openssl("req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "2",
             "-subj", "/CN=test hop CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", str(ca_key), "-out", str(ca))
    cert, key, csr = directory / "cert.pem", directory / "key.pem", directory / "csr.pem"
    _openssl("req", "-new", "-nodes", "-newkey", "rsa:2048", "-subj", "/CN=localhost",
             "-keyout", str(key), "-out", str(csr))
    ext = directory / "ext"
    ext.write_text(f"basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n{names}\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-days", "2", "-extfile", str(ext), "-out", str(cert))
    rogue_cert, rogue_key = directory / "rogue.pem", directory / "rogue.key"
    _openssl("req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "2",
             "-subj", "/CN=localhost", "-addext", names,
             "-keyout", str(rogue_key), "-out", str(rogue_cert))
    return Certificates(ca, cert, key, rogue_cert, rogue_key)


def answers(host: str, port: int) -> bool:
    """The service answers (its greeting, or its refusal of this address)."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            return sock.recv(512)[:3] in (b"220", b"554")
    except OSError:
        return False


@contextlib.contextmanager
def backend(config: Config, directory: Path, timeout: float = 30.0,
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m singlewindow.transport.backend --config FILE`` with ``config`` (and
    ``env`` added to its environment), until it answers on ``[maildrop] listen``; its output
    in ``directory/sw-maildrop.log``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "backend.toml"
    path.write_text(to_toml(config))
    host, port = config.maildrop.listen_address
    log = directory / "sw-maildrop.log"
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("SW_STATE_DIR", "NOTIFY_SOCKET")}
    # The same source tree as this process's (a bench puts it on sys.path itself).
    source = str(Path(singlewindow.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [source, environment.get("PYTHONPATH")]))
    environment.update(env or {})
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "singlewindow.transport.backend",
                                 "--config", str(path)], stdout=out, stderr=out,
                                env=environment)
    try:
        deadline = time.monotonic() + timeout
        while not answers("127.0.0.1" if host == "0.0.0.0" else host, port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"sw-maildrop did not start: {log.read_text()}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
