"""``swctl demo`` against the demo stack: the round trip it shows happens, as it says."""

from __future__ import annotations

from singlewindow import demo
from singlewindow.config import Config


def test_swctl_demo_shows_the_whole_round_trip(sw_stack: Config) -> None:
    credentials = (sw_stack.paths.state_dir / "demo-credentials").read_text().split()
    password = dict(line.split("=", 1) for line in credentials)["password"]
    said: list[str] = []
    demo.run(sw_stack, password, say=said.append)
    text = "\n".join(said)
    domain = sw_stack.hub.domain
    titles = [line for line in text.splitlines() if line.startswith("=== ")]
    assert titles[:3] == [
        "=== customs' MTA received (EDIFACT converted to XML, logical addresses) ===",
        "=== acme's MTA received the DSN ===",
        "=== acme's MTA received the declaration response ==="]
    # brightline fetched two messages about its submission from its maildrop: its DSN
    # (which returns the submission's headers, Subject among them) and customs' answer.
    subject = next(line for line in said if line.startswith("\nbrightline")).split(": ")[-1]
    assert sorted(titles[3:]) == [f"=== brightline fetched by POP3 (STLS): {subject} ===",
                                  f"=== brightline fetched by POP3 (STLS): Re: {subject} ==="]
    # The agency sees logical addresses only, and XML converted from the EDIFACT.
    copy = text.split("=== customs' MTA received")[1].split("===", 2)[1]
    assert f"From: acme@{domain}" in copy and f"To: customs@{domain}" in copy
    assert "edi@acme.example" not in copy and "<" in copy
    assert f"rfc822; customs@{domain}: Action delivered, Status 2.0.0" in text
