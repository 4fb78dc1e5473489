"""swctl against a real database: every form of SPEC §6 it owns, and its one-line errors."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from singlewindow import cli, mig, passwords
from singlewindow.config import Config
from singlewindow.store import console, directory, messages, snapshot
from singlewindow.transport import submission
from tests.support import factory
from tests.support.swctl import call as swctl_call


@pytest.fixture
def swctl(database_config: Config, conn: psycopg.Connection[Any],
          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.setenv("SW_STATE_DIR", str(database_config.paths.state_dir))

    def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        return swctl_call(argv, monkeypatch, capsys, stdin)
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
    (["address", "add", "x@sw.test", "--party", "acme", "--physical", "x@acme.example",
      "--maildrop", "clerk"], "unknown account 'clerk': add it first with swctl account add "
                              "clerk --party acme --password-stdin"),
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


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
            ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command of the parser (a parser without subcommands), with its words."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield path, parser
    for group in groups:
        for name, sub in group.choices.items():
            yield from _leaves(sub, (*path, name))


def _required(parser: argparse.ArgumentParser) -> list[str]:
    """The smallest argument list the command takes: its positionals and required options."""
    argv: list[str] = []
    for action in parser._actions:
        value = str(action.choices[0]) if action.choices else "x"
        if not action.option_strings:
            argv.append(value)
        elif action.required:
            argv += [action.option_strings[0], value]
    return argv


def test_every_command_takes_state_dir_before_and_after() -> None:
    """Issue 14: ``--state-dir`` in the same places for every command: before the command
    and among its own arguments (first or last), the latter winning."""
    parser = cli.build_parser()
    commands = list(_leaves(parser))
    assert len(commands) >= 20  # the walk found the commands (not just the top)
    for words, command in commands:
        rest = _required(command)
        for argv, expected in [
            (["--state-dir", "/before", *words, *rest], "/before"),
            ([*words, *rest, "--state-dir", "/after"], "/after"),
            ([*words, "--state-dir", "/among", *rest], "/among"),
            (["--state-dir", "/before", *words, *rest, "--state-dir", "/after"], "/after"),
            ([*words, *rest], None),
        ]:
            args = parser.parse_args(argv)
            assert args.state_dir == expected, (argv, args)
            assert args.handler is not None


@pytest.mark.parametrize("module", ["singlewindow.policy.server",
                                    "singlewindow.transport.server",
                                    "singlewindow.milter.server", "singlewindow.supervisor"])
@pytest.mark.parametrize("place", ["first", "last"])
def test_daemons_take_state_dir_anywhere(module: str, place: str, tmp_path: Path) -> None:
    """Each daemon reads the config of the state directory it is given, wherever the
    option stands: a file there with an unknown option stops it naming the option."""
    import importlib
    (tmp_path / "singlewindow.toml").write_text("[hub]\nno_such_option = 1\n")
    argv = (["--state-dir", str(tmp_path), "-v"] if place == "first"
            else ["-v", "--state-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(module).main(argv)
    assert "unknown option hub.no_such_option" in str(stopped.value.code)


def _operator_guide() -> list[list[str]]:
    """The README's operator guide block, one argument list per command."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = text.split("## Operator guide", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line, comments=True)
            for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_operator_guide_runs_verbatim(swctl: Any, conn: psycopg.Connection[Any],
                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Issue 14: the guide's commands, in its order, each succeed; its PAXLST route then
    routes a PAXLST of every release, as the transport asks (Router.routes)."""
    # The guide's peer networks are its example hub's, not this machine's interfaces.
    monkeypatch.setattr(cli, "_interface_addresses", list)
    (tmp_path / "password-file").write_text("correct horse battery staple\n")
    commands = _operator_guide()
    assert len(commands) >= 10
    for argv in commands:
        assert argv[0] == "swctl"
        stdin = ""
        if "<" in argv:
            at = argv.index("<")
            stdin = (tmp_path / argv[at + 1]).read_text()
            argv = argv[:at] + argv[at + 2:]
        code, _, err = swctl(*argv[1:], stdin=stdin)
        assert (code, err) == (0, ""), argv
    rows = conn.execute("SELECT DISTINCT message_type FROM route").fetchall()
    assert rows == [{"message_type": "PAXLST"}]
    where, registry = snapshot.load(conn), mig.registry()
    for release in ("02B", "03B", "05B"):
        found = mig.validate(factory.paxlst(release=release), "application/EDIFACT")
        assert found.message_type == f"PAXLST-D{release}"
        assert [a.logical for a in submission.routes(where, registry, "customs@sw.test",
                                                 found.message_type)] == \
            ["coastguard@sw.test", "customs@sw.test"]
    gendec = mig.validate(factory.gendec(), "application/xml")
    assert submission.routes(where, registry, "customs@sw.test", gendec.message_type) == []
    clerk = directory.find_logical(conn, "brightline@sw.test")
    assert clerk is not None and clerk.maildrop_login == "clerk"


@pytest.mark.parametrize("given,stored", [("PAXLST", "PAXLST"), ("paxlst", "PAXLST"),
                                          ("PAXLST-D03B", "PAXLST-D03B"),
                                          ("gendec", "GENDEC"), ("GENDEC-1", "GENDEC-1")])
def test_route_type_as_the_mig_names_it(swctl: Any, conn: psycopg.Connection[Any],
                                        given: str, stored: str) -> None:
    swctl("party", "add", "customs", "--kind", "agency")
    swctl("address", "add", "customs@sw.test", "--party", "customs", "--physical",
          "in@customs.example")
    code, out, err = swctl("route", "add", "customs@sw.test", "--type", given, "--to",
                           "customs@sw.test")
    assert (code, err) == (0, "")
    assert f"[{stored}" in out and ("all releases" in out) == ("-" not in stored)
    assert conn.execute("SELECT message_type FROM route").fetchall() == [
        {"message_type": stored}]


def test_unknown_route_type_refused_with_the_known_ones(swctl: Any,
                                                        conn: psycopg.Connection[Any]) -> None:
    swctl("party", "add", "customs", "--kind", "agency")
    swctl("address", "add", "customs@sw.test", "--party", "customs", "--physical",
          "in@customs.example")
    code, out, err = swctl("route", "add", "customs@sw.test", "--type", "PAXLIST", "--to",
                           "customs@sw.test")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("swctl: error: unknown message type 'PAXLIST'")
    assert "PAXLST (PAXLST-D02B, PAXLST-D03B, PAXLST-D05B)" in err
    assert "IFTDGN (IFTDGN-D03A)" in err and "GENDEC (GENDEC-1)" in err
    assert conn.execute("SELECT count(*) AS n FROM route").fetchone() == {"n": 0}


def test_trace_of_a_notice_about_no_known_message_shows_its_lock_waits(
        swctl: Any, conn: psycopg.Connection[Any]) -> None:
    """Issue 14: its maildrop-deferred events have no message (migration 0010), and its
    trace still shows them."""
    notice = messages.Notice("w" * 24, None, "bright@sw.test", "clerk@bright.example", "dsn",
                             "<SWNwaited@sw.test>")
    claim = messages.claim_notice(conn, notice, lease=60)
    messages.release_locked(conn, claim, "bright", "4.2.1")
    claim = messages.claim_notice(conn, notice, lease=60)
    messages.mark_injected(conn, claim, "maildrop")
    code, out, err = swctl("trace", "<SWNwaited@sw.test>")
    assert (code, err) == (0, "")
    assert "DSN generated by Single Window at" in out
    assert re.search(r"to bright@sw\.test \(saved into the POP3 maildrop at [0-9:]{8}, "
                     r"2 attempts, deferred 1x: a POP3 session held the maildrop", out), out
    assert re.search(r'\n  [0-9:.]{15} maildrop-deferred \{[^\n]*"leg": "notice", '
                     r'"login": "bright", "recipient": "bright@sw\.test", '
                     r'"status": "4\.2\.1"\}', out), out


# --- operator (issue 18: the web console) ------------------------------------------------

def test_operators_are_added_listed_and_removed(swctl: Any,
                                                conn: psycopg.Connection[Any]) -> None:
    conn.execute("TRUNCATE operator, console_session")
    assert swctl("operator", "add", "night-op", "--password-stdin",
                 stdin="correct horse battery\n") == (0, "operator night-op added\n", "")
    assert swctl("operator", "add", "amy", "--password-stdin", stdin="another long one")[0] == 0
    assert swctl("operator", "list") == (0, "amy\nnight-op\n", "")
    row = conn.execute("SELECT password_hash FROM operator WHERE name = 'night-op'").fetchone()
    assert row is not None
    assert passwords.verify_strong("correct horse battery", row["password_hash"])
    code, _, err = swctl("operator", "add", "amy", "--password-stdin", stdin="another long one")
    assert (code, err) == (1, "swctl: error: operator 'amy': already exists\n")
    assert swctl("operator", "remove", "amy")[0] == 0
    assert swctl("operator", "list")[1] == "night-op\n"
    code, _, err = swctl("operator", "remove", "amy")
    assert (code, err) == (1, "swctl: error: unknown operator 'amy'\n")


def test_an_operators_password_comes_from_stdin_only(swctl: Any,
                                                     conn: psycopg.Connection[Any]) -> None:
    conn.execute("TRUNCATE operator, console_session")
    code, _, err = swctl("operator", "add", "amy", "--password", "secret123")
    assert code == 1 and "--password-stdin" in err and "secret123" not in err
    code, _, err = swctl("operator", "add", "amy")
    assert code == 1 and "--password-stdin" in err
    code, _, err = swctl("operator", "add", "amy", "--password-stdin", stdin="short\n")
    assert code == 1 and "too short" in err
    code, _, err = swctl("operator", "add", "Amy", "--password-stdin",
                         stdin="correct horse battery\n")
    assert code == 1 and err.startswith("swctl: error: invalid operator name 'Amy'")
    assert conn.execute("SELECT count(*) AS n FROM operator").fetchone() == {"n": 0}


def test_a_name_is_an_operators_or_an_accounts_never_both(
        swctl: Any, conn: psycopg.Connection[Any]) -> None:
    conn.execute("TRUNCATE operator, console_session")
    swctl("party", "add", "acme", "--kind", "company")
    assert swctl("account", "add", "clerk", "--party", "acme", "--password-stdin",
                 stdin="correct horse battery\n")[0] == 0
    assert swctl("operator", "add", "amy", "--password-stdin",
                 stdin="correct horse battery\n")[0] == 0
    code, _, err = swctl("operator", "add", "clerk", "--password-stdin",
                         stdin="correct horse battery\n")
    assert (code, err) == (1, "swctl: error: operator 'clerk': 'clerk' is an account's "
                              "login; choose another name\n")
    code, _, err = swctl("account", "add", "amy", "--party", "acme", "--password-stdin",
                         stdin="correct horse battery\n")
    assert (code, err) == (1, "swctl: error: account 'amy': 'amy' is an operator's name; "
                              "choose another login\n")
    assert conn.execute("SELECT login FROM account").fetchall() == [{"login": "clerk"}]
    assert conn.execute("SELECT name FROM operator").fetchall() == [{"name": "amy"}]


# --- changing a password -----------------------------------------------------------------

def _sessions(conn: psycopg.Connection[Any], login: str) -> int:
    row = conn.execute("SELECT count(*) AS n FROM console_session WHERE login = %s",
                       (login,)).fetchone()
    assert row is not None
    return int(row["n"])


def _open_session(conn: psycopg.Connection[Any], login: str, token: str) -> None:
    who = console.credential(conn, login)
    assert who is not None
    console.open_session(conn, token * 64, who, "csrf")


def test_an_operators_password_is_changed_and_its_sessions_end(
        swctl: Any, conn: psycopg.Connection[Any]) -> None:
    conn.execute("TRUNCATE operator, console_session")
    for name in ("amy", "bob"):
        assert swctl("operator", "add", name, "--password-stdin",
                     stdin="correct horse battery\n")[0] == 0
    _open_session(conn, "amy", "a")
    _open_session(conn, "bob", "b")
    assert swctl("operator", "passwd", "amy", "--password-stdin",
                 stdin="a brand new secret\n") == (
        0, "operator amy: password changed (its console sessions ended)\n", "")
    row = conn.execute("SELECT password_hash FROM operator WHERE name = 'amy'").fetchone()
    assert row is not None
    assert passwords.verify_strong("a brand new secret", row["password_hash"])
    assert not passwords.verify_strong("correct horse battery", row["password_hash"])
    assert (_sessions(conn, "amy"), _sessions(conn, "bob")) == (0, 1)


def test_an_accounts_password_is_changed_in_both_hashes_and_its_sessions_end(
        swctl: Any, conn: psycopg.Connection[Any], database_config: Config) -> None:
    conn.execute("TRUNCATE operator, console_session")
    swctl("party", "add", "acme", "--kind", "company")
    for login in ("clerk", "desk"):
        assert swctl("account", "add", login, "--party", "acme", "--password-stdin",
                     stdin="correct horse battery\n")[0] == 0
    _open_session(conn, "clerk", "c")
    _open_session(conn, "desk", "d")
    assert swctl("account", "passwd", "clerk", "--password-stdin",
                 stdin="a brand new secret\n") == (
        0, "account clerk: password changed (its console sessions ended)\n", "")
    rows = {r["login"]: r for r in conn.execute(
        "SELECT login, password_hash, digest_md5_hash FROM account")}
    realm = database_config.hub.sasl_realm
    assert passwords.verify_strong("a brand new secret", rows["clerk"]["password_hash"])
    assert rows["clerk"]["digest_md5_hash"] == passwords.digest_md5_hash(
        "clerk", realm, "a brand new secret")
    assert passwords.verify_strong("correct horse battery", rows["desk"]["password_hash"])
    assert rows["desk"]["digest_md5_hash"] == passwords.digest_md5_hash(
        "desk", realm, "correct horse battery")
    assert (_sessions(conn, "clerk"), _sessions(conn, "desk")) == (0, 1)


@pytest.mark.parametrize("group,name", [("operator", "amy"), ("account", "clerk")])
def test_a_changed_password_comes_from_stdin_only_and_keeps_the_rules(
        swctl: Any, conn: psycopg.Connection[Any], group: str, name: str) -> None:
    conn.execute("TRUNCATE operator, console_session")
    swctl("party", "add", "acme", "--kind", "company")
    add = ("operator", "add", name) if group == "operator" else (
        "account", "add", name, "--party", "acme")
    assert swctl(*add, "--password-stdin", stdin="correct horse battery\n")[0] == 0
    before = conn.execute("SELECT (SELECT array_agg(password_hash) FROM operator) AS o,"
                          " (SELECT array_agg(password_hash || digest_md5_hash) FROM account)"
                          " AS a").fetchone()
    code, _, err = swctl(group, "passwd", name, "--password", "secret1234")
    assert code == 1 and "--password-stdin" in err and "secret1234" not in err
    code, _, err = swctl(group, "passwd", name)
    assert code == 1 and "--password-stdin" in err
    code, _, err = swctl(group, "passwd", name, "--password-stdin", stdin="short\n")
    assert (code, err) == (1, "swctl: error: password too short (at least 8 characters)\n")
    code, _, err = swctl(group, "passwd", name, "--password-stdin", stdin="x" * 1025)
    assert code == 1 and "too long" in err
    assert conn.execute("SELECT (SELECT array_agg(password_hash) FROM operator) AS o,"
                        " (SELECT array_agg(password_hash || digest_md5_hash) FROM account)"
                        " AS a").fetchone() == before


@pytest.mark.parametrize("group,kind", [("operator", "operator"), ("account", "account")])
def test_changing_an_unknown_logins_password_is_refused(
        swctl: Any, conn: psycopg.Connection[Any], group: str, kind: str) -> None:
    conn.execute("TRUNCATE operator, console_session")
    code, out, err = swctl(group, "passwd", "nobody", "--password-stdin",
                           stdin="a brand new secret\n")
    assert (code, out, err) == (1, "", f"swctl: error: unknown {kind} 'nobody'\n")


def test_an_operator_is_no_account_to_change_and_an_account_no_operator(
        swctl: Any, conn: psycopg.Connection[Any]) -> None:
    conn.execute("TRUNCATE operator, console_session")
    swctl("party", "add", "acme", "--kind", "company")
    swctl("account", "add", "clerk", "--party", "acme", "--password-stdin",
          stdin="correct horse battery\n")
    swctl("operator", "add", "amy", "--password-stdin", stdin="correct horse battery\n")
    assert swctl("operator", "passwd", "clerk", "--password-stdin",
                 stdin="a brand new secret\n")[0] == 1
    assert swctl("account", "passwd", "amy", "--password-stdin",
                 stdin="a brand new secret\n")[0] == 1

# --- audit (issue 18: what each console login looked at) ---------------------------------

def test_audit_prints_who_looked_at_what_newest_first(swctl: Any,
                                                      conn: psycopg.Connection[Any]) -> None:
    for login, kind, action, message_id, detail in (
            ("amy", "operator", "message", "SW1", None),
            ("clerk", "company", "search", None, 'text="x\ny"'),
            ("amy", "operator", "party", None, "acme"),
            ("bob", "operator", "message", "SW1", "<m1@acme.example>")):
        console.record_view(conn, kind, login, "192.0.2.1", action, message_id, detail)
    conn.execute("UPDATE console_view SET at = timestamptz '2026-11-30 08:00Z'"
                 " + make_interval(mins => id::int)")
    code, out, err = swctl("audit")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        '2026-11-30 08:04:00Z operator bob from 192.0.2.1 message SW1 "<m1@acme.example>"',
        '2026-11-30 08:03:00Z operator amy from 192.0.2.1 party - "acme"',
        '2026-11-30 08:02:00Z company clerk from 192.0.2.1 search - "text=\\"x\\ny\\""',
        "2026-11-30 08:01:00Z operator amy from 192.0.2.1 message SW1"]
    assert [line.split()[3] for line in swctl("audit", "--message", "SW1")[1].splitlines()] \
        == ["bob", "amy"]
    assert [line.split()[6] for line in swctl("audit", "--login", "amy")[1].splitlines()] \
        == ["party", "message"]
    assert len(swctl("audit", "--since", "2026-11-30T08:02:30")[1].splitlines()) == 2
    assert len(swctl("audit", "--since", "2026-11-30T09:02:30+01:00")[1].splitlines()) == 2
    assert len(swctl("audit", "--limit", "1")[1].splitlines()) == 1
    code, out, _ = swctl("audit", "--login", "amy", "--message", "SW1", "--json")
    assert code == 0
    [row] = json.loads(out)
    assert {k: row[k] for k in ("kind", "login", "source", "action", "message_id",
                                "detail")} == {
        "kind": "operator", "login": "amy", "source": "192.0.2.1", "action": "message",
        "message_id": "SW1", "detail": None}
    assert row["at"].startswith("2026-11-30")


@pytest.mark.parametrize("argv,message", [
    (["--since", "yesterday"], "--since: not a date and time: 'yesterday'"),
    (["--limit", "0"], "--limit: at least 1")])
def test_audit_refuses_bad_options(swctl: Any, argv: list[str], message: str) -> None:
    assert swctl("audit", *argv) == (1, "", f"swctl: error: {message}\n")
