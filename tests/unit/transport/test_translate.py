"""Address translation of outgoing copies, on raw bytes, without a daemon."""

from __future__ import annotations

import base64
import io
import tempfile

import pytest

from singlewindow.transport import dsn, translate

KNOWN = {"edi@acme.example": "acme@sw.test", "acme@sw.test": "acme@sw.test",
         "customs@sw.test": "customs@sw.test", "clerk@acme.example": "acme@sw.test"}

RAW = (b"Received: from mta.acme.example (mta.acme.example [10.1.0.5])\r\n"
       b"\tby mail.sw.test (Postfix) with ESMTP id ABC\r\n"
       b"Return-Path: <edi@acme.example>\r\n"
       b"X-SingleWindow-Origin: id=SW1; listener=mta; party=acme; peer=10.1.0.5;"
       b" login=-; queue=ABC\r\n"
       b"From: \"Acme EDI\" <edi@acme.example>\r\n"
       b"Sender: clerk@acme.example\r\n"
       b"Reply-To: <edi@acme.example>\r\n"
       b"To: customs@sw.test\r\n"
       b"Subject: PAXLST\r\n"
       b"Message-ID: <orig@acme.example>\r\n"
       b"X-Originating-IP: [10.1.0.5]\r\n"
       b"In-Reply-To: <SW1.abc@sw.test>\r\n"
       b"Content-Type: application/xml\r\n"
       b"\r\n"
       b"<a>edi@acme.example stays in the body</a>\r\n")


def test_copy_names_only_logical_addresses() -> None:
    copy = translate.translate(*translate.split(RAW), KNOWN.get, "<SW1.x@sw.test>")
    head, body = copy.split(b"\r\n\r\n", 1)
    assert b"edi@acme.example" not in head and b"clerk@acme.example" not in head
    assert b"10.1.0.5" not in head and b"mta.acme.example" not in head
    assert b'From: "Acme EDI" <acme@sw.test>' in head
    assert b"Sender: <acme@sw.test>" in head
    assert b"Message-ID: <SW1.x@sw.test>" in head and b"orig@acme.example" not in head
    assert b"X-SingleWindow-Origin" not in head and b"Received:" not in head
    assert body == b"<a>edi@acme.example stays in the body</a>\r\n"


def test_threading_headers_are_mapped_back() -> None:
    copy = translate.translate(*translate.split(RAW), KNOWN.get, "<n@sw.test>",
                               message_ids={"<SW1.abc@sw.test>": "<orig@acme.example>"}.get)
    assert b"In-Reply-To: <orig@acme.example>" in copy


def test_unknown_address_is_refused() -> None:
    with pytest.raises(KeyError):
        translate.translate(*translate.split(RAW.replace(b"Reply-To: <edi@", b"Reply-To: <x@")),
                            KNOWN.get,
                            "<n@sw.test>")


def test_header_addresses_lists_every_translated_header() -> None:
    assert translate.header_addresses(RAW) == [
        ("from", "edi@acme.example"), ("sender", "clerk@acme.example"),
        ("reply-to", "edi@acme.example"), ("to", "customs@sw.test")]


def test_body_fields_replace_the_one_part() -> None:
    fields = translate.body_fields(translate.head(RAW)[0], "application/xml; charset=utf-8")
    head = b"".join(f for _, f in fields)
    assert head.count(b"Content-Type:") == 1
    assert b"Content-Transfer-Encoding: base64" in head
    assert bytes(translate.Copy(b"", io.BytesIO(b"<x/>"))) == b"PHgvPg==\r\n"


