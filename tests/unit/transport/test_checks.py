"""The technical checks (SPEC R5.3 reasons 1-7) over raw message bytes."""

from __future__ import annotations

import base64
import random

import pytest

from singlewindow import replies
from singlewindow.transport.checks import (
    DEFAULT_ALLOWED_TYPES,
    ContentError,
    body_part,
    check_content,
)

EDIFACT = "UNA:+.? 'UNB+UNOC:3+SENDER+SW+240101:1200+1'UNH+1+CUSDEC:D:96B:UN'UNT+2+1'UNZ+1+1'"
XML = (
    '<?xml version="1.0" encoding="utf-8"?>\n<declaration id="42">' + "<x/>" * 60 + "</declaration>"
)


def message(headers: str, body: str | bytes) -> bytes:
    """A message as LMTP delivers it: CRLF line ends, header block, empty line, body."""
    head = "From: company@sw.test\nTo: agency@sw.test\nSubject: test\n" + headers
    if isinstance(body, str):
        body = body.encode("ascii")
    return (head.replace("\n", "\r\n") + "\r\n").encode("ascii") + body.replace(b"\n", b"\r\n")


def multipart(boundary: str, *parts: str, subtype: str = "mixed") -> tuple[str, str]:
    """Header lines and body of a well-formed multipart whose parts are given as text."""
    body = "This is a MIME message.\n"
    for part in parts:
        body += f"--{boundary}\n{part}\n"
    body += f"--{boundary}--\nepilogue\n"
    return f'MIME-Version: 1.0\nContent-Type: multipart/{subtype}; boundary="{boundary}"\n', body


def failure(raw: bytes, **kwargs: frozenset[str]) -> replies.Reply:
    reply = check_content(raw, **kwargs)
    assert reply is not None, "the message should have failed"
    # The text goes into one LMTP reply line (RFC 5321 4.5.3.1.5).
    assert len(reply.line()) <= 512
    assert all(" " <= c <= "~" for c in reply.text)
    return reply


def b64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii")


# --- valid messages -----------------------------------------------------------------------


def test_edifact_as_application_edifact_passes() -> None:
    raw = message("Content-Type: application/EDIFACT\n", EDIFACT + "\n")
    assert check_content(raw) is None
    part = body_part(raw)
    assert part.content_type == "application/edifact"
    assert part.transfer_encoding == "7bit"
    assert part.payload == (EDIFACT + "\r\n").encode()


def test_xml_in_base64_passes_and_decodes() -> None:
    payload = XML.encode("utf-8")
    raw = message(
        "Content-Type: application/xml; charset=utf-8\nContent-Transfer-Encoding: base64\n",
        b64(payload),
    )
    part = body_part(raw)
    assert part.content_type == "application/xml"
    assert part.charset == "utf-8"
    assert part.payload == payload


def test_base64_groups_may_span_lines() -> None:
    # RFC 2045 6.8: line breaks are not part of the encoding, so a 4-character group may
    # be split over two lines.
    encoded = base64.b64encode(b"<a>single window</a>").decode()
    body = encoded[:6] + "\n" + encoded[6:] + "\n"
    raw = message("Content-Type: text/xml\nContent-Transfer-Encoding: base64\n", body)
    assert body_part(raw).payload == b"<a>single window</a>"


def test_quoted_printable_passes_and_decodes() -> None:
    body = '<a b=3D"1">caf=C3=A9 is a long line that is broken with a soft=\nbreak</a>  \n'
    raw = message("Content-Type: text/xml\nContent-Transfer-Encoding: Quoted-Printable\n", body)
    part = body_part(raw)
    assert part.transfer_encoding == "quoted-printable"
    assert (
        part.payload
        == '<a b="1">café is a long line that is broken with a softbreak</a>\r\n'.encode()
    )


def test_nested_multipart_with_one_leaf_is_one_body_part() -> None:
    inner_headers, inner_body = multipart(
        "inner",
        "Content-Type: text/xml\nContent-Transfer-Encoding: base64\n\n" + b64(b"<a/>"),
        subtype="alternative",
    )
    headers, body = multipart("outer", inner_headers + "\n" + inner_body)
    raw = message(headers, body)
    assert check_content(raw) is None
    part = body_part(raw)
    assert part.content_type == "text/xml"
    assert part.payload == b"<a/>"


