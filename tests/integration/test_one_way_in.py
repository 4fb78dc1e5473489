"""One way in (issue 12): only the routing transport puts a message on the way to a party.

Written as the attacker acts: a process on the hub that speaks to Postfix's re-injection
listener, to the transport's LMTP socket, or through sendmail; one that connects to the
MTA listener from the hub's own address; an operator who gives a party the hub's own
address. Each time nothing reaches the agency, the refusal is clear, and the operator
finds it in the log and, once the transport saw the message, in ``swctl trace``.
"""

from __future__ import annotations

import json
import secrets
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from singlewindow import origin
from singlewindow.config import Config
from tests.support import factory
from tests.support.local import lmtp_send
from tests.support.world import Party, World, message, wait_until, world_fixture

world = world_fixture(("co", "company"), ("ag", "agency"))


def swctl(config: Config, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "singlewindow.cli", "--state-dir",
                           str(config.paths.state_dir), *argv],
                          capture_output=True, text=True, timeout=120, check=False)


def forged(ag: Party, subj: str, *, stamp: str | None = None, to: str | None = None,
           extra: str = "") -> bytes:
    """A message that claims customs-like authority: an origin stamp naming the agency's
    own counterpart party as submitter, with no valid MAC."""
    stamp = stamp if stamp is not None else (
        f"id=SW{secrets.token_hex(6).upper()}; listener=mta; party=customs; "
        f"peer=127.0.1.1; login=-; queue=-")
    return (f"{extra}{origin.HEADER}: {stamp}\r\nFrom: <customs@sw.test>\r\n"
            f"To: <{to or ag.logical}>\r\nSubject: {subj}\r\n"
            f"Message-ID: <{secrets.token_hex(8)}@attacker.example>\r\n"
            "Content-Type: application/xml\r\n\r\n").encode() + factory.gendec()


def nothing_arrives(party: Party, subj: str, seconds: float = 8.0) -> None:
    got = party.sink.wait_for(lambda r: subj.encode() in r.data, timeout=seconds)
    assert got == [], f"{party.name} received the forgery"


def postfix_log(config: Config) -> str:
    return (config.paths.log_dir / "postfix.log").read_text(errors="replace")


def self_signed(tmp: Path, cn: str) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    f"/CN={cn}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


# --- the re-injection listener ----------------------------------------------------------

def test_plain_connection_to_reinjection_listener_gets_nothing_through(world: World) -> None:
    """A local process speaks SMTP to 127.0.0.1:reinject_port, as the transport used to."""
    config, ag = world.config, world["ag"]
    subj = "reinject plain " + secrets.token_hex(4)
    with smtplib.SMTP("127.0.0.1", config.listeners.reinject_port, timeout=20) as smtp:
        smtp.ehlo("attacker")
        code, text = smtp.mail("customs@sw.test")
        assert (code, text[:5]) == (530, b"5.7.0"), (code, text)
        assert b"STARTTLS" in text
        for rcpt in (ag.logical, ag.physical):
            assert smtp.rcpt(rcpt)[0] >= 500
        assert smtp.docmd("DATA")[0] >= 500
    nothing_arrives(ag, subj, seconds=2)
    # Had a transaction slipped through, its body would be there by now.
    with smtplib.SMTP("127.0.0.1", config.listeners.reinject_port, timeout=20) as smtp, \
            pytest.raises(smtplib.SMTPSenderRefused):
        smtp.sendmail("customs@sw.test", [ag.logical, ag.physical], forged(ag, subj))
    nothing_arrives(ag, subj)


