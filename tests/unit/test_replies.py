"""The reply constants: what a Reply says on the wire, and no reply named twice."""

from __future__ import annotations

from collections import defaultdict

import pytest

from singlewindow import replies
from singlewindow.replies import Reply

#: Every Reply constant of the module, by name.
ALL = {name: value for name, value in vars(replies).items() if isinstance(value, Reply)}

#: Replies that deliberately share their text: the backend's answer while a POP3 session
#: holds the maildrop repeats the edge's own, with a 451 instead of a 450 (issue 15).
SAME_TEXT = {frozenset({"MAILDROP_LOCKED", "MAILDROP_BUSY"})}


def test_line_is_code_enhanced_code_and_text() -> None:
    assert replies.PEER_UNKNOWN.line() == \
        "554 5.7.1 Your address is not registered with Single Window"
    assert Reply(250, "2.0.0", "ok").line() == "250 2.0.0 ok"


@pytest.mark.parametrize(("code", "permanent", "transient"),
                         [(250, False, False), (354, False, False), (421, False, True),
                          (451, False, True), (499, False, True), (500, True, False),
                          (554, True, False)])
def test_permanent_and_transient_by_the_basic_code(code: int, permanent: bool,
                                                   transient: bool) -> None:
    reply = Reply(code, "5.0.0", "x")
    assert (reply.permanent, reply.transient) == (permanent, transient)


def test_with_text_keeps_codes_and_key() -> None:
    got = replies.ROUTING_LOOP.with_text("Routing loop detected (31 hops)")
    assert got == Reply(554, "5.4.6", "Routing loop detected (31 hops)", "routing-loop")
    assert replies.ROUTING_LOOP.text == "Routing loop detected"  # the constant is untouched


def test_no_two_constants_say_the_same() -> None:
    # One reply, one name: the policy and the milter refuse an unknown peer or login with
    # the same constant (singlewindow.identity), not with a copy of it.
    named: dict[tuple[int, str, str], list[str]] = defaultdict(list)
    for name, reply in ALL.items():
        named[reply.code, reply.enhanced, reply.text].append(name)
    assert [names for names in named.values() if len(names) > 1] == []


def test_texts_are_shared_only_deliberately() -> None:
    by_text: dict[str, set[str]] = defaultdict(set)
    for name, reply in ALL.items():
        by_text[reply.text].add(name)
    assert {frozenset(names) for names in by_text.values() if len(names) > 1} == SAME_TEXT


def test_keys_are_kebab_case_and_unique() -> None:
    keys = [reply.key for reply in ALL.values() if reply.key]
    assert len(keys) == len(set(keys))
    assert all(key == key.lower() and " " not in key and "_" not in key for key in keys)
    # A key names why a recipient was refused: never on a success or a deferral.
    assert all(reply.permanent for reply in ALL.values() if reply.key)


def test_enhanced_code_class_matches_the_basic_code() -> None:
    # RFC 3463 2: the class digit is 2, 4 or 5 as the reply is success, transient or
    # permanent; RFC 5321 4.2: the reply code's first digit says the same.
    for name, reply in ALL.items():
        assert reply.enhanced[0] == str(reply.code)[0], name
