"""``swctl health`` and the health collector against the running stack: all answer, then
a daemon held, then mail waiting in Postfix's queue for an agency that does not answer."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from singlewindow import cli, health, supervisor
from singlewindow.config import Config
from tests.support import factory
from tests.support.local import free_port
from tests.support.world import World, message, wait_until, world_fixture

world = world_fixture(("co", "company"), ("ag", "agency"))


def swctl_health(config: Config, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = cli.main(["health", "--state-dir", str(config.paths.state_dir)])
    return code, capsys.readouterr().out.splitlines()


def samples(config: Config) -> dict[str, dict[str, float]]:
    registry = CollectorRegistry()
    registry.register(health.HealthCollector(config))
    text = generate_latest(registry).decode()
    return {f.name: {next(iter(s.labels.values())): s.value for s in f.samples}
            for f in text_string_to_metric_families(text)}


def test_every_component_answers(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = swctl_health(world.config, capsys)
    assert code == 0, lines
    assert lines[0].startswith("SINGLEWINDOW OK - 7 of 7 components answer; queue ")
    assert " | incoming=" in lines[0] and len(lines) == 1
    found = samples(world.config)
    assert found["singlewindow_component_up"] == dict.fromkeys(health.COMPONENTS, 1.0)
    assert set(found["singlewindow_postfix_queue_messages"]) == set(health.QUEUES)
    assert set(found["singlewindow_tls_certificate_expiry_timestamp_seconds"]) == {
        "listeners", "reinject"}


@pytest.mark.parametrize(("name", "component"), [("transport", "transport"),
                                                 ("policyd", "policy"),
                                                 ("milter", "milter"),
                                                 ("console", "console")])
def test_a_stopped_daemon_is_critical(world: World, capsys: pytest.CaptureFixture[str],
                                      name: str, component: str) -> None:
    config = world.config
    where = (f"https://{config.console.listen}/ connection refused" if name == "console"
             else f"{config.paths.run_dir}/")
    with supervisor.hold(world.config.paths.state_dir, name):
        code, lines = swctl_health(world.config, capsys)
        up = samples(world.config)["singlewindow_component_up"]
    assert code == health.CRITICAL
    assert lines[0].startswith("SINGLEWINDOW CRITICAL - 1 problem; 6 of 7 components answer")
    assert lines[1].startswith(f"CRITICAL {component}: {where}"), lines
    assert up[component] == 0.0 and sum(up.values()) == 6.0
    assert swctl_health(world.config, capsys)[0] == 0  # back once released


def test_mail_waiting_for_an_agency_shows_in_the_queue(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    co = world["co"]
    silent = world.add("silent", "agency", relay_port=free_port())  # nothing listens there
    subject = "waits " + secrets.token_hex(4)
    assert world.submit(co, [silent.logical],
                        message(co, silent.logical, subject, factory.gendec())) == {}
    config = world.config
    # The copy waits in the deferred queue until the (test stack's short) queue lifetime.
    wait_until(lambda: health.list_queue(config)["deferred"].messages >= 1)
    strict = replace(config, health=replace(config.health, queue_warning=1,
                                            queue_age_warning=1, queue_critical=0,
                                            queue_age_critical=0))
    wait_until(lambda: health.check(strict).status == health.WARNING)
    report = health.check(strict)
    assert report.queues is not None
    waiting = sum(report.queues[q].messages for q in health.WAITING)
    assert report.problems[0].text.startswith(f"{waiting} messages waiting in Postfix's queue")
    assert all(p.severity == health.WARNING and p.component == "queue"
               for p in report.problems)
    found = samples(config)
    assert found["singlewindow_postfix_queue_messages"]["deferred"] >= 1
    assert found["singlewindow_postfix_queue_oldest_seconds"]["deferred"] > 0
    # The stack's own thresholds are far above one message.
    assert swctl_health(config, capsys)[0] == 0