def test_leaf_of_a_multipart_ends_before_the_delimiter_line_break() -> None:
    headers, body = multipart("b", "Content-Type: text/plain\n\n" + EDIFACT)
    assert body_part(message(headers, body)).payload == EDIFACT.encode()


def test_no_content_type_defaults_to_text_plain() -> None:
    assert body_part(message("", EDIFACT + "\n")).content_type == "text/plain"


def test_media_type_is_case_insensitive_and_comments_are_allowed() -> None:
    raw = message("Content-Type: Text/XML (the payload); charset=us-ascii\n", "<a/>\n")
    assert body_part(raw).content_type == "text/xml"


def test_8bit_part_may_carry_8bit_bytes() -> None:
    raw = message(
        "Content-Type: text/xml; charset=utf-8\nContent-Transfer-Encoding: 8bit\n",
        "<a>café</a>\n".encode(),
    )
    assert body_part(raw).payload == "<a>café</a>\r\n".encode()


def test_bare_lf_line_ends_are_accepted() -> None:
    raw = b"Subject: x\nContent-Type: text/xml\nContent-Transfer-Encoding: base64\n\n"
    raw += b64(b"<a/>").encode()
    assert body_part(raw).payload == b"<a/>"


def test_allowed_types_are_configurable() -> None:
    raw = message("Content-Type: application/json\n", "{}\n")
    assert failure(raw).enhanced == "5.6.1"
    assert check_content(raw, allowed_types=frozenset({"application/JSON"})) is None
    assert {"application/edifact", "application/xml", "text/xml"} <= DEFAULT_ALLOWED_TYPES


# --- 1. unsupported Content-Type ----------------------------------------------------------


def test_unsupported_content_type_names_the_type() -> None:
    reply = failure(message("Content-Type: application/pdf\n", "JVBERi0=\n"))
    assert reply.code == 554
    assert reply.enhanced == replies.UNSUPPORTED_CONTENT_TYPE.enhanced
    assert reply.text.startswith(replies.UNSUPPORTED_CONTENT_TYPE.text)
    assert "application/pdf in the message body" in reply.text


def test_unsupported_content_type_in_a_part_names_the_part() -> None:
    headers, body = multipart("b", "Content-Type: image/png\n\nx")
    reply = failure(message(headers, body))
    assert "image/png in body part 1 (line 3)" in reply.text


def test_text_plain_is_refused_when_not_configured() -> None:
    reply = failure(message("", EDIFACT + "\n"), allowed_types=frozenset({"text/xml"}))
    assert "text/plain" in reply.text
    assert "accepted: text/xml" in reply.text


def test_content_type_that_is_not_a_media_type() -> None:
    reply = failure(message("Content-Type: xml\n", "<a/>\n"))
    assert reply.enhanced == "5.6.1"
    assert "'xml' in the message body is not a media type" in reply.text


def test_two_content_type_headers() -> None:
    reply = failure(message("Content-Type: text/xml\nContent-Type: text/plain\n", "<a/>\n"))
    assert "2 Content-Type headers" in reply.text


def test_attached_message_is_not_a_payload() -> None:
    headers, body = multipart("b", "Content-Type: message/rfc822\n\nSubject: x\n\nhello")
    assert "message/rfc822" in failure(message(headers, body)).text


# --- 2. no body part ----------------------------------------------------------------------


def test_empty_body() -> None:
    reply = failure(message("Content-Type: text/xml\n", ""))
    assert reply.enhanced == replies.NO_BODY_PART.enhanced
    assert reply.text == replies.NO_BODY_PART.text + ": the message body is empty"


def test_body_of_blank_lines_only() -> None:
    assert failure(message("", "\n  \n\n")).text.startswith(replies.NO_BODY_PART.text)


def test_headers_without_body() -> None:
    raw = b"Subject: x\r\nContent-Type: text/xml\r\n"
    assert failure(raw).text.startswith(replies.NO_BODY_PART.text)


def test_multipart_with_no_parts() -> None:
    raw = message('Content-Type: multipart/mixed; boundary="b"\n', "preamble\n--b--\n")
    reply = failure(raw)
    assert reply.text == (
        replies.NO_BODY_PART.text + ": the message (multipart/mixed) contains no body part"
    )


