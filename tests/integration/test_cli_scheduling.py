"""`jobd schedules`, `jobd health` and `jobd cleanup`, as real subprocesses on SQLite."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobd import exitcodes
from jobd.records import JobState, Settle
from jobd.settings import load
from jobd.store import open_store
from jobd.store.sql import SQLStore
from jobd.supervisor.scheduler import Scheduler
from tests.integration.jobs import attempt_for, new_job
from tests.integration.test_cli import Jobd, assert_fails, write_config

DAY = 86400.0
SCHEDULES = """
[retention]
schedule = "off"

[[schedules]]
name = "report"
routine = "jobd.examples:hello"
cron = "30 2 * * *"
timezone = "America/New_York"
args = ["you"]
catch_up = "2d"

[[schedules]]
routine = "jobd.examples:add"
every = "1h"
enabled = false
"""
SCHEDULE_KEYS = {
    "name", "routine", "cron", "every", "timezone", "enabled", "args", "kwargs", "queue",
    "priority", "catch_up", "next_fire_at", "next_fire_local", "last_fire_at", "last_fire_local",
    "last_job_id", "last_outcome", "fired_until", "defined_at",
}  # fmt: skip


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "jobd.db"
    store = open_store(f"sqlite:///{path}")
    store.upgrade()
    store.close()
    return path


@pytest.fixture
def cli(tmp_path: Path, template: Path) -> Jobd:
    shutil.copyfile(template, tmp_path / "jobd.db")
    config = write_config(tmp_path / "jobd.toml", "sqlite:///jobd.db", SCHEDULES)
    return Jobd(tmp_path, config, tmp_path / "jobd.db")


@pytest.fixture
def store(cli: Jobd) -> Iterator[SQLStore]:
    s = open_store(f"sqlite:///{cli.database}")
    yield s
    s.close()


def finished(store: SQLStore, state: JobState, age_days: float, n: int = 1) -> None:
    now = time.time()
    node = store.register_node("old", "elsewhere", 1, now)
    store.enqueue([new_job(run_at=now) for _ in range(n)])
    settles = []
    for c in store.exchange(node, [], ("default",), n, now):
        attempt = dataclasses.replace(
            attempt_for(c, node, state.value), finished_at=now - age_days * DAY
        )
        settles.append(Settle(c.id, state, attempt))
    store.exchange(node, settles, ("default",), 0, now)
    store.stop_node(node, now)


# -- jobd schedules --------------------------------------------------------------------


def test_schedules_before_any_master_ran(cli: Jobd) -> None:
    assert "no schedules stored" in cli.ok("schedules").stdout
    assert cli.ok("schedules", "--json").json() == []


def test_schedules_show_next_fire_and_last_outcome(cli: Jobd, store: SQLStore) -> None:
    settings = load(cli.config, {})
    scheduler = Scheduler(store, settings)
    now = time.time()
    scheduler.tick(now - DAY)  # stored a day ago: an 02:30 has passed since (two, around DST)
    scheduler.tick(now)
    job, *_ = store.list_jobs()
    assert (job.routine, job.args) == ("jobd.examples:hello", ["you"])

    table = cli.ok("schedules").stdout
    header, *rows = table.splitlines()
    assert header.split() == [
        "NAME", "ROUTINE", "WHEN", "TIMEZONE", "NEXT", "FIRE", "NEXT", "(UTC)", "LAST", "FIRE",
        "OUTCOME",
    ]  # fmt: skip
    report = next(row for row in rows if row.startswith("report"))
    assert "30 2 * * *" in report and "America/New_York" in report and "queued" in report
    assert " ED" in report or " ES" in report  # local time with its zone (EDT or EST)
    assert "disabled" in next(row for row in rows if row.startswith("jobd.examples:add"))

    listed = {s["name"]: s for s in cli.ok("schedules", "--json").json()}
    assert set(listed) == {"report", "jobd.examples:add"}
    assert set(listed["report"]) == SCHEDULE_KEYS
    report_json = listed["report"]
    assert (report_json["last_job_id"], report_json["last_outcome"]) == (job.id, "queued")
    assert report_json["next_fire_local"].endswith(("T02:30:00-04:00", "T02:30:00-05:00"))
    assert listed["jobd.examples:add"]["every"] == 3600
    store.cancel(job.id, now)
    assert cli.ok("schedules", "--json").json()[1]["last_outcome"] == "cancelled"
    store.delete_finished("cancelled", now + 1, 10)
    assert cli.ok("schedules", "--json").json()[1]["last_outcome"] == "deleted"


# -- jobd health -----------------------------------------------------------------------


def test_health_without_a_master_is_exit_1(cli: Jobd) -> None:
    result = cli("health")
    assert result.code == exitcodes.FAILURE, result
    assert result.stdout.startswith("UNHEALTHY: 1 of 5 checks failed")
    assert "no master is running" in result.stdout
    report = cli("health", "--json").json()
    assert report["healthy"] is False
    assert [(c["name"], c["ok"]) for c in report["checks"]] == [
        ("master", False),
        ("nodes", True),
        ("ready_jobs", True),
        ("running_jobs", True),
        ("failure_rate", True),
    ]


def test_health_with_a_live_master_is_exit_0(cli: Jobd, store: SQLStore) -> None:
    store.register_node("live", "here", 1, time.time())
    result = cli.ok("health")
    assert result.stdout.startswith("healthy")
    assert cli.ok("health", "--json").json()["healthy"] is True


def test_health_flags_waiting_jobs_dead_runners_and_failures(cli: Jobd, store: SQLStore) -> None:
    now = time.time()
    store.register_node("live", "here", 1, now)
    finished(store, JobState.FAILED, 0.0, 3)  # 3 of 3 attempts failed
    store.enqueue([new_job(run_at=now - 600)])  # ready for 10 minutes
    dead = store.register_node("dead", "there", 2, now - 3600)
    store.enqueue([new_job(queue="other", run_at=now)])
    (held,) = store.exchange(dead, [], ("other",), 1, now)
    env = {"JOBD_HEALTH_FAILURE_MIN_ATTEMPTS": "3"}
    result = cli("health", "--json", env=env)
    assert result.code == exitcodes.FAILURE
    verdicts = {c["name"]: c for c in result.json()["checks"]}
    assert verdicts["master"]["ok"] is True
    assert verdicts["nodes"]["ok"] is False  # "dead" has not heartbeated for an hour
    assert verdicts["nodes"]["stale"][0]["id"] == dead
    assert verdicts["ready_jobs"]["ok"] is False
    assert verdicts["running_jobs"]["ok"] is False
    assert verdicts["running_jobs"]["jobs"] == [{"id": held.id, "node_id": dead}]
    assert (verdicts["failure_rate"]["ok"], verdicts["failure_rate"]["failures"]) == (False, 3)
    relaxed = {**env, "JOBD_HEALTH_READY_MAX_AGE": "1h", "JOBD_HEALTH_FAILURE_RATE": "1"}
    verdicts = {c["name"]: c["ok"] for c in cli("health", "--json", env=relaxed).json()["checks"]}
    assert verdicts == {
        "master": True,
        "nodes": False,
        "ready_jobs": True,
        "running_jobs": False,
        "failure_rate": True,
    }


# -- jobd cleanup ----------------------------------------------------------------------


def test_cleanup_prints_the_counts(cli: Jobd, store: SQLStore) -> None:
    finished(store, JobState.SUCCEEDED, 8, 4)
    finished(store, JobState.SUCCEEDED, 2, 1)
    finished(store, JobState.FAILED, 8, 2)
    result = cli.ok("cleanup")
    assert result.stdout.strip() == (
        "deleted 4 jobs (4 succeeded, 0 cancelled, 0 failed), 4 attempts, 0 schedule fires"
    )
    counts = cli.ok("cleanup", "--json", "--completed-days", "1", "--failed-days", "7.5").json()
    assert counts == {
        "succeeded": 1,
        "cancelled": 0,
        "failed": 2,
        "attempts": 3,
        "schedule_fires": 0,
    }
    assert cli.count_jobs() == 0


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["cleanup", "--completed-days", "-1"], "--completed-days must be a number of days >= 0"),
        (["cleanup", "--failed-days", "nan"], "--failed-days must be a number of days >= 0"),
        (["cleanup", "--failed-days", "soon"], "invalid float value"),
    ],
)
def test_cleanup_refuses_bad_days(
    cli: Jobd, store: SQLStore, argv: list[str], fragment: str
) -> None:
    finished(store, JobState.SUCCEEDED, 8)
    assert_fails(cli(*argv), exitcodes.USAGE, fragment)
    assert cli.count_jobs() == 1
