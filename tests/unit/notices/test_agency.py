"""The DSN to a submitter about the agency leg: the agency named by its logical address
only, the agency's report (its host, its physical address) never passed on."""

from __future__ import annotations

import email

from singlewindow.notices import agency


def test_agency_failure_notice_is_marked_auto_replied() -> None:
    raw = agency.build(message_id="SW1", to="acme@sw.test", domain="sw.test",
                       hostname="mail.sw.test", failed=[agency.Failed(
                           "customs@sw.test", "failed", "5.1.1", "no such mailbox")])
    message = email.message_from_bytes(raw)
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-SingleWindow-Notice"] == "agency-dsn SW1"
