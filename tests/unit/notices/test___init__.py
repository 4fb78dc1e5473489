"""The notices' one environment and the operator's override directory searched first."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from singlewindow import config, daemon, mig, notices
from singlewindow.notices import agency, control, delivered
from tests.support import factory


@pytest.fixture(autouse=True)
def package_wording() -> Iterator[None]:
    """Each test starts, and leaves, with the package's wording only."""
    notices.use(None)
    yield
    notices.use(None)


def every_notice() -> dict[str, bytes]:
    """One of each notice the transport writes, from fixed inputs."""
    # An XML submission: no CONTRL, whose UNB carries the time of day.
    result = mig.validate(factory.gendec().replace(b"<Flag>PA</Flag>", b"<Flag>P</Flag>"),
                          "application/xml")
    return {
        "agency": agency.build(message_id="SW1", to="co@sw.test", domain="sw.test",
                               hostname="mail.sw.test", now=0, notice_id="<n@sw.test>",
                               failed=[agency.Failed("customs@sw.test", "failed", "5.1.1",
                                                     "no such mailbox")]),
        "delivered": delivered.build(
            to="co@sw.test", hostname="mail.sw.test", domain="sw.test",
            recipients=[delivered.Delivered("ag@sw.test", None, "250 2.0.0 ok")],
            head=b"Subject: s\r\n\r\n", body=None, envid=None, arrival=0, now=0,
            boundary="B"),
        "control": control.build(result, message_id="SW1", sender="single-window@sw.test",
                                 to="co@sw.test", domain="sw.test", in_reply_to=None, now=0),
    }


def test_only_xml_templates_are_escaped() -> None:
    env = notices.environment()
    assert env.from_string("{{ v }}").render(v="<&>") == "<&>"
    text = notices.render("agency_failure.txt.j2", message_id="SW<&>", hub_name="H",
                          recipients=[])
    assert "SW<&>" in text
    xml = notices.render("control_message.xml.j2", message_type="<&>", syntax="xml",
                         reference="", errors=[], unlisted=0)
    assert "<MessageType>&lt;&amp;&gt;</MessageType>" in xml


def test_an_override_changes_its_notice_and_only_that_one(tmp_path: Path) -> None:
    before = every_notice()
    own = (notices.PACKAGE_DIR / "agency_failure.txt.j2").read_text().replace(
        "Dit is het berichtensysteem", "Dit is de berichtendienst")
    (tmp_path / "agency_failure.txt.j2").write_text(own)
    notices.use(tmp_path)
    after = every_notice()
    assert b"Dit is de berichtendienst" in after["agency"]
    assert after["agency"] == before["agency"].replace(b"Dit is het berichtensysteem",
                                                       b"Dit is de berichtendienst")
    assert after["delivered"] == before["delivered"]
    assert after["control"] == before["control"]


def test_a_missing_directory_is_no_override(tmp_path: Path) -> None:
    before = every_notice()
    notices.use(tmp_path / "absent")
    assert every_notice() == before


def test_an_override_that_fails_to_render_falls_back_with_an_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = every_notice()
    broken = tmp_path / "agency_failure.txt.j2"
    broken.write_text("Dear {{ submitter_name }}, message {{ message_id }} failed.\n")
    notices.use(tmp_path)  # it compiles: only rendering finds the unknown variable
    with caplog.at_level(logging.ERROR, logger="singlewindow.notices"):
        assert every_notice()["agency"] == before["agency"]
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert str(broken) in caplog.text and "submitter_name" in caplog.text


def test_a_syntax_error_written_after_start_falls_back_too(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = every_notice()
    notices.use(tmp_path)
    (tmp_path / "success_dsn.txt.j2").write_text("{% for r in recipients %}\n")
    with caplog.at_level(logging.ERROR, logger="singlewindow.notices"):
        assert every_notice()["delivered"] == before["delivered"]
    assert "success_dsn.txt.j2" in caplog.text


def test_an_override_that_cannot_be_read_falls_back_too(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = every_notice()
    notices.use(tmp_path)
    (tmp_path / "control_message.xml.j2").write_bytes(b"<a>\xff\xfe</a>\n")  # not UTF-8
    with caplog.at_level(logging.ERROR, logger="singlewindow.notices"):
        assert every_notice()["control"] == before["control"]
    assert "control_message.xml.j2" in caplog.text
    with pytest.raises(notices.NoticeError, match=r"control_message\.xml\.j2: .*utf-8"):
        notices.check(tmp_path)


def test_the_package_templates_are_not_guarded() -> None:
    # An error in the shipped wording is a bug: raised, not hidden behind a fallback.
    with pytest.raises(Exception, match="message_id"):
        notices.render("agency_failure.txt.j2", hub_name="H", recipients=[])


@pytest.mark.parametrize(("name", "text", "error"), [
    ("agency_failure.txt.j2", "{% if %}\n", r"agency_failure\.txt\.j2, line 1: "),
    ("agency_failure.j2", "x\n", r"agency_failure\.j2: no notice has this template name"),
])
def test_an_unusable_override_is_refused_by_name(tmp_path: Path, name: str, text: str,
                                                 error: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(notices.NoticeError, match=error):
        notices.use(tmp_path)
    assert notices.render("agency_failure.txt.j2", message_id="SW1", hub_name="H",
                          recipients=[]) == notices.render_in(
        None, "agency_failure.txt.j2", {"message_id": "SW1", "hub_name": "H", "recipients": []})


def test_a_daemon_refuses_to_start_with_an_unusable_override(tmp_path: Path) -> None:
    (tmp_path / "notices").mkdir()
    (tmp_path / "notices" / "control_message.txt.j2").write_text("{{ count \n")
    path = tmp_path / "singlewindow.toml"
    path.write_text(f'[notices]\ntemplates_dir = "{tmp_path / "notices"}"\n')
    assert config.load(path).notices.templates_dir == tmp_path / "notices"
    args = argparse.Namespace(config=str(path), state_dir=None)
    loaded = daemon.load_config(args)  # the policy daemon and the milter start
    with pytest.raises(SystemExit, match=r"configuration: notices\.templates_dir: .*"
                                         r"control_message\.txt\.j2, line 1"):
        daemon.use_notices(loaded)  # the transport, which writes notices, does not


def test_a_daemon_uses_the_configured_override(tmp_path: Path) -> None:
    (tmp_path / "success_dsn.txt.j2").write_text("Delivered to {{ hub_name }}.\n")
    path = tmp_path / "singlewindow.toml"
    path.write_text(f'[notices]\ntemplates_dir = "{tmp_path}"\n')
    daemon.use_notices(daemon.load_config(argparse.Namespace(config=str(path),
                                                              state_dir=None)))
    assert b"Delivered to Single Window.\r\n" in every_notice()["delivered"]
