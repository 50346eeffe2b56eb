"""`[[schedules]]`, `[retention]` and `[health]` in the config file (jobd/settings/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobd.schedule import Schedule
from jobd.settings import ConfigError, Settings, from_json, load, render_markdown, to_json
from jobd.supervisor.scheduler import CLEANUP_ROUTINE, CLEANUP_SCHEDULE, configured_schedules


def load_text(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "jobd.toml"
    path.write_text(text)
    return load(path, environ or {})


def config_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text, environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_schedules_are_parsed_in_file_order(tmp_path: Path) -> None:
    settings = load_text(
        tmp_path,
        """
        [[schedules]]
        routine = "app.jobs:report"
        cron = "30 2 * * 1-5"
        timezone = "Europe/Berlin"
        args = [1, "two"]
        kwargs = { format = "pdf", pages = [1, 2] }
        queue = "reports"
        priority = 5
        catch_up = "1h"

        [[schedules]]
        name = "poll"
        routine = "app.jobs:report"
        every = "10m"
        enabled = false
        """,
    )
    report, poll = settings.schedules
    assert report == Schedule(
        name="app.jobs:report",
        routine="app.jobs:report",
        cron="30 2 * * 1-5",
        timezone="Europe/Berlin",
        args=(1, "two"),
        kwargs={"format": "pdf", "pages": [1, 2]},
        queue="reports",
        priority=5,
        catch_up=3600.0,
    )
    assert (poll.name, poll.every, poll.cron, poll.enabled, poll.timezone) == (
        "poll",
        600,
        None,
        False,
        "UTC",
    )
    assert from_json(json.loads(json.dumps(to_json(settings)))) == settings


@pytest.mark.parametrize(
    ("table", "fragments"),
    [
        ('routine = "a.b:c"', ["schedules[0]", "either cron or every"]),
        ('routine = "a.b:c"\ncron = "* * * * *"\nevery = "1m"', ["either cron or every"]),
        ('cron = "* * * * *"', ["schedules[0]", "routine is missing"]),
        ('routine = "a.b:c"\ncron = "61 * * * *"', ["schedules[0].cron", "'61 * * * *'"]),
        ('routine = "a.b:c"\ncron = "0 0 30 2 *"', ["schedules[0].cron", "never fires"]),
        ('routine = "a.b:c"\nevery = "1.5s"', ["schedules[0].every", "'1.5s'", "whole"]),
        ('routine = "a.b:c"\nevery = "soon"', ["schedules[0].every", "'soon'"]),
        ('routine = "a.b:c"\nevery = "1m"\ntimezone = "Mars/Olympus"', ["timezone", "Mars"]),
        ('routine = "a.b:c"\nevery = "1m"\ntimezone = "../etc"', ["timezone", "'../etc'"]),
        ('routine = "a.b:c"\nevery = "1m"\ncatch_up = "8d"', ["schedules[0].catch_up", "'8d'"]),
        ('routine = "a.b:c"\nevery = "1m"\nqueue = "bad queue"', ["schedules[0].queue"]),
        ('routine = "a.b:c"\nevery = "1m"\nenabled = "yes"', ["schedules[0].enabled", "'yes'"]),
        ('routine = "a.b:c"\nevery = "1m"\nargs = {a = 1}', ["schedules[0].args"]),
        ('routine = "a.b:c"\nevery = "1m"\nargs = [1979-05-27]', ["schedules[0].args", "JSON"]),
        ('routine = "a.b:c"\nevery = "1m"\nnmae = "x"', ["schedules[0]", "unknown key 'nmae'"]),
        ('routine = "nope"\nevery = "1m"', ["schedules[0].routine", "'nope'"]),
        ('name = "jobd.cleanup"\nroutine = "a.b:c"\nevery = "1m"', ["reserved"]),
    ],
)
def test_a_bad_schedule_is_one_line_naming_the_key(
    tmp_path: Path, table: str, fragments: list[str]
) -> None:
    message = config_error(tmp_path, f"[[schedules]]\n{table}\n")
    assert message.startswith(str(tmp_path / "jobd.toml"))
    for fragment in fragments:
        assert fragment in message


def test_two_schedules_need_two_names(tmp_path: Path) -> None:
    text = '[[schedules]]\nroutine = "a.b:c"\nevery = "1m"\n' * 2
    assert "schedules[1].name: 'a.b:c' is used by another schedule" in config_error(tmp_path, text)


def test_schedules_must_be_an_array_of_tables(tmp_path: Path) -> None:
    assert "[[schedules]]" in config_error(tmp_path, '[schedules]\nroutine = "a.b:c"\n')


def test_retention_and_health_sections(tmp_path: Path) -> None:
    defaults = load(None, {})
    assert (defaults.retention.completed_after, defaults.retention.failed_after) == (
        7 * 86400.0,
        30 * 86400.0,
    )
    assert defaults.retention.schedule == "0 3 * * *"
    settings = load_text(
        tmp_path,
        """
        [retention]
        completed_after = "2d"
        schedule = "15 4 * * *"
        [health]
        ready_max_age = "1m"
        failure_rate = 0.5
        """,
        {"JOBD_RETENTION_FAILED_AFTER": "10d", "JOBD_HEALTH_FAILURE_MIN_ATTEMPTS": "5"},
    )
    assert settings.retention.completed_after == 2 * 86400.0
    assert settings.retention.failed_after == 10 * 86400.0
    assert settings.health.ready_max_age == 60.0
    assert settings.health.failure_rate == 0.5
    assert settings.health.failure_min_attempts == 5


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('[retention]\nschedule = "daily"', ["retention.schedule", "'daily'"]),
        ('[retention]\nfailed_after = "-1d"', ["retention.failed_after", "'-1d'"]),
        ("[health]\nfailure_rate = 1.5", ["health.failure_rate", "1.5"]),
        ('[health]\nnode_stale_after = "1s"', ["node_stale_after", "heartbeat_interval"]),
    ],
)
def test_bad_retention_or_health(tmp_path: Path, text: str, fragments: list[str]) -> None:
    message = config_error(tmp_path, text)
    for fragment in fragments:
        assert fragment in message


def test_the_cleanup_schedule_follows_retention(tmp_path: Path) -> None:
    (cleanup,) = configured_schedules(load(None, {}))
    assert (cleanup.name, cleanup.routine, cleanup.cron) == (
        CLEANUP_SCHEDULE,
        CLEANUP_ROUTINE,
        "0 3 * * *",
    )
    assert cleanup.kwargs == {}  # the routine reads [retention] itself
    off = load_text(tmp_path, '[retention]\nschedule = "off"\n')
    assert configured_schedules(off) == ()


def test_the_reference_documents_the_schedules_table() -> None:
    text = render_markdown()
    assert "## [[schedules]]" in text
    for key in ("routine", "cron", "every", "timezone", "catch_up", "enabled"):
        assert f"| `{key}` |" in text
    assert "`JOBD_RETENTION_COMPLETED_AFTER`" in text
    assert "`JOBD_HEALTH_READY_MAX_AGE`" in text
