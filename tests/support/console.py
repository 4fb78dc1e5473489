"""The web console's test world on a running stack: who logs in (an operator added with
``swctl operator add``, a company's account added with ``swctl account add``, each with
its password on standard input as an operator types it) and real submissions through
the hub, each known by its Single Window id once its DSN came back."""

from __future__ import annotations

import secrets
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from singlewindow import trace
from singlewindow.config import Config
from singlewindow.store import connect
from tests.support import factory
from tests.support.sinks import dsn_about
from tests.support.world import Party, World, message, message_id, wait_until


@dataclass(frozen=True)
class Login:
    login: str
    password: str


@dataclass(frozen=True)
class Sent:
    """One submission: its Subject, the submitter's Message-ID, its Single Window id."""

    subject: str
    message_id: str
    swid: str


def base_url(config: Config) -> str:
    """Where the stack serves its console: ``https://HOST:PORT``."""
    host, port = config.console.address
    return f"https://{host}:{port}"


def tls_context(config: Config) -> ssl.SSLContext:
    """A client context that trusts the stack's CA and checks the console's name."""
    return ssl.create_default_context(cafile=str(config.ca_file))


def swctl(config: Config, *argv: str, stdin: str | None = None) -> str:
    """``swctl ARGV... --state-dir DIR`` run as an operator runs it; its stdout."""
    result = subprocess.run([sys.executable, "-m", "singlewindow.cli", *argv, "--state-dir",
                             str(config.paths.state_dir)], input=stdin,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"swctl {' '.join(argv)}: {result.stderr}"
    return result.stdout


def password() -> str:
    return "pw-" + secrets.token_urlsafe(15)


def add_operator(config: Config) -> Login:
    """A new operator, as ``swctl operator add NAME --password-stdin`` makes one."""
    who = Login("op" + secrets.token_hex(3), password())
    swctl(config, "operator", "add", who.login, "--password-stdin", stdin=who.password + "\n")
    return who


def add_account(config: Config, party: Party) -> Login:
    """A login for ``party`` (an MTA company gets one for the console this way), as
    ``swctl account add LOGIN --party NAME --password-stdin`` makes it."""
    who = Login(f"{party.name}-desk", password())
    swctl(config, "account", "add", who.login, "--party", party.name, "--password-stdin",
          stdin=who.password + "\n")
    return who


def submit(world: World, sender: Party, to: Party, body: bytes, content_type: str,
           headers: list[str] | None = None) -> Sent:
    """``sender``'s MTA submits ``body`` to ``to``'s logical address; returns once the DSN
    about it reached ``sender``'s MTA."""
    subject = f"console {secrets.token_hex(5)}"
    data = message(sender, to.logical, subject, body, headers, content_type=content_type)
    assert world.submit(sender, [to.logical], data) == {}
    assert sender.sink.wait_for(lambda r: dsn_about(r, subject)), f"no DSN about {subject}"
    mid = message_id(data)
    with connect(world.config.database) as conn:
        found = trace.find(conn, world.config, mid)
    assert found is not None and found["id"], f"{mid} not in the message log"
    return Sent(subject, mid, found["id"])


def answer(world: World, agency: Party, to: Party, sent: Sent) -> Sent:
    """``agency``'s MTA answers ``sent`` (a submission of ``to``'s): a declaration response
    whose In-Reply-To names the copy the agency received, as an agency's system threads
    it; returns once it reached ``to``'s MTA."""
    [copy] = agency.sink.wait_for(lambda r: f"Subject: {sent.subject}".encode() in r.data)
    response = submit(world, agency, to, factory.declaration_response(),
                      "application/xml; charset=utf-8",
                      [f"In-Reply-To: {copy.message['Message-ID']}"])
    assert to.sink.wait_for(lambda r: f"Subject: {response.subject}".encode() in r.data)
    return response


def agency_reported(world: World, sent: Sent) -> None:
    """Wait until the agency-leg DSN on ``sent``'s copy is recorded: Postfix's report on
    the copy's delivery comes back on its own, not before the DSN to the submitter."""
    def recorded() -> bool:
        with connect(world.config.database) as conn:
            found = trace.find(conn, world.config, sent.swid)
        return found is not None and any(e["kind"] == "agency-dsn" for e in found["events"])
    wait_until(recorded, timeout=60)


@dataclass(frozen=True)
class Mail:
    """What the console tests look at, submitted by the world's MTA parties ``co`` and
    ``rival`` to the agency ``ag``."""

    good: Sent     # co's clean PAXLST (EDIFACT): forwarded
    broken: Sent   # co's PAXLST with a date of birth in month 99: a MIG finding, not
    #                forwarded, a control message back
    rivals: Sent   # rival's GENDEC (XML), which co must never see
    response: Sent  # ag's declaration response to co, in reply to the copy of ``good``


@dataclass(frozen=True)
class Scene:
    """A console test module's world: the companies ``co`` and ``rival`` and the agency
    ``ag`` (each with its MTA), their mail, an operator, and co's EDI desk (an account
    of the MTA company co)."""

    world: World
    mail: Mail
    operator: Login
    desk: Login


def scene_fixture() -> object:
    """A module-scoped ``scene`` fixture: ``scene = console.scene_fixture()``."""

    @pytest.fixture(scope="module")
    def scene(sw_stack: Config) -> Iterator[Scene]:
        with World(sw_stack) as world:
            co, rival, ag = (world.add(role, kind) for role, kind in (
                ("co", "company"), ("rival", "company"), ("ag", "agency")))
            edifact = "application/EDIFACT"
            good = submit(world, co, ag, factory.paxlst(), edifact)
            mail = Mail(good, submit(world, co, ag, factory.broken("rule"), edifact),
                        submit(world, rival, ag, factory.gendec(),
                               "application/xml; charset=utf-8"),
                        answer(world, ag, co, good))
            agency_reported(world, good)
            yield Scene(world, mail, add_operator(sw_stack), add_account(sw_stack, co))

    return scene
