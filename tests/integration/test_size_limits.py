"""One size limit through real Postfix and the transport (issue 10): whatever Postfix
accepts, the transport's LMTP server accepts too; a larger submission is refused at SMTP."""

from __future__ import annotations

import secrets
import smtplib

from tests.support.sinks import delivery_status, dsn_about
from tests.support.world import World, message, world_fixture

world = world_fixture(("co", "company"), ("ag", "agency"))


def test_submission_just_under_the_limit_reaches_the_transport(world: World) -> None:
    # Above the LMTP server's old fixed 32 MiB, below Postfix's message_size_limit: it
    # used to be accepted by Postfix and then bounced 5.3.4 naming the LMTP socket.
    co, ag = world["co"], world["ag"]
    limit = world.config.transport.message_size_limit
    subj = "size " + secrets.token_hex(5)
    line = b"a note line\r\n"
    body = b"<notes>\r\n" + line * ((limit - 200_000) // len(line)) + b"</notes>\r\n"
    # A Content-Type the checks refuse (SPEC R5.3 #1): the transport's own answer, before
    # the MIG, shows that it received the whole message.
    data = message(co, ag.logical, subj, body, content_type="application/octet-stream")
    assert 36 * 2**20 < len(data) < limit
    with smtplib.SMTP(world.config.listeners.bind, world.config.listeners.mta_port,
                      timeout=300, source_address=(co.peer, 0)) as smtp:
        refused = smtp.sendmail(co.physical, [ag.logical], data,
                                mail_options=[f"SIZE={len(data)}", "RET=HDRS"])
    assert refused == {}
    found = co.sink.wait_for(lambda r: dsn_about(r, subj), timeout=300)
    assert len(found) == 1
    [status] = delivery_status(found[0])
    diagnostic = " ".join(status["diagnostic-code"].split())
    assert (status["action"], status["status"]) == ("failed", "5.6.1"), diagnostic
    assert "Unsupported Content-Type: application/octet-stream" in diagnostic
    assert "Single Window message SW" in diagnostic and "lmtp" not in diagnostic.lower()


def test_submission_over_the_limit_is_refused_at_smtp(world: World) -> None:
    co, ag = world["co"], world["ag"]
    limit = world.config.transport.message_size_limit
    with smtplib.SMTP(world.config.listeners.bind, world.config.listeners.mta_port,
                      timeout=30, source_address=(co.peer, 0)) as smtp:
        smtp.ehlo()
        assert int(smtp.esmtp_features["size"]) == limit
        code, text = smtp.mail(co.physical, [f"SIZE={limit + 1}"])
    assert code == 552 and text.startswith(b"5.3.4")
    assert not [r for r in ag.sink.received if r.mail_from]