def test_base64_part_that_decodes_to_nothing() -> None:
    headers, body = multipart("b", "Content-Type: text/xml\nContent-Transfer-Encoding: base64\n")
    reply = failure(message(headers, body))
    assert reply.text.endswith("body part 1 (line 3) is empty")


# --- 3. more than one body part -----------------------------------------------------------


def test_two_body_parts() -> None:
    headers, body = multipart(
        "b", "Content-Type: text/xml\n\n<a/>", "Content-Type: application/pdf\n\nJVBERi0="
    )
    reply = failure(message(headers, body))
    assert reply.enhanced == replies.MULTIPLE_BODY_PARTS.enhanced
    assert reply.text == (
        replies.MULTIPLE_BODY_PARTS.text + ": 2 found: body part 1 (text/xml, line 3), "
        "body part 2 (application/pdf, line 7)"
    )


def test_two_leaves_in_nested_multiparts() -> None:
    inner_headers, inner_body = multipart("inner", "\n<a/>", "\n<b/>", subtype="alternative")
    headers, body = multipart("outer", inner_headers + "\n" + inner_body)
    reply = failure(message(headers, body))
    assert "body part 1.1" in reply.text
    assert "body part 1.2" in reply.text


def test_an_empty_second_part_still_counts() -> None:
    headers, body = multipart("b", "Content-Type: text/xml\n\n<a/>", "")
    assert failure(message(headers, body)).text.startswith(replies.MULTIPLE_BODY_PARTS.text)


# --- 4. invalid Base64 or quoted-printable ------------------------------------------------

BASE64 = "Content-Type: text/xml\nContent-Transfer-Encoding: base64\n"
QP = "Content-Type: text/xml\nContent-Transfer-Encoding: quoted-printable\n"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("PGE+\nPGI*Pg==\n", "character '*' at line 2, column 4, in the message body"),
        ("PGE+\nPG I+\n", "character 0x20 at line 2, column 3"),
        ("PGE+PGI+" * 10 + "\n", "line 1 in the message body is 80 characters long"),
        ("PG=+\n", "padding '=' at line 1, column 3, in the message body is not at the end"),
        ("PGE+PA==\nPGI+\n", "continues at line 2 after the padding at line 1"),
        ("PGE+PGI\n", "ends in an incomplete group of 3 characters"),
        ("PGE+P===\n", "wrong Base64 padding at line 1"),
        ("PGE+PGI=\n=\n", "continues at line 2 after the padding at line 1"),
    ],
)
def test_invalid_base64(body: str, detail: str) -> None:
    reply = failure(message(BASE64, body))
    assert reply.enhanced == replies.INVALID_ENCODING.enhanced
    assert reply.text.startswith(replies.INVALID_ENCODING.text + ": ")
    assert detail in reply.text


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("<a>=3D</a>\n<b>=G0</b>\n", "'=' at line 2, column 4, in the message body"),
        ("<a>=3</a>\n", "'=' at line 1, column 4"),
        ("<a>=3\n", "'=' at line 1, column 4"),
        ("<a>x</a>\n" + "x" * 77 + "\n", "line 2 in the message body is 77 characters long"),
        ("<a>\x07</a>\n", "byte 0x07 at line 1, column 4"),
        ("<a>\r</a>\n", "byte 0x0D at line 1, column 4"),
    ],
)
def test_invalid_quoted_printable(body: str, detail: str) -> None:
    reply = failure(message(QP, body))
    assert reply.enhanced == replies.INVALID_ENCODING.enhanced
    assert detail in reply.text


def test_quoted_printable_error_in_a_part_names_the_part() -> None:
    headers, body = multipart("b", QP + "\n<a>=ZZ</a>")
    assert (
        "'=' at line 6, column 4, in body part 1 (line 3)" in failure(message(headers, body)).text
    )


def test_quoted_printable_allows_lowercase_hex_and_transport_padding() -> None:
    # RFC 2045 6.7 rule (1) robustness note, and the transport-padding rule.
    raw = message(QP, "<a>=3d</a> \t\n<b>=\t\nc</b>\n")
    assert body_part(raw).payload == b"<a>=</a>\r\n<b>c</b>\r\n"


# --- 5. 8-bit bytes in a 7-bit part -------------------------------------------------------