@pytest.mark.parametrize("client_cert", ["none", "self-signed lookalike"])
def test_tls_without_the_transports_certificate_gets_nothing_through(
        world: World, tmp_path: Path, client_cert: str) -> None:
    """STARTTLS, then the forged copy: with no client certificate, or with one the
    attacker made that names the transport (but is not its)."""
    config, ag = world.config, world["ag"]
    subj = "reinject tls " + secrets.token_hex(4)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client_cert != "none":
        context.load_cert_chain(*self_signed(tmp_path, f"sw-transport {config.hub.hostname}"))
    with smtplib.SMTP("127.0.0.1", config.listeners.reinject_port, timeout=20) as smtp:
        smtp.ehlo("attacker")
        smtp.starttls(context=context)
        try:
            code, text = smtp.ehlo("attacker")
            assert code == 421 and text.startswith(b"4.7.1"), (code, text)
            assert b"client certificate" in text.lower()
        except smtplib.SMTPServerDisconnected:
            pass  # the 421 may come before the client reads it: refused either way
        with pytest.raises(smtplib.SMTPException):
            smtp.sendmail("customs@sw.test", [ag.logical, ag.physical], forged(ag, subj))
    nothing_arrives(ag, subj)
    reason = ("No client certificate presented" if client_cert == "none"
              else "Client certificate not trusted")
    wait_until(lambda: reason in postfix_log(config), timeout=10)


def test_the_transport_itself_still_reinjects(world: World) -> None:
    """The genuine path: a company's submission reaches the agency as a copy over the
    certificate-protected listener (Postfix logged a trusted client certificate)."""
    co, ag = world["co"], world["ag"]
    subj = "genuine " + secrets.token_hex(4)
    assert world.submit(co, [ag.logical], message(co, ag.logical, subj, factory.gendec())) == {}
    [copy] = ag.sink.wait_for(lambda r: subj.encode() in r.data, timeout=60)
    assert copy.mail_from == co.logical
    assert "Trusted TLS connection established" in postfix_log(world.config)


# --- the transport: a stamp that does not verify -----------------------------------------

def genuine_stamp(config: Config, party: str, queue: str) -> origin.Origin:
    return origin.Origin(origin.new_message_id(), "mta", party, "127.0.1.1", "", queue)


STAMPS = {
    "no MAC": lambda config, o: o.header_value(),
    "wrong MAC": lambda config, o: o.signed(b"not the hub's key, 32 bytes long!!"),
    "doubled": lambda config, o: (o.signed(origin.load_key(config.stamp_key_file))
                                  + f"\r\n{origin.HEADER}: " + o.header_value()),
    "tampered party": lambda config, o: o.signed(
        origin.load_key(config.stamp_key_file)).replace("party=co", "party=customs", 1),
    "malformed": lambda config, o: "party=customs",
}
REASONS = {"no MAC": "has no MAC", "wrong MAC": "has a wrong MAC", "doubled": "2 X-Single",
           "tampered party": "has a wrong MAC", "malformed": "lacks id"}


@pytest.mark.parametrize("kind", list(STAMPS))
def test_forged_stamp_at_the_transport_is_refused_logged_and_traced(
        world: World, kind: str) -> None:
    """The message reached the transport without the milter (here: straight at its LMTP
    socket, as a process with Postfix's rights would), its stamp claiming a submitter."""
    config, co, ag = world.config, world["co"], world["ag"]
    subj = f"forged stamp {kind} " + secrets.token_hex(4)
    claimed = genuine_stamp(config, co.name, "4Claimed" + secrets.token_hex(4).upper())
    queue_id = "4Inbound" + secrets.token_hex(5).upper()
    received = (f"Received: from attacker (localhost [127.0.0.1])\r\n\tby "
                f"{config.hub.hostname} (Postfix) with ESMTP id {queue_id};\r\n\t"
                "Sun, 29 Nov 2026 12:00:00 +0000\r\n")
    data = forged(ag, subj, stamp=STAMPS[kind](config, claimed), extra=received)
    header_id = data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
    [(code, text)] = lmtp_send(config, co.logical, [ag.logical], data)
    assert (code, text[:6]) == (554, b"5.7.1 "), (code, text)
    assert REASONS[kind].encode() in text
    swid = text.rsplit(b"Single Window message ", 1)[1].rstrip(b")").decode()
    nothing_arrives(ag, subj)
    # The log names why and what the stamp claimed.
    log = (config.paths.log_dir / "transport.log").read_text(errors="replace")
    [line] = [x for x in log.splitlines() if f"event=recipient sw_id={swid} " in x]
    assert REASONS[kind] in line and f"queue_id={queue_id}" in line
    assert "action=reject" in line
    # swctl trace finds it by the inbound queue id, the Message-ID, and (where the stamp
    # could be read) the id it claimed; `swctl log` lists it.
    idents = [queue_id, header_id] + ([claimed.message_id] if kind != "malformed" else [])
    for ident in idents:
        result = swctl(config, "trace", ident, "--json")
        assert result.returncode == 0, (ident, result.stderr)
        found = json.loads(result.stdout)
        assert found["id"] == swid and found["listener"] == "refused", ident
        [event] = [e for e in found["events"] if e["kind"] == "stamp-refused"]
        assert REASONS[kind] in event["detail"]["reason"]
        assert found["recipients"][0]["status"] == "554 5.7.1"
    shown = swctl(config, "trace", queue_id).stdout
    assert "stamp-refused" in shown and swid in shown
    assert swid in swctl(config, "log").stdout


