"""The MIG in the mail path (issue 4): valid submissions reach agencies as schema-valid XML;
every class of MIG error produces a control message naming it, and nothing is forwarded."""

from __future__ import annotations

import base64
import secrets
import socket
import threading

import pytest
from lxml import etree

from singlewindow import mig
from singlewindow.mig.loader import registry
from singlewindow.transport.submission import XML_IN_MEMORY
from tests.support import factory
from tests.support.sinks import Received, delivery_status, dsn_about
from tests.support.world import World, message, message_id, world_fixture

world = world_fixture(("co", "company"), ("ag", "agency"))


def control_message(world: World, message_id: str) -> Received:
    """The control message: from Single Window, In-Reply-To the submission."""
    co = world["co"]
    found = co.sink.wait_for(lambda r: b"X-SingleWindow-Message:" in r.data
                             and f"In-Reply-To: {message_id}".encode() in r.data)
    assert len(found) == 1
    return found[0]


def _decoded(received: Received) -> bytes:
    payload = received.message.get_payload()
    return base64.b64decode(payload) if isinstance(payload, str) else b""


def submit(world: World, subj: str, payload: bytes, ctype: str) -> str:
    """Send as the company; return the submission's Message-ID."""
    co, ag = world["co"], world["ag"]
    data = message(co, ag.logical, subj, payload, content_type=ctype)
    assert world.submit(co, [ag.logical], data) == {}
    return message_id(data)


@pytest.mark.parametrize("payload,ctype,name", [
    (factory.paxlst(), "application/EDIFACT", "PAXLST-D03B"),
    (factory.paxlst(release="05B"), "application/EDIFACT", "PAXLST-D05B"),
    (factory.iftdgn(), "application/EDIFACT", "IFTDGN-D03A"),
    (factory.gendec(), "application/xml", "GENDEC-1"),
])
def test_valid_submissions_reach_the_agency_as_schema_valid_xml(
        world: World, payload: bytes, ctype: str, name: str) -> None:
    subj = "mig " + secrets.token_hex(5)
    submit(world, subj, payload, ctype)
    [copy] = world["ag"].sink.wait_for(lambda r: subj.encode() in r.data)
    assert copy.message.get_content_type() == "application/xml"
    xml = base64.b64decode(copy.message.get_payload())
    assert registry().types[name].schema.validate(etree.fromstring(xml))


def test_a_multi_mb_interchange_reaches_the_agency_as_the_xml_it_converts_to(
        world: World) -> None:
    """Issue 13: XML larger than the transport keeps in memory (``XML_IN_MEMORY``) waits
    in a temporary file and is encoded as the copy is sent; the agency gets exactly the
    XML the interchange converts to."""
    payload = factory.paxlst_of_size(0.26)  # as big as the tests' 2 MiB copy limit allows
    xml = mig.validate(payload, "application/edifact").xml
    assert xml is not None and len(xml) > XML_IN_MEMORY
    subj = "mig large " + secrets.token_hex(5)
    submit(world, subj, payload, "application/EDIFACT")
    [copy] = world["ag"].sink.wait_for(lambda r: subj.encode() in r.data, timeout=60)
    assert _decoded(copy) == xml


P = factory.paxlst()
G = factory.gendec()
BROKEN = {
    "SYNTAX": (P.replace(b"UNZ+1+REF1'", b""), "application/EDIFACT", "ISO9735-UNZ"),
    "COUNT": (P.replace(b"UNT+", b"UNT+9"), "application/EDIFACT", "ISO9735-UNT-0074"),
    "STRUCTURE": (P.replace(b"BGM+745'", b""), "application/EDIFACT", "PAXLST-D03B:BGM"),
    "FORMAT": (P.replace(b"TDT+20+KL0641", b"TDT+20+" + b"K" * 40), "application/EDIFACT",
               "PAXLST-D03B:TDT/8028"),
    "CODELIST": (P.replace(b"BGM+745'", b"BGM+745++99'"), "application/EDIFACT",
                 "PAXLST-D03B:BGM/1225/codes"),
    "REPERTOIRE": (P.replace(b"OPERATIONS DESK", b"operations desk"), "application/EDIFACT",
                   "ISO9735-UNOA"),
    "XSD": (G.replace(b"<Flag>PA</Flag>", b"<Flag>Panama</Flag>"), "application/xml",
            "GENDEC-1:XSD"),
    "RULE": (factory.gendec(imo="9074728"), "application/xml", "GENDEC-1:GENDEC-R1"),
}


@pytest.mark.parametrize("cls", list(BROKEN))
def test_each_error_class_gets_a_control_message(world: World, cls: str) -> None:
    payload, ctype, rule = BROKEN[cls]
    subj = "bad " + secrets.token_hex(5)
    message_id = submit(world, subj, payload, ctype)
    # Delivered to Single Window (the DSN says so), then the control message.
    [status] = delivery_status(world["co"].sink.wait_for(lambda r: dsn_about(r, subj))[0])
    assert status["action"] == "delivered"
    assert "MIG error" in " ".join(status["diagnostic-code"].split())
    control = control_message(world, message_id)
    assert control.rcpt_tos == [world["co"].physical]
    text = _decoded(control).decode()
    assert f"({cls})" in text and f"rule:  {rule}" in text
    assert "where:" in text and "<Status>Rejected</Status>" in text
    if ctype == "application/EDIFACT" and cls in ("SYNTAX", "COUNT", "REPERTOIRE"):
        assert "UNH+1+CONTRL" in text
    assert not [r for r in world["ag"].sink.received if subj.encode() in r.data]


class _Listener:
    """Counts connections to a local port, to prove no network access was attempted."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.hits += 1
            conn.close()


@pytest.mark.parametrize("kind", ["xxe-file", "xxe-network", "billion-laughs", "external-dtd"])
def test_hostile_xml_is_refused_without_file_or_network_access(world: World, kind: str) -> None:
    listener = _Listener()
    try:
        url = f"http://127.0.0.1:{listener.port}/x"
        payload = {
            "xxe-file": '<!DOCTYPE g [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                        "<GeneralDeclaration>&x;</GeneralDeclaration>",
            "xxe-network": f'<!DOCTYPE g [<!ENTITY x SYSTEM "{url}">]>'
                           "<GeneralDeclaration>&x;</GeneralDeclaration>",
            "billion-laughs": '<!DOCTYPE l [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;">'
                              '<!ENTITY c "&b;&b;&b;&b;&b;">]><GeneralDeclaration>&c;'
                              "</GeneralDeclaration>",
            "external-dtd": f'<!DOCTYPE GeneralDeclaration SYSTEM "{url}">'
                            "<GeneralDeclaration/>",
        }[kind].encode()
        subj = "hostile " + secrets.token_hex(5)
        message_id = submit(world, subj, b'<?xml version="1.0"?>\n' + payload,
                            "application/xml")
        text = _decoded(control_message(world, message_id)).decode()
    finally:
        listener.stop.set()
    assert "(UNSAFE)" in text
    assert "root:" not in text  # nothing of /etc/passwd
    assert listener.hits == 0
    assert not [r for r in world["ag"].sink.received if subj.encode() in r.data]