@pytest.mark.parametrize(("value", "expected"), [
    ("undisclosed-recipients:;", [translate.Group("undisclosed-recipients", ())]),
    ("G: a@b.c, \"X Y\" <d@e.f>;, g@h.i", [
        translate.Group("G", (translate.Mailbox("", "a@b.c"),
                              translate.Mailbox("X Y", "d@e.f"))),
        translate.Mailbox("", "g@h.i")]),
    ("a@b.c (a comment), , <d@e.f>", [translate.Mailbox("", "a@b.c"),
                                       translate.Mailbox("", "d@e.f")]),
    ("\"a b\"@c.d", [translate.Mailbox("", "\"a b\"@c.d")]),
    ("", []),
    ("a b c", [translate.Mailbox("", "a b c", readable=False)]),
    ("<>", [translate.Mailbox("", "<>", readable=False)]),
    ("Foo <a@b", [translate.Mailbox("", "Foo <a@b", readable=False)]),
    ("a@b@c", [translate.Mailbox("", "a@b@c", readable=False)]),
    # CVE-2023-27043's confusion: not read as either address.
    ("alice@example.org)<bob@example.org>",
     [translate.Mailbox("", "alice@example.org ) <bob@example.org>", readable=False)]),
    ("edi@acme.example <x@y.z>", [translate.Mailbox("", "edi@acme.example <x@y.z>",
                                                    readable=False)]),
])
def test_parse_addresses(value: str, expected: list[object]) -> None:
    assert translate.parse_addresses(value) == expected


def test_groups_are_translated_and_checked() -> None:
    raw = RAW.replace(b"To: customs@sw.test\r\n",
                      b"To: undisclosed-recipients:;\r\n"
                      b"Cc: Desk (secret): edi@acme.example, \"Acme\" <clerk@acme.example>;\r\n")
    assert translate.header_addresses(raw)[-2:] == [("cc", "edi@acme.example"),
                                                    ("cc", "clerk@acme.example")]
    copy = translate.translate(*translate.split(raw), KNOWN.get, "<n@sw.test>")
    head = copy.split(b"\r\n\r\n")[0]
    assert b"\r\nTo: undisclosed-recipients:;\r\n" in head
    assert b'\r\nCc: Desk: <acme@sw.test>, "Acme" <acme@sw.test>;\r\n' in head


def test_unreadable_entries_are_listed_as_written() -> None:
    raw = RAW.replace(b"To: customs@sw.test", b"To: customs@sw.test, not an address")
    assert ("to", "not an address") in translate.header_addresses(raw)
    with pytest.raises(KeyError):
        translate.translate(*translate.split(raw), KNOWN.get, "<n@sw.test>")


def test_nul_in_a_header_never_reaches_the_store() -> None:
    raw = RAW.replace(b"Message-ID: <orig@", b"Message-ID: <o\x00rig@")
    assert translate.header(raw, "message-id") == "<o\ufffdrig@acme.example>"


