"""A test CA and the certificates it signs, with the openssl command line."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(pki: Path, ca: str) -> None:
    """A self-signed CA: ``ca``.pem and ``ca``.key in ``pki``."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            "-subj", f"/CN=Single Window test {ca}", "-keyout", f"{ca}.key",
            "-out", f"{ca}.pem", cwd=pki)


def issue(pki: Path, ca: str, name: str, out: str) -> None:
    """A server certificate for ``name`` signed by ``ca`` (ca.pem/ca.key in ``pki``):
    ``out``.crt and ``out``.key."""
    (pki / f"{out}.ext").write_text(f"subjectAltName=DNS:{name}\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{out}.key", "-out", f"{out}.csr", cwd=pki)
    openssl("x509", "-req", "-in", f"{out}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "30", "-extfile", f"{out}.ext", "-out", f"{out}.crt",
            cwd=pki)