def test_8bit_byte_in_an_undeclared_part() -> None:
    raw = message("Content-Type: text/xml\n", "<a>\n<b>caf\xe9</b>\n".encode("latin-1"))
    reply = failure(raw)
    assert reply.enhanced == replies.EIGHT_BIT_IN_7BIT.enhanced
    assert reply.text == (
        replies.EIGHT_BIT_IN_7BIT.text + ": byte 0xE9 at line 2, column 7, in the message body, "
        "whose Content-Transfer-Encoding 7bit allows only 7-bit bytes"
    )


def test_8bit_byte_in_a_part_declared_7bit() -> None:
    headers, body = multipart(
        "b", "Content-Type: text/xml\nContent-Transfer-Encoding: 7bit\n\n<a/>"
    )
    raw = message(headers, body).replace(b"<a/>", "<ä/>".encode())
    assert "byte 0xC3 at line 6, column 2, in body part 1 (line 3)" in failure(raw).text


def test_8bit_byte_in_base64_is_reported_as_8bit() -> None:
    raw = message(BASE64, b"PGE+\nPG\xffI+\n")
    reply = failure(raw)
    assert reply.text.startswith(replies.EIGHT_BIT_IN_7BIT.text)
    assert "base64" in reply.text


# --- 6. unknown Content-Transfer-Encoding -------------------------------------------------


def test_unknown_transfer_encoding() -> None:
    raw = message("Content-Type: text/xml\nContent-Transfer-Encoding: x-uuencode\n", "begin\n")
    reply = failure(raw)
    assert reply.enhanced == replies.UNKNOWN_TRANSFER_ENCODING.enhanced
    assert reply.text.startswith(
        replies.UNKNOWN_TRANSFER_ENCODING.text + ": 'x-uuencode' in the message body"
    )


def test_empty_transfer_encoding_is_unknown() -> None:
    raw = message("Content-Type: text/xml\nContent-Transfer-Encoding:\n", "<a/>\n")
    assert failure(raw).text.startswith(replies.UNKNOWN_TRANSFER_ENCODING.text + ": ''")


def test_conflicting_transfer_encodings() -> None:
    raw = message(
        "Content-Type: text/xml\nContent-Transfer-Encoding: base64\n"
        "Content-Transfer-Encoding: 7bit\n",
        "<a/>\n",
    )
    assert "conflicting Content-Transfer-Encoding" in failure(raw).text


# --- 7. multipart that cannot be parsed ---------------------------------------------------


def unparsable(raw: bytes) -> str:
    reply = failure(raw)
    assert reply.enhanced == replies.UNPARSABLE_MULTIPART.enhanced
    assert reply.text.startswith(replies.UNPARSABLE_MULTIPART.text + ": ")
    return reply.text


def test_multipart_without_boundary_parameter() -> None:
    raw = message("Content-Type: multipart/mixed\n", "--b\n\n<a/>\n--b--\n")
    assert "the message (multipart/mixed) has no boundary parameter" in unparsable(raw)


def test_multipart_whose_boundary_never_appears() -> None:
    raw = message('Content-Type: multipart/mixed; boundary="b"\n', "--c\n\n<a/>\n--c--\n")
    assert "boundary line '--b' not found" in unparsable(raw)


def test_unterminated_multipart() -> None:
    raw = message('Content-Type: multipart/mixed; boundary="b"\n', "--b\n\n<a/>\n")
    assert "closing line '--b--' not found" in unparsable(raw)


def test_a_longer_boundary_lookalike_is_not_a_delimiter() -> None:
    raw = message('Content-Type: multipart/mixed; boundary="b"\n', "--b\n\n<a/>\n--bb--\n")
    assert "not terminated" in unparsable(raw)


def test_unterminated_inner_multipart() -> None:
    inner = 'Content-Type: multipart/alternative; boundary="in"\n\n--in\n\n<a/>'
    headers, body = multipart("out", inner)
    assert "body part 1 (multipart/alternative) is not terminated" in unparsable(
        message(headers, body)
    )


def test_encoded_multipart() -> None:
    raw = message(
        'Content-Type: multipart/mixed; boundary="b"\nContent-Transfer-Encoding: base64\n',
        "--b\n\n<a/>\n--b--\n",
    )
    assert "declares Content-Transfer-Encoding 'base64'" in unparsable(raw)


def test_boundary_with_forbidden_characters() -> None:
    raw = message('Content-Type: multipart/mixed; boundary="a*b"\n', "--a*b\n\n<a/>\n--a*b--\n")
    assert "boundary 'a*b'" in unparsable(raw)


