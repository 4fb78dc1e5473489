"""swctl against a real database: every form of SPEC §6 it owns, and its one-line errors."""

from __future__ import annotations

import io
import sys
from typing import Any

import psycopg
import pytest

from singlewindow import cli, passwords
from singlewindow.config import Config
from singlewindow.store import directory, messages


@pytest.fixture
def swctl(database_config: Config, conn: psycopg.Connection[Any],
          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.setenv("SW_STATE_DIR", str(database_config.paths.state_dir))

    def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_full_setup(swctl: Any, conn: psycopg.Connection[Any]) -> None:
    assert swctl("db", "migrate")[1] == "schema is up to date\n"
    assert swctl("party", "add", "acme", "--kind", "company", "--peer", "10.1.0.0/24",
                 "--relay", "127.0.0.1:2601")[0] == 0
    assert swctl("party", "add", "customs", "--kind", "agency", "--peer", "10.9.0.1")[0] == 0
    assert swctl("account", "add", "acme-clerk", "--party", "acme", "--password-stdin",
                 stdin="correct horse battery\n")[0] == 0
    assert swctl("address", "add", "acme@sw.test", "--party", "acme", "--physical",
                 "edi@acme.example", "--maildrop", "acme-clerk")[0] == 0
    assert swctl("address", "add", "customs@sw.test", "--party", "customs", "--physical",
                 "in@customs.example", "--inactive")[0] == 0
    assert swctl("address", "activate", "customs@sw.test")[0] == 0
    assert swctl("link", "deny", "acme", "customs")[0] == 0
    assert swctl("link", "allow", "acme", "agency")[0] == 0
    assert swctl("route", "add", "customs@sw.test", "--type", "PAXLST", "--to",
                 "customs@sw.test")[0] == 0

    row = conn.execute("SELECT password_hash, digest_md5_hash FROM account").fetchone()
    assert row is not None
    assert passwords.verify_strong("correct horse battery", row["password_hash"])
    assert row["digest_md5_hash"] == passwords.digest_md5_hash(
        "acme-clerk", "sw.test", "correct horse battery")
    customs = directory.find_logical(conn, "customs@sw.test")
    acme = directory.find_logical(conn, "acme@sw.test")
    assert customs is not None and customs.active
    assert acme is not None and acme.maildrop_login == "acme-clerk"
    assert not directory.link_allowed(conn, acme.party, customs.party)
    code, out, _ = swctl("party", "list")
    assert code == 0 and "acme\tcompany\trelay=127.0.0.1:2601\tpeers=10.1.0.0/24" in out
    code, out, _ = swctl("address", "list")
    assert "maildrop:acme-clerk" in out and "customs@sw.test\tcustoms" in out


@pytest.mark.parametrize("argv,message", [
    (["address", "add", "x@sw.test", "--party", "ghost", "--physical", "x@ghost.example"],
     "unknown party 'ghost'"),
    (["party", "add", "bad", "--kind", "company", "--peer", "10.0.0.1/40"], "invalid network"),
    (["party", "add", "bad", "--kind", "company", "--relay", "nohostport"], "invalid relay"),
    (["address", "add", "x@sw.test", "--party", "acme", "--physical", "not an address"],
     "invalid mail address"),
    (["address", "activate", "ghost@sw.test"], "unknown logical address"),
    (["link", "allow", "ghost", "agency"], "unknown party 'ghost'"),
])
def test_errors_are_one_line(swctl: Any, argv: list[str], message: str) -> None:
    swctl("party", "add", "acme", "--kind", "company")
    code, _out, err = swctl(*argv)
    assert code == 1
    assert err.startswith("swctl: error: ") and message in err
    assert err.count("\n") == 1


def test_duplicate_address_refused(swctl: Any) -> None:
    swctl("party", "add", "acme", "--kind", "company")
    argv = ["address", "add", "acme@sw.test", "--party", "acme", "--physical", "a@acme.example"]
    assert swctl(*argv)[0] == 0
    code, _, err = swctl(*argv)
    assert code == 1 and "already exists" in err


def test_password_on_command_line_refused(swctl: Any, conn: psycopg.Connection[Any]) -> None:
    swctl("party", "add", "acme", "--kind", "company")
    code, _, err = swctl("account", "add", "clerk", "--party", "acme", "--password", "secret123")
    assert code == 1 and "--password-stdin" in err and "secret123" not in err
    code, _, err = swctl("account", "add", "clerk", "--party", "acme")
    assert code == 1 and "--password-stdin" in err
    code, _, err = swctl("account", "add", "clerk", "--party", "acme", "--password-stdin",
                         stdin="short\n")
    assert code == 1 and "too short" in err
    assert conn.execute("SELECT count(*) AS n FROM account").fetchone() == {"n": 0}


def test_unreachable_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "singlewindow.toml").write_text(
        f'[database]\nconninfo = "host={tmp_path} dbname=x user=sw password=hunter2"\n'
        "connect_timeout = 1\n")
    monkeypatch.setenv("SW_STATE_DIR", str(tmp_path))
    assert cli.main(["party", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("swctl: error: cannot reach the database")
    assert "hunter2" not in err


def test_trace_of_a_notice_about_no_known_message(swctl: Any,
                                                  conn: psycopg.Connection[Any]) -> None:
    """A notice Single Window could not tie to a message has only its own row; trace
    shows it rather than failing on the forwards and notices it does not have."""
    notice = messages.Notice("k" * 24, None, "acme@sw.test", "edi@acme.example", "dsn",
                             "<SWNorphan@sw.test>")
    claim = messages.claim_notice(conn, notice, lease=60)
    messages.mark_injected(conn, claim, "4QORPHAN1")
    code, out, err = swctl("trace", "4QORPHAN1")
    assert (code, err) == (0, "")
    assert "about no known message" in out and "<SWNorphan@sw.test>" in out
