"""The policy daemon on its real socket, fed real Postfix requests at several read sizes."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.support.local import short_state_dir

from singlewindow.config import Config, Database
from singlewindow.policy import server
from singlewindow.store import directory

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "policy"


def exchange(path: Path, payload: bytes, size: int) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        for i in range(0, len(payload), size):
            s.sendall(payload[i:i + size])
        reply = b""
        while reply.count(b"\n\n") < payload.count(b"\n\n"):
            chunk = s.recv(4096)
            assert chunk, "policy daemon closed the connection"
            reply += chunk
        return reply


def run_daemon(config: Config, path: Path, payload: bytes, size: int) -> bytes:
    async def main() -> bytes:
        ready = asyncio.Event()
        task = asyncio.create_task(server.serve(config, ready))
        await ready.wait()
        try:
            return await asyncio.to_thread(exchange, path, payload, size)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return asyncio.run(main())


@pytest.fixture
def state_dir() -> Iterator[Path]:
    state = short_state_dir()
    yield state
    shutil.rmtree(state, ignore_errors=True)


def demo_config(database_config: Config, state: Path) -> Config:
    return replace(database_config, paths=replace(database_config.paths, state_dir=state))


@pytest.fixture
def golden_parties(conn: psycopg.Connection[Any]) -> None:
    directory.add_party(conn, "acme", "company", ["127.0.0.1/32"], "127.0.0.1:2601")
    directory.add_address(conn, "acme@sw.test", "acme", "edi@acme.example", None, "sw.test")
    directory.add_party(conn, "brightline", "company", [], None)
    directory.add_account(conn, "brightline", "brightline", "{SHA512-CRYPT}$6$x",
                          "{DIGEST-MD5}" + "0" * 32)
    directory.add_address(conn, "brightline@sw.test", "brightline",
                          "clerk@brightline.example", "brightline", "sw.test")
    directory.add_party(conn, "customs", "agency", [], None)
    directory.add_address(conn, "customs@sw.test", "customs", "d@customs.example", None,
                          "sw.test")


@pytest.mark.parametrize("size", [1, 13, 4096])
@pytest.mark.parametrize("name", ["mta", "msa"])
def test_golden_request_gets_golden_reply(database_config: Config, golden_parties: None,
                                          state_dir: Path, name: str, size: int) -> None:
    config = demo_config(database_config, state_dir)
    request = (GOLDEN / f"{name}-request.bin").read_bytes()
    reply = run_daemon(config, config.paths.policy_socket, request, size)
    assert reply == (GOLDEN / f"{name}-reply.bin").read_bytes()


def test_two_requests_on_one_connection(database_config: Config, golden_parties: None,
                                        state_dir: Path) -> None:
    config = demo_config(database_config, state_dir)
    request = (GOLDEN / "mta-request.bin").read_bytes()
    reply = run_daemon(config, config.paths.policy_socket, request * 2, 64)
    assert reply == (GOLDEN / "mta-reply.bin").read_bytes() * 2


def test_unreachable_database_defers(database_config: Config, state_dir: Path) -> None:
    config = demo_config(database_config, state_dir)
    # A socket directory where no PostgreSQL listens.
    config = replace(config, database=Database(conninfo=f"host={state_dir} dbname=x user=sw",
                                               connect_timeout=1))
    request = (GOLDEN / "mta-request.bin").read_bytes()
    reply = run_daemon(config, config.paths.policy_socket, request, 4096)
    assert reply == b"action=451 4.3.0 Single Window is temporarily unable to decide\n\n"
