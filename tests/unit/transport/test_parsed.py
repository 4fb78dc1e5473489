"""The message read once per transaction (:mod:`singlewindow.transport.parsed`)."""

from __future__ import annotations

import pytest

from singlewindow.transport import parsed, translate


@pytest.mark.parametrize("notice,kind", [(None, "dsn"), ("control SW1", "control"),
                                         ("agency-dsn SW1", "agency-failure"),
                                         ("something SW1", "notice")])
def test_generated_kind_is_told_by_the_hubs_header(notice: str | None, kind: str) -> None:
    head = (f"X-SingleWindow-Notice: {notice}\r\n" if notice else "") + "Subject: s\r\n\r\n"
    fields = translate.head(head.encode())[0]
    assert parsed.generated_kind("", fields) == kind
    assert parsed.generated_kind("single-window@sw.test", fields) is None