def test_forged_stamp_naming_a_real_message_does_not_hide_it(world: World) -> None:
    """A forgery that claims a genuine message's id: trace of that id still shows the
    genuine message, with the refused forgery listed under it."""
    config, co, ag = world.config, world["co"], world["ag"]
    subj = "real " + secrets.token_hex(4)
    real = message(co, ag.logical, subj, factory.gendec())
    assert world.submit(co, [ag.logical], real) == {}
    [copy] = ag.sink.wait_for(lambda r: subj.encode() in r.data, timeout=60)
    genuine = swctl(config, "trace", copy.message["Message-ID"], "--json")
    real_id = json.loads(genuine.stdout)["id"]
    stamp = origin.Origin(real_id, "mta", "customs", "127.0.1.1", "", "-").header_value()
    [(code, _)] = lmtp_send(config, co.logical, [ag.logical],
                            forged(ag, "forgery of " + subj, stamp=stamp))
    assert code == 554
    found = json.loads(swctl(config, "trace", real_id, "--json").stdout)
    assert found["id"] == real_id and found["listener"] == "mta"
    assert [r["detail"]["claimed_id"] for r in found["stamp_refusals"]] == [real_id]
    assert "forged stamp claiming this id" in swctl(config, "trace", real_id).stdout


# --- sendmail / pickup --------------------------------------------------------------------

@pytest.mark.parametrize("user", ["root", "nobody"])
def test_sendmail_gets_nothing_through(world: World, user: str) -> None:
    """The real sendmail(1) of the stack's Postfix, to the agency's logical and physical
    addresses, with a forged stamp; as root and as an unprivileged user."""
    config, ag = world.config, world["ag"]
    subj = f"sendmail {user} " + secrets.token_hex(4)
    conf = str(config.paths.postfix_conf)
    argv = ["sendmail", "-C", conf, "-f", "customs@sw.test", ag.logical, ag.physical]
    if user != "root":
        argv = ["setpriv", "--reuid", user, "--regid", "nogroup", "--clear-groups", *argv]
    result = subprocess.run(argv, input=forged(ag, subj), capture_output=True, timeout=60,
                            check=False)
    assert result.returncode != 0, result
    if user == "root":
        assert b"is not allowed to submit mail" in result.stderr, result.stderr
        # postlogd writes the log line a moment after sendmail has exited.
        wait_until(lambda: "User root(0) is not allowed to submit mail"
                   in postfix_log(config), timeout=10)
    world.flush()
    nothing_arrives(ag, subj)


def test_sendmail_smtp_mode_gets_nothing_through(world: World) -> None:
    """sendmail -bs: Postfix's stand-alone SMTP mode on stdin, as root."""
    config, ag = world.config, world["ag"]
    subj = "sendmail -bs " + secrets.token_hex(4)
    conf = str(config.paths.postfix_conf)
    session = (b"EHLO attacker\r\nMAIL FROM:<customs@sw.test>\r\n"
               + f"RCPT TO:<{ag.physical}>\r\nDATA\r\n".encode()
               + forged(ag, subj) + b"\r\n.\r\nQUIT\r\n")
    result = subprocess.run(["sendmail", "-C", conf, "-bs"], input=session,
                            capture_output=True, timeout=60, check=False)
    assert b"250 2.0.0 Ok: queued" not in result.stdout, result.stdout
    world.flush()
    nothing_arrives(ag, subj)