def test_boundary_ending_in_a_line_break() -> None:
    # RFC 2231 lets a parameter carry any octet; a boundary may not.
    raw = message("Content-Type: multipart/mixed; boundary*=''b%0A\n", "--b\n\n<a/>\n--b--\n")
    assert "boundary 'b\\n'" in unparsable(raw)


def test_unterminated_quote_in_the_content_type() -> None:
    raw = message('Content-Type: multipart/mixed; boundary="b\n', "--b\n\n<a/>\n--b--\n")
    assert "cannot be parsed" in unparsable(raw)


def test_part_header_without_the_empty_line() -> None:
    headers, body = multipart("b", "Content-Type: text/xml\n<a/>")
    assert "in body part 1, line 4 is neither a header field" in unparsable(message(headers, body))


# --- the API ------------------------------------------------------------------------------


def test_body_part_raises_with_the_reply() -> None:
    with pytest.raises(ContentError) as caught:
        body_part(message("Content-Type: image/gif\n", "R0lG\n"))
    assert caught.value.reply.enhanced == "5.6.1"
    assert "image/gif" in str(caught.value)


def test_reply_text_escapes_control_characters_and_is_bounded() -> None:
    reply = failure(message("Content-Type: x-\x01" + "y" * 600 + "\n", "a\n"))
    assert "\\x01" in reply.text
    assert reply.text.endswith("...")


def test_mangled_messages_only_ever_give_replies() -> None:
    """Whatever arrives, the checks answer with a reply line; they never crash the transport."""

    headers, body = multipart("b", BASE64 + "\n" + b64(b"<a/>" * 30), QP + "\n<a>=3D=\nb</a>")
    seeds = [message(headers, body), message(QP, "<a>=3D=\nb</a>\n"), message("", EDIFACT)]
    rng = random.Random(2033)
    for _ in range(2000):
        raw = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(raw))
            if rng.random() < 0.5:
                del raw[at]
            else:
                raw[at:at] = rng.choice([b"\r\n", b"-", b"=", b"\x80", b" ", b";", b'"', b"--b"])
        reply = check_content(bytes(raw))
        if reply is not None:
            assert len(reply.line()) <= 512
            assert all(" " <= c <= "~" for c in reply.text)


# --- long bodies: line numbers are counted, not stored ------------------------------------


def test_line_numbers_deep_in_a_long_body() -> None:
    lines = 200_000
    body = b"<n>ok</n>\n" * lines + "<n>caf\xe9</n>\n".encode("latin-1")
    reply = failure(message("Content-Type: text/xml\n", body))
    assert f"byte 0xE9 at line {lines + 1}, column 7, in the message body" in reply.text


def test_base64_fault_deep_in_a_long_body_is_located() -> None:
    good = b64(bytes(range(255)) * 2000)  # ~680 kB, 76-character lines
    count = good.count("\n")
    reply = failure(message(BASE64, good + "PG*+\n"))
    assert f"character '*' at line {count + 1}, column 3, in the message body" in reply.text
    assert body_part(message(BASE64, good)).payload == bytes(range(255)) * 2000


def test_quoted_printable_fault_deep_in_a_long_body_is_located() -> None:
    good = "<a>caf=C3=A9 =\nsoft</a>\n" * 50_000
    reply = failure(message(QP, good + "<a>=ZZ</a>\n"))
    assert f"'=' at line {100_001}, column 4, in the message body" in reply.text
    assert body_part(message(QP, good)).payload == "<a>café soft</a>\r\n".encode() * 50_000


def test_long_line_of_transport_padding_is_quoted_printable() -> None:
    # Rule (5) counts the line without its transport padding.
    raw = message(QP, "<a>" + "x" * 60 + "</a>" + " " * 20 + "\n")
    assert body_part(raw).payload == ("<a>" + "x" * 60 + "</a>\r\n").encode()


def test_long_body_in_a_part_keeps_its_offsets() -> None:
    payload = "<n>ok</n>\n" * 100_000
    headers, body = multipart("b", "Content-Type: text/xml\n\n" + payload + "<n>\x01=</n>")
    part = body_part(message(headers, body))
    assert part.payload == (payload + "<n>\x01=</n>").replace("\n", "\r\n").encode()
