"""Mail Single Window generated (:mod:`singlewindow.transport.generated`), through the
real LMTP server and store (the ``transport`` fixture)."""

from __future__ import annotations

from typing import Any

import psycopg

from singlewindow.config import Config
from tests.support.local import lmtp_send
from tests.support.sinks import Sink
from tests.support.transport import D, Transport


def test_the_hubs_notice_goes_out_with_the_null_sender(
        transport: tuple[Config, Sink], conn: psycopg.Connection[Any]) -> None:
    config, sink = transport
    data = (b"From: Single Window <single-window@sw.test>\r\nTo: <acme@sw.test>\r\n"
            b"X-SingleWindow-Notice: control SW1\r\nAuto-Submitted: auto-replied\r\n"
            b"Subject: Control message SW1\r\n\r\nerrors\r\n")
    [(code, _)] = lmtp_send(config, "", [f"acme@{D}"], data)
    assert code == 250
    [notice] = sink.wait_for(lambda r: True, timeout=10)
    assert notice.mail_from in ("", "<>") and notice.rcpt_tos == ["edi@acme.example"]
    assert notice.message["Auto-Submitted"] == "auto-replied"
    # Recorded as what its notice header says it is, not by its sender.
    row = conn.execute("SELECT kind FROM notice_delivery").fetchone()
    assert row is not None and row["kind"] == "control"


def test_generated_mail_for_an_unknown_address_is_refused(transport: Transport) -> None:
    config, sink = transport
    data = b"From: <MAILER-DAEMON@sw.test>\r\nSubject: x\r\n\r\nbody\r\n"
    [(code, text)] = lmtp_send(config, "", [f"nobody@{D}"], data)
    assert (code, text[:6]) == (554, b"5.1.0 ")
    assert b"The recipient <nobody@sw.test> is unknown to Single Window" in text
    assert sink.wait_for(lambda r: True, timeout=1) == []
