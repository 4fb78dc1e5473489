"""Address translation of outgoing copies, on raw bytes, without a daemon."""

from __future__ import annotations

import base64

import pytest

from singlewindow.transport import translate

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


def test_with_body_replaces_the_one_part() -> None:
    fields, body = translate.with_body(translate.head(RAW)[0], "application/xml; charset=utf-8",
                                       b"<x/>")
    head = b"".join(f for _, f in fields)
    assert head.count(b"Content-Type:") == 1
    assert b"Content-Transfer-Encoding: base64" in head
    assert body == b"PHgvPg==\r\n"


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


def test_with_body_encodes_a_large_payload_in_whole_lines() -> None:
    payload = bytes(range(256)) * 12_000  # more than one encoding chunk
    _, body = translate.with_body([], "application/xml", payload)
    lines = body.split(b"\r\n")
    assert lines[-1] == b"" and {len(line) for line in lines[:-2]} == {76}
    assert base64.b64decode(body) == payload


def test_head_gives_the_body_offset_without_copying_the_body() -> None:
    fields, offset = translate.head(RAW)
    assert [name for name, _ in fields][:2] == ["received", "return-path"]
    assert RAW[offset:] == b"<a>edi@acme.example stays in the body</a>\r\n"
    assert translate.head(b"Subject: x\r\n") == ([("subject", b"Subject: x\r\n")], 12)


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