# --- the hub's own addresses ----------------------------------------------------------

@pytest.mark.parametrize("peer", ["127.0.0.1/32", "127.0.0.0/8", "127.0.0.1"])
def test_party_add_refuses_the_hubs_own_address(sw_stack: Config, peer: str) -> None:
    name = "squatter-" + secrets.token_hex(3)
    result = swctl(sw_stack, "party", "add", name, "--kind", "company", "--peer", peer)
    assert result.returncode == 1, result
    assert "hub's own address" in result.stderr
    assert name not in swctl(sw_stack, "party", "list").stdout


def test_a_process_on_the_hub_is_no_party(sw_stack: Config) -> None:
    """The demo company's MTA is not the hub's loopback address any more: a process on
    the hub connecting from 127.0.0.1 is nobody's MTA, and gets nothing through."""
    listeners = sw_stack.listeners
    with smtplib.SMTP(listeners.bind, listeners.mta_port, timeout=30,
                      source_address=("127.0.0.1", 0)) as smtp:
        smtp.ehlo("acme.example")
        smtp.mail("edi@acme.example")
        code, text = smtp.rcpt(f"customs@{sw_stack.hub.domain}")
    assert code >= 500, (code, text)
    peers = dict(line.split("\t")[0:4:3] for line in
                 swctl(sw_stack, "party", "list").stdout.splitlines())
    assert peers["acme"] == "peers=127.0.2.1/32"



# --- everything a party receives is in swctl trace -----------------------------------------

def test_every_message_a_party_receives_is_in_trace(world: World) -> None:
    """Copies, DSNs, control messages and agency-failure notices: the operator traces each
    by the Message-ID the party saw, and lands on the submission it is about."""
    co, ag = world["co"], world["ag"]
    bad = world.parties.get("agbad") or world.add(
        "agbad", "agency", refuse="550 5.1.1 No such mailbox here")
    tag = secrets.token_hex(4)
    cases = {
        "copy": (ag, factory.gendec()),
        "control": (ag, factory.gendec(imo="9074728")),  # a MIG rule error
        "agency-failure": (bad, factory.gendec()),
    }
    swids: dict[str, str] = {}
    for kind, (to, body) in cases.items():
        data = message(co, to.logical, f"{kind} {tag}", body)
        assert world.submit(co, [to.logical], data) == {}
        header_id = data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
        wait_until(lambda h=header_id: swctl(world.config, "trace", h).returncode == 0, 60)
        swids[kind] = json.loads(swctl(world.config, "trace", header_id, "--json").stdout)["id"]

    def by(party: Party, wanted: str) -> list[tuple[str, str]]:
        """(Message-ID, kind of mail) of what ``party`` received about ``wanted``."""
        out = []
        for r in party.sink.received:
            if f"{wanted} {tag}".encode() not in r.data and \
                    swids[wanted].encode() not in r.data:
                continue
            out.append((r.message["Message-ID"], r.mail_from or "<>"))
        return out

    # The agency's copy; the company's DSN for it.
    wait_until(lambda: len(by(ag, "copy")) >= 1 and len(by(co, "copy")) >= 1, 60)
    # The control message (and the DSN "delivered to Single Window").
    wait_until(lambda: len(by(co, "control")) >= 2, 60)
    # The agency refused its copy: the agency-failure notice (and the submission's DSN).
    wait_until(lambda: len(by(co, "agency-failure")) >= 2, 90)
    for party, kind in ((ag, "copy"), (co, "copy"), (co, "control"),
                        (co, "agency-failure")):
        for ident, sender in by(party, kind):
            result = swctl(world.config, "trace", ident, "--json")
            assert result.returncode == 0, (kind, party.name, sender, ident, result.stderr)
            assert json.loads(result.stdout)["id"] == swids[kind], (kind, ident)
