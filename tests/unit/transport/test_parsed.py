"""The message read once per transaction (:mod:`singlewindow.transport.parsed`)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from singlewindow import origin
from singlewindow.store import directory
from singlewindow.transport import parsed, translate
from tests.support.transport import KEY


@pytest.mark.parametrize("notice,kind", [(None, "dsn"), ("control SW1", "control"),
                                         ("agency-dsn SW1", "agency-failure"),
                                         ("something SW1", "notice")])
def test_generated_kind_is_told_by_the_hubs_header(notice: str | None, kind: str) -> None:
    head = (f"X-SingleWindow-Notice: {notice}\r\n" if notice else "") + "Subject: s\r\n\r\n"
    fields = translate.head(head.encode())[0]
    assert parsed.generated_kind("", fields) == kind
    assert parsed.generated_kind("single-window@sw.test", fields) is None


# --- one parse per transaction: prepare, the agency-DSN detection, the typed progress --

def _stamp(party: str = "acme") -> str:
    stamp = origin.Origin(origin.new_message_id(), "mta", party, "10.1.0.5", "", "Q1")
    return f"{origin.HEADER}: {stamp.signed(KEY)}\r\n"


#: A delivery report (RFC 3464) on a copy, as an agency's MTA or Postfix writes one.
REPORT = ('From: MAILER-DAEMON@mx.customs.example\r\nMIME-Version: 1.0\r\n'
          'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n'
          '\r\n--b\r\nContent-Type: text/plain\r\n\r\nsorry\r\n'
          '--b\r\nContent-Type: message/delivery-status\r\n\r\n'
          'Reporting-MTA: dns; mx.customs.example\r\nOriginal-Envelope-Id: TOKEN\r\n'
          '\r\nFinal-Recipient: rfc822; in@customs.example\r\nAction: failed\r\n'
          'Status: 5.1.1\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\n'
          '{returned}Message-ID: <copy@sw.test>\r\nSubject: unit\r\n\r\n--b--\r\n')
ALLOWED = ("application/xml",)


def test_a_submission_is_read_once_into_prepared() -> None:
    raw = (_stamp() + "From: <edi@acme.example>\r\nTo: <customs@sw.test>\r\n"
           "Message-ID: <m@acme.example>\r\nContent-Type: application/xml\r\n\r\n"
           "<a/>\r\n").encode()
    p = parsed.prepare(raw, "acme@sw.test", ALLOWED, KEY)
    assert p.raw is raw and p.origin is not None and p.message_id == p.origin.message_id
    assert p.part is not None and p.part.payload == b"<a/>\r\n" and p.content is None
    assert p.addresses == [("from", "edi@acme.example"), ("to", "customs@sw.test")]
    assert p.header_message_id == "<m@acme.example>" and p.forged is None
    assert p.report is None  # a sender: no delivery report
    assert raw[p.body_offset:] == b"<a/>\r\n"


def test_a_technical_check_failure_is_kept_not_raised() -> None:
    raw = (_stamp() + "Content-Type: image/png\r\n\r\nxx\r\n").encode()
    p = parsed.prepare(raw, "acme@sw.test", ALLOWED, KEY)
    assert p.part is None and p.content is not None and p.content.enhanced == "5.6.1"


def test_a_forged_stamp_is_kept_with_the_head_not_raised() -> None:
    stamp = origin.Origin(origin.new_message_id(), "mta", "acme", "10.1.0.5", "", "Q1")
    raw = (f"{origin.HEADER}: {stamp.signed(b'another key' * 4)}\r\n"
           "Message-ID: <m@acme.example>\r\n\r\n" + REPORT.format(returned="")).encode()
    p = parsed.prepare(raw, "", ALLOWED, KEY)
    assert p.origin is None and p.forged and p.message_id is None
    assert p.report is None and p.part is None  # nothing more is read of it
    assert p.header_message_id == "<m@acme.example>"
    assert parsed.claimed(p.fields)["claimed_id"] == stamp.message_id


@pytest.mark.parametrize("stamped,notice,returned,sender,found", [
    (True, "", "", "", True),  # a party's MTA reports on a copy
    (False, "", "", "", True),  # Postfix's own DSN on a copy's outbound leg
    (False, "X-SingleWindow-Notice: agency-dsn SW1\r\n", "", "", False),  # the hub's notice
    (False, "", "stamp", "", False),  # Postfix's DSN on a submission (its stamp returned)
    (True, "", "", "acme@sw.test", False),  # mail with a sender is no report
    (False, "", "", "acme@sw.test", False),
])
def test_the_agency_dsn_is_told_once_for_both_paths(
        stamped: bool, notice: str, returned: str, sender: str, found: bool) -> None:
    raw = ((_stamp("customs") if stamped else "") + notice + REPORT.format(
        returned=_stamp() if returned else "")).encode()
    p = parsed.prepare(raw, sender, ALLOWED, KEY)
    fields = translate.head(raw)[0]
    report = parsed.agency_dsn(raw, fields, sender, p.origin)
    assert (report is not None) == (p.report is not None) == found
    if found:
        assert p.report == report and report is not None
        assert report.envid == "TOKEN" and report.returned_message_id == "<copy@sw.test>"


def test_about_names_the_message_generated_mail_is_about() -> None:
    named = b"X-SingleWindow-Message: SW1\r\nSubject: s\r\n\r\nbody\r\n"
    assert parsed.about(named, translate.head(named)[0]) == "SW1"
    stamp = _stamp()
    dsn = REPORT.format(returned=stamp).encode()
    swid = origin.parse(stamp.split(": ", 1)[1].strip()).message_id
    assert parsed.about(dsn, translate.head(dsn)[0]) == swid
    assert parsed.about_submission(dsn) and not parsed.about_submission(named)
    assert parsed.about(b"Subject: s\r\n\r\n", []) is None


class CountingLookups:
    """The directory's ``known_addresses``, counting the queries."""

    def __init__(self) -> None:
        self.queries = 0
        party = directory.Party(1, "acme", "company", None, None)
        self.known = {"edi@acme.example": directory.Address(
            1, "acme@sw.test", "edi@acme.example", party, None, True)}

    def known_addresses(self, addresses: Iterable[str]) -> dict[str, directory.Address]:
        self.queries += 1
        return {a: self.known[a] for a in addresses if a in self.known}