def test_long_address_headers_are_folded() -> None:
    raw = RAW.replace(b"To: customs@sw.test", b"To: " + b", ".join([b"customs@sw.test"] * 300)
                      + b", G: edi@acme.example, customs@sw.test;")
    copy = translate.translate(*translate.split(raw), KNOWN.get, "<n@sw.test>")
    head = copy.split(b"\r\n\r\n")[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    to = translate.header(copy, "to")
    assert to == ", ".join(["<customs@sw.test>"] * 300) + ", G: <acme@sw.test>, " \
        "<customs@sw.test>;"


def test_a_copy_encodes_a_large_payload_in_whole_lines() -> None:
    payload = bytes(range(256)) * 12_000  # more than one encoding chunk
    copy = translate.Copy(b"H: x\r\n\r\n", io.BytesIO(payload))
    assert len(list(copy.chunks())) > 2
    body = bytes(copy)[len(copy.head):]
    lines = body.split(b"\r\n")
    assert lines[-1] == b"" and {len(line) for line in lines[:-2]} == {76}
    assert base64.b64decode(body) == payload


@pytest.mark.parametrize("length", [0, 1, 2, 3, 56, 57, 58, 114, 57 * 16384, 57 * 16384 + 7])
def test_a_copy_knows_its_size_before_it_is_encoded(length: int) -> None:
    copy = translate.Copy(b"Subject: s\r\n\r\n", io.BytesIO(b"\xfe" * length))
    assert copy.size == len(bytes(copy))


def test_the_streamed_copy_of_a_multi_mb_xml_is_the_copy_built_whole() -> None:
    """Issue 13: the copy encoded chunk by chunk from a spooled file is byte for byte the
    copy built in one piece (header block, then the whole XML base64-encoded at once)."""
    xml = b"".join(b"<p n=\"%d\">\xc3\xa9 %s</p>" % (n, b"x" * (n % 97))
                   for n in range(60_000))
    assert len(xml) > 4_000_000
    fields = translate.body_fields(translate.head(RAW)[0], "application/xml; charset=utf-8")
    whole = translate.translate(fields, base64.encodebytes(xml).replace(b"\n", b"\r\n"),
                                KNOWN.get, "<SW1.x@sw.test>")
    head = translate.translate(fields, b"", KNOWN.get, "<SW1.x@sw.test>")
    with tempfile.SpooledTemporaryFile(1 << 20) as spooled:
        spooled.write(xml)
        copy = translate.Copy(head, spooled)  # type: ignore[arg-type]  # as in validate.py
        assert copy.size == len(whole)
        assert bytes(copy) == whole
        assert bytes(copy) == whole  # read again from the start (a second destination)


def test_head_gives_the_body_offset_without_copying_the_body() -> None:
    fields, offset = translate.head(RAW)
    assert [name for name, _ in fields][:2] == ["received", "return-path"]
    assert RAW[offset:] == b"<a>edi@acme.example stays in the body</a>\r\n"
    assert translate.head(b"Subject: x\r\n") == ([("subject", b"Subject: x\r\n")], 12)


# --- issue 12: headers by allow-list ---------------------------------------------------

CARELESS = (b"From: \"EDI (mx1.acme.example)\" <edi@acme.example> (via EX01.acme.local)\r\n"
            b"To: customs@sw.test\r\n"
            b"Subject: PAXLST\r\n"
            b"Date: Sat, 28 Nov 2026 12:00:00 +0000 (mx1.acme.example)\r\n"
            b"MIME-Version: 1.0 (Produced by mx1.acme.example)\r\n"
            b"Message-ID: <m1@mx1.acme.example>\r\n"
            b"In-Reply-To: <SW1.abc@sw.test> (sent from mx1.acme.example)\r\n"
            b"References: <m0@mx1.acme.example>\r\n <t@EX01.acme.local> <SW1.abc@sw.test>\r\n"
            b"Mail-Followup-To: edi@acme.example, partner@elsewhere.example\r\n"
            b"Mail-Reply-To: archive@elsewhere.example\r\n"
            b"Disposition-Notification-To: \"EDI desk\" <edi@acme.example>\r\n"
            b"Resent-From: edi@acme.example\r\n"
            b"Resent-Message-ID: <r1@mx1.acme.example>\r\n"
            b"Resent-Bcc: secret@elsewhere.example\r\n"
            b"X-MS-Exchange-Organization-AuthSource: EX01.acme.local\r\n"
            b"X-Originating-IP: [10.1.2.3]\r\n"
            b"X-SingleWindow-Message: SW9 forged\r\n"
            b"Received: from EX01.acme.local (10.1.2.3) by mx1.acme.example\r\n"
            b"Organization: Acme (mx1.acme.example)\r\n"
            b"Comments: from EX01.acme.local\r\n"
            b"Thread-Index: AdqXYZ\r\n"
            b"Content-ID: <part1@mx1.acme.example>\r\n"
            b"Auto-Submitted: auto-replied (by mx1.acme.example)\r\n"
            b"Precedence: bulk\r\n"
            b"Importance: high\r\n"
            b"Content-Type: application/xml\r\n"
            b"\r\n"
            b"<a>mx1.acme.example stays in the body</a>\r\n")
IDS = {"<SW1.abc@sw.test>": "<own@reader.example>"}


def _mapped(mid: str) -> str:
    return IDS.get(mid, f"<SWR-{mid.strip('<>').split('@')[0]}@sw.test>")


def test_only_allowed_headers_reach_the_reader() -> None:
    copy = translate.translate(*translate.split(CARELESS), KNOWN.get, "<SW2.x@sw.test>",
                               extra=[("X-SingleWindow-Hops", "1")], message_ids=_mapped)
    fields, body = translate.split(copy)
    assert [name for name, _ in fields] == [
        "message-id", "x-singlewindow-hops", "from", "to", "subject", "date", "mime-version",
        "in-reply-to", "references", "mail-followup-to", "disposition-notification-to",
        "resent-from", "resent-message-id", "auto-submitted", "precedence", "content-type"]
    head = copy.split(b"\r\n\r\n", 1)[0].decode()
    for leak in ("acme.example", "acme.local", "10.1.2.3", "elsewhere.example", "forged"):
        assert leak not in head
    assert "From: <acme@sw.test>\r\n" in head  # a display name naming a host goes
    assert "Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n" in head
    assert "MIME-Version: 1.0\r\n" in head
    assert "Auto-Submitted: auto-replied\r\n" in head  # RFC 3834: responders stay quiet
    assert "Mail-Followup-To: <acme@sw.test>\r\n" in head  # the unknown one left out
    assert "Disposition-Notification-To: \"EDI desk\" <acme@sw.test>\r\n" in head
    assert "Resent-Message-ID: <SWR-r1@sw.test>\r\n" in head
    assert body == b"<a>mx1.acme.example stays in the body</a>\r\n"


def test_every_message_id_is_mapped() -> None:
    copy = translate.translate(*translate.split(CARELESS), KNOWN.get, "<n@sw.test>",
                               message_ids=_mapped)
    assert translate.header(copy, "in-reply-to") == "<own@reader.example>"
    assert translate.header(copy, "references") == (
        "<SWR-m0@sw.test> <SWR-t@sw.test> <own@reader.example>")
    # Without a mapping no id header is written at all: nothing unmapped can pass.
    bare = translate.translate(*translate.split(CARELESS), KNOWN.get, "<n@sw.test>")
    assert translate.header(bare, "references") is None
    assert translate.header(bare, "in-reply-to") is None


def test_unknown_mailbox_in_an_advisory_header_is_left_out_not_refused() -> None:
    raw = CARELESS.replace(b"Mail-Reply-To: archive@elsewhere.example",
                           b"Mail-Reply-To: G: archive@elsewhere.example;")
    copy = translate.translate(*translate.split(raw), KNOWN.get, "<n@sw.test>")
    assert translate.header(copy, "mail-reply-to") is None
    assert translate.header(copy, "mail-followup-to") == "<acme@sw.test>"


@pytest.mark.parametrize(("field", "kept"), [
    (b"Precedence: first-class\r\n", None),
    (b"Date: not a date\r\n", None),
    (b"Auto-Submitted: (x) \r\n", "auto-generated"),
    (b"Content-Transfer-Encoding: base64 (mx1.acme.example)\r\n", "base64"),
])
def test_structured_content_headers_are_normalised(field: bytes, kept: str | None) -> None:
    name = field.split(b":")[0].decode().lower()
    copy = translate.translate([(name, field)], b"", KNOWN.get, "<n@sw.test>")
    assert translate.header(copy, name) == kept


HUB = "mail.sw.test"
BOUNDARY = "4jd1HS3rtSzJlrD.1795989492/mail.sw.test"
DSN = (
    "From: MAILER-DAEMON@sw.test (Single Window)\r\n"
    "Subject: Undelivered\r\nTo: acme@sw.test\r\nAuto-Submitted: auto-replied\r\n"
    "Message-Id: <20261129@mail.sw.test>\r\nMIME-Version: 1.0\r\n"
    f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{BOUNDARY}"\r\n'
    "Content-Transfer-Encoding: 8bit\r\n\r\n"
    "This is a MIME-encapsulated message.\r\n\r\n"
    f"--{BOUNDARY}\r\nContent-Description: Notification\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    "[English]\r\nThis is Single Window (mail.sw.test).\r\n"
    "<customs@sw.test>: host mail.sw.test[/var/lib/sw/run/lmtp.sock] said: 550 5.1.1\r\n"
    "    <in@customs.example> at mx.customs.example[10.9.0.5] (buildhost)\r\n\r\n"
    f"--{BOUNDARY}\r\nContent-Description: Delivery report\r\n"
    "Content-Type: message/delivery-status\r\n\r\n"
    f"Reporting-MTA: dns; {HUB}\r\nX-Postfix-Queue-ID: 4jd1HS3rtSzJlrD\r\n"
    "X-Postfix-Sender: rfc822; acme@sw.test\r\nReceived-From-MTA: dns; buildhost\r\n"
    "Arrival-Date: Sun, 29 Nov 2026 21:58:12 +0000 (UTC)\r\n\r\n"
    "Final-Recipient: rfc822; in@customs.example\r\n"
    "Original-Recipient: rfc822;customs@sw.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    "Remote-MTA: dns; mail.sw.test\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <in@customs.example> unknown at\r\n"
    "    mx.customs.example [10.9.0.5] /var/lib/sw/spool\r\n\r\n"
    f"--{BOUNDARY}\r\nContent-Description: Undelivered Message Headers\r\n"
    "Content-Type: text/rfc822-headers\r\n\r\n"
    "Return-Path: <acme@sw.test>\r\n"
    "Received: from mx1.acme.example (unknown [10.1.0.5]) by mail.sw.test\r\n"
    "X-SingleWindow-Origin: id=SW1; listener=mta; party=acme; peer=10.1.0.5; login=-;"
    " queue=ABC\r\n"
    "From: <edi@acme.example>\r\nTo: customs@sw.test\r\nCc: in@customs.example\r\n"
    "Message-ID: <m1@mx1.acme.example>\r\nReferences: <SW1.abc@sw.test>\r\n"
    "Subject: PAXLST\r\n\r\n"
    f"--{BOUNDARY}--\r\n").encode()
PHYSICAL = {"in@customs.example": "customs@sw.test", "edi@acme.example": "acme@sw.test"}


def _reader(ids: translate.IdMap = _mapped) -> translate.Reader:
    def shown(address: str) -> str | None:
        logical = PHYSICAL.get(address.lower())
        return logical or (address if address.lower().endswith("@sw.test") else None)
    return translate.Reader(shown, ids, HUB, "sw.test", ("/var/lib/sw", "buildhost"))


def test_a_dsn_is_rewritten_part_by_part() -> None:
    out = translate.generated(DSN, _reader(), "<SWN1@sw.test>",
                              returned=[("X-SingleWindow-Message", "SW1")])
    text = out.decode()
    for leak in ("customs.example", "acme.example", "10.9.0.5", "10.1.0.5", "/var/lib",
                 "buildhost", "X-Postfix", "Remote-MTA", "Received", "X-SingleWindow-Origin",
                 "Return-Path", "20261129@mail"):
        assert leak not in text, leak
    assert text.startswith("Message-ID: <SWN1@sw.test>\r\nFrom: <MAILER-DAEMON@sw.test>\r\n")
    assert "[English]\r\n" in text and "host mail.sw.test said" in text
    assert "Final-Recipient: rfc822; customs@sw.test\r\n" in text
    assert "Reporting-MTA: dns; mail.sw.test\r\n" in text
    assert "Diagnostic-Code: smtp; 550 5.1.1 <customs@sw.test> unknown at <host withheld>" \
        in text
    returned = text.split("Content-Type: text/rfc822-headers\r\n\r\n", 1)[1]
    assert returned.startswith("X-SingleWindow-Message: SW1\r\n"
                               "Message-ID: <SWR-m1@sw.test>\r\n")
    assert "References: <own@reader.example>\r\n" in returned
    assert "Cc: <customs@sw.test>\r\n" in returned
    assert text.endswith(f"--{BOUNDARY}--\r\n")
    # Still a delivery report a standard parser reads.
    report = dsn.parse(out)
    assert report is not None
    assert [(r.final_recipient, r.action, r.status) for r in report.recipients] == [
        ("customs@sw.test", "failed", "5.1.1")]


def test_a_returned_whole_message_keeps_its_body() -> None:
    raw = DSN.replace(b"text/rfc822-headers\r\n\r\n", b"message/rfc822\r\n\r\n").replace(
        b"Subject: PAXLST\r\n\r\n", b"Subject: PAXLST\r\n\r\n<a>edi@acme.example</a>\r\n")
    out = translate.generated(raw, _reader(lambda m: m), "<SWN1@sw.test>")
    returned = out.split(b"Content-Type: message/rfc822\r\n\r\n", 1)[1]
    assert b"\r\n\r\n<a>edi@acme.example</a>\r\n" in returned  # the submitter's own body
    assert b"Received" not in returned and b"Message-ID: <m1@mx1.acme.example>" in returned


def test_hub_headers_pass_only_in_generated_mail() -> None:
    notice = (b"From: MAILER-DAEMON@sw.test\r\nTo: <edi@acme.example>\r\n"
              b"X-SingleWindow-Notice: agency-dsn SW1\r\nX-SingleWindow-Message: SW1\r\n"
              b"X-SingleWindow-Message: SW1 <script>\r\nX-Mailer: hub\r\n\r\nbody\r\n")
    out = translate.generated(notice, _reader(), "<SWN2@sw.test>")
    assert out == (b"Message-ID: <SWN2@sw.test>\r\nFrom: <MAILER-DAEMON@sw.test>\r\n"
                   b"To: <acme@sw.test>\r\nX-SingleWindow-Notice: agency-dsn SW1\r\n"
                   b"X-SingleWindow-Message: SW1\r\n\r\nbody\r\n")


def test_a_report_about_the_readers_own_message_quotes_its_unknown_address() -> None:
    """SPEC R5.3 #8: the refusal names the address the submitter wrote; to anyone else
    an address Single Window does not know is withheld."""
    raw = DSN.replace(b"550 5.1.1 <in@customs.example> unknown",
                      b"554 5.1.0 The address <x@typo.example> in header Reply-To is unknown")
    theirs = translate.generated(raw, _reader(), "<SWN1@sw.test>").decode()
    assert "<address withheld>" in theirs and "typo.example" not in theirs
    reader = _reader()
    own = translate.Reader(reader.addresses, reader.message_ids, HUB, "sw.test",
                           reader.internal, own=True)
    mine = translate.generated(raw, own, "<SWN1@sw.test>").decode()
    assert "The address <x@typo.example> in header Reply-To" in " ".join(mine.split())
    assert "10.9.0.5" not in mine and "/var/lib" not in mine


def test_a_report_from_someone_unknown_gets_the_hubs_from() -> None:
    raw = DSN.replace(b"From: MAILER-DAEMON@sw.test (Single Window)",
                      b"From: postmaster@mx.customs-internal.example")
    out = translate.generated(raw, _reader(), "<SWN1@sw.test>")
    assert out.startswith(b"Message-ID: <SWN1@sw.test>\r\nFrom: <MAILER-DAEMON@sw.test>\r\n")
    assert b"customs-internal" not in out


def test_a_hostile_references_list_is_trimmed_to_its_first_and_latest_ids() -> None:
    many = " ".join(f"<r{n}@mx1.acme.example>" for n in range(5000)) + " <" + "x" * 300 + "@y>"
    raw = CARELESS.replace(b"References: <m0@mx1.acme.example>", f"References: {many}".encode())
    asked: list[str] = []

    def ids(mid: str) -> str:
        asked.append(mid)
        return _mapped(mid)
    copy = translate.translate(*translate.split(raw), KNOWN.get, "<n@sw.test>", message_ids=ids)
    kept = (translate.header(copy, "references") or "").split()
    assert len(kept) == 20 and kept[0] == "<SWR-r0@sw.test>" and kept[-1] == "<own@reader.example>"
    assert len(asked) == 20 + 2  # and In-Reply-To's and Resent-Message-ID's


def test_hops_counts_received_fields_folded_or_not() -> None:
    fields, _ = translate.head(b"Received: from a\r\n\tby b; date\r\nreceived: x; d\r\n"
                               b"X-Received: not a hop\r\nSubject: s\r\n\r\nbody\r\n")
    assert translate.hops(fields) == 2
    assert translate.hops(translate.head(RAW)[0]) == 1


def test_the_hop_count_survives_as_host_free_received_fields_on_top() -> None:
    # Issue 12: the copy carries as many hops as the submission made, naming no host.
    fields, body = translate.split(RAW)
    trace = translate.trace_fields(translate.hops(fields) + 2, "sw.test",
                                   "Sun, 29 Nov 2026 12:00:00 -0000")
    copy = translate.translate(fields, body, KNOWN.get, "<SW1.x@sw.test>",
                               extra=[("X-Extra", "1"), *trace])
    head = copy.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[:4] == [
        b"Received: by sw.test (Single Window, hop 3); Sun, 29 Nov 2026 12:00:00 -0000",
        b"Received: by sw.test (Single Window, hop 2); Sun, 29 Nov 2026 12:00:00 -0000",
        b"Received: by sw.test (Single Window, hop 1); Sun, 29 Nov 2026 12:00:00 -0000",
        b"Message-ID: <SW1.x@sw.test>"]
    assert head[4] == b"X-Extra: 1"
    assert translate.hops(translate.head(copy)[0]) == 3
    assert b"mta.acme.example" not in copy and b"10.1.0.5" not in copy
