"""Which messages nothing answers (issue 12): the rule the milter and transport share."""

from __future__ import annotations

import pytest

from singlewindow import automatic


def reason(**given: object) -> str | None:
    facts: dict[str, object] = {"null_sender": False, "auto_submitted": None,
                                "content_type": None, "notice": None}
    facts.update(given)
    return automatic.reason(**facts)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["auto-replied", "auto-generated", "Auto-Replied",
                                   "auto-notified; owner-email=x@y", "  AUTO-GENERATED ",
                                   "", "something-new"])
def test_auto_submitted_other_than_no_is_automatic(value: str) -> None:
    why = reason(auto_submitted=value)
    assert why is not None and "Auto-Submitted" in why


@pytest.mark.parametrize("value", ["no", "No", " no ", "no; comment"])
def test_auto_submitted_no_is_a_persons(value: str) -> None:
    assert reason(auto_submitted=value) is None


def test_a_message_without_any_marker_is_a_persons() -> None:
    assert reason(content_type="application/xml; charset=utf-8") is None


def test_null_sender_report_and_notice_are_automatic() -> None:
    assert "null envelope sender" in str(reason(null_sender=True))
    assert "multipart/report" in str(reason(
        content_type='Multipart/Report; report-type=delivery-status; boundary="b"'))
    assert "notice" in str(reason(notice="control SW1"))
    # The notice header wins even when Auto-Submitted says "no": the hub wrote it.
    assert "notice" in str(reason(notice="agency-dsn SW1", auto_submitted="no"))
