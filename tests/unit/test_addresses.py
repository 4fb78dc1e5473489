"""The one pattern for an e-mail address in free text (:mod:`singlewindow.addresses`)."""

from __future__ import annotations

from singlewindow import addresses


def test_an_address_in_a_sentence_without_its_full_stop() -> None:
    text = "550 <in@customs.example>: ask Post.Master+x@mx-1.customs.example. or a@b!"
    found = ["in@customs.example", "Post.Master+x@mx-1.customs.example", "a@b"]
    assert addresses.IN_TEXT.findall(text) == found
    assert addresses.IN_BYTES.findall(text.encode()) == [f.encode() for f in found]


def test_what_is_no_address() -> None:
    for text in ("no at sign here", "user@", "@host.example", "user@.-", "<@>"):
        assert addresses.IN_TEXT.search(text) is None, text