def test_progress_looks_the_header_addresses_up_once() -> None:
    raw = (_stamp() + "From: <edi@acme.example>\r\nContent-Type: application/xml\r\n\r\n"
           "<a/>\r\n").encode()
    progress = parsed.Progress(parsed.prepare(raw, "acme@sw.test", ALLOWED, KEY))
    where = CountingLookups()
    first = progress.known_headers(where)  # type: ignore[arg-type]  # the one method used
    assert progress.known_headers(where) is first  # type: ignore[arg-type]
    assert where.queries == 1 and list(first) == ["edi@acme.example"]


def test_progress_hands_the_validation_event_on_once() -> None:
    progress = parsed.Progress()
    assert progress.take_validation() == []
    progress.validation = {"bytes": 5, "seconds": 0.1}
    assert progress.take_validation() == [("mig-validated", {"bytes": 5, "seconds": 0.1})]
    assert progress.take_validation() == [] and progress.validation is None
    assert (progress.hops, progress.mig, progress.refused, progress.withheld) == (
        None, None, None, False)


# --- what the console lists (issue 18) ----------------------------------------------------

@pytest.mark.parametrize("value,shown", [
    (None, None), ("Manifest BA123", "Manifest BA123"), ("", ""),
    ("=?utf-8?q?Manifeste_caf=C3=A9?= du =?iso-8859-1?q?=E9t=E9?=",
     "Manifeste café du été"),
    ("=?utf-8?b?TWFuaWZlc3Q=?=", "Manifest"),
    ("=?utf-8?q?a=00b?=", "a\ufffdb"),  # no text column holds NUL
    ("=?x-unknown?q?abc?=", "abc"),  # as a mail client shows it, not an error
    ("x" * 2000, "x" * parsed.SUBJECT_LENGTH),
])
def test_the_subject_is_decoded_and_cut_to_a_line(value: str | None,
                                                 shown: str | None) -> None:
    assert parsed.decoded_subject(value) == shown


@pytest.mark.parametrize("value,first", [
    (None, None), ("", None), ("no id here", None), ("<copy@sw.test>", "<copy@sw.test>"),
    ("Your message of Monday <a@x> <b@y>", "<a@x>"), ("(comment) <a@x>", "<a@x>")])
def test_in_reply_to_keeps_its_first_id(value: str | None, first: str | None) -> None:
    assert parsed.first_id(value) == first


def test_prepared_carries_the_subject_and_in_reply_to() -> None:
    raw = (_stamp() + "Subject: =?utf-8?q?R=C3=A9ponse?=\r\n"
           "In-Reply-To: <SW1.abc@sw.test>\r\n <SW0.abc@sw.test>\r\n"
           "Content-Type: application/xml\r\n\r\n<a/>\r\n").encode()
    p = parsed.prepare(raw, "acme@sw.test", ALLOWED, KEY)
    assert (p.subject, p.in_reply_to) == ("Réponse", "<SW1.abc@sw.test>")
    bare = parsed.prepare((_stamp() + "Content-Type: application/xml\r\n\r\n<a/>\r\n"
                           ).encode(), "acme@sw.test", ALLOWED, KEY)
    assert (bare.subject, bare.in_reply_to) == (None, None)
