"""The scheduler service (jobd/supervisor/scheduler.py) on real stores, SQLite and PostgreSQL.

Time is passed in: each "master" is a Scheduler with its own store
connection, ticking at instants the test chooses, so hours of schedule run
in a second while the database does the real concurrency.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from jobd.schedule import Schedule, fires_after
from jobd.settings import RetentionSection, Settings
from jobd.store import open_store
from jobd.store.engine import normalize_url
from jobd.store.sql import SQLStore
from jobd.supervisor.scheduler import RETRY_FIRST, Scheduler

T0 = 1_800_000_000.0  # a multiple of 60
NO_CLEANUP = RetentionSection(schedule="off")


def settings_with(*schedules: Schedule, retention: RetentionSection = NO_CLEANUP) -> Settings:
    return Settings(schedules=schedules, retention=retention)


def every(seconds: int, name: str = "tick", catch_up: float = 600.0, **more: Any) -> Schedule:
    return Schedule(name, "app.jobs:tick", every=seconds, catch_up=catch_up, **more)


def fires_in(schedule: Schedule, after: float, until: float) -> list[float]:
    return list(itertools.takewhile(lambda f: f <= until, fires_after(schedule, after)))


def stored_fires(store: SQLStore) -> list[tuple[str, float, int, int | None]]:
    engine = create_engine(normalize_url(store.url))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT schedule, fire_at, job_id, node_id FROM schedule_fires"))
        found = sorted((str(r[0]), float(r[1]), int(r[2]), r[3]) for r in rows)
    engine.dispose()
    return found


# -- exactly once --------------------------------------------------------------------


def test_three_masters_enqueue_each_fire_once(db_url: str, store: SQLStore) -> None:
    schedules = (
        every(1, "each-second"),
        Schedule("berlin", "app.jobs:report", cron="*/7 * * * * *", timezone="Europe/Berlin"),
    )
    end = T0 + 90
    errors: list[BaseException] = []
    offered, inserted = [0], [0]
    lock = threading.Lock()
    step = threading.Barrier(3)

    def master(number: int) -> None:
        try:
            mine = Racing(open_store(db_url, timeout=10), offered, inserted, lock)
            scheduler = Scheduler(mine, settings_with(*schedules), node_id=number)  # type: ignore[arg-type]
            rand = random.Random(number)
            for tenth in range(0, 901, 3):
                step.wait(30)  # the masters' clocks move together, a little apart
                scheduler.tick(T0 + tenth / 10 + rand.random() / 5)
                assert scheduler.failures == 0
            scheduler.tick(end + 1)
            mine.inner.close()
        except BaseException as exc:
            errors.append(exc)
            step.abort()

    threads = [threading.Thread(target=master, args=(n,)) for n in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    expected = sorted((s.name, at) for s in schedules for at in fires_in(s, T0, end + 1))
    found = stored_fires(store)
    assert [(name, at) for name, at, _, _ in found] == expected  # 91 + 13 fires
    assert inserted[0] == len(expected) < offered[0]  # they raced; each fire went in once
    jobs = {job.id: job for job in store.list_jobs(limit=1000)}
    assert sorted(jobs) == sorted(job_id for _, _, job_id, _ in found)  # one job per fire
    assert sorted(job.run_at for job in jobs.values()) == sorted(at for _, at in expected)
    states = {s.name: s for s in store.schedule_states()}
    assert states["each-second"].last_fire_at == end + 1
    assert states["each-second"].fired_until >= end + 1


class Racing:
    """The real store, counting the fires offered to it and the fires it inserted."""

    def __init__(self, inner: SQLStore, offered: list[int], inserted: list[int], lock: Any) -> None:
        self.inner, self.offered, self.inserted, self.lock = inner, offered, inserted, lock

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def fire_schedules(self, node_id: int | None, fires: list[Any], *rest: Any) -> Any:
        done = self.inner.fire_schedules(node_id, fires, *rest)
        with self.lock:
            self.offered[0] += len(fires)
            self.inserted[0] += len(done)
        return done


# -- missed fires ----------------------------------------------------------------------


def test_missed_fires_are_caught_up_within_the_window_and_older_ones_skipped(
    store: SQLStore, caplog: pytest.LogCaptureFixture
) -> None:
    schedule = every(60, catch_up=300)
    first = Scheduler(store, settings_with(schedule))
    assert first.tick(T0 + 30) == T0 + 60
    # That master stops; another starts 1000 s later.
    caplog.set_level(logging.INFO, "jobd.scheduler")
    later = Scheduler(store, settings_with(schedule))
    assert later.tick(T0 + 1000) == T0 + 1020
    assert [job.run_at - T0 for job in reversed(store.list_jobs())] == [720, 780, 840, 900, 960]
    (skipped,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert "11 fires" in skipped and "tick" in skipped
    assert later.tick(T0 + 1000) == T0 + 1020  # caught up once, not again
    assert len(store.list_jobs()) == 5


def test_a_new_schedule_does_not_catch_up_its_past(store: SQLStore) -> None:
    scheduler = Scheduler(store, settings_with(every(60)))
    scheduler.tick(T0 + 59)
    assert store.list_jobs() == []
    scheduler.tick(T0 + 60)
    (job,) = store.list_jobs()
    assert job.run_at == T0 + 60
    assert [(f.schedule, f.job_id) for f in scheduler.fired] == [("tick", job.id)]
    scheduler.tick(T0 + 61)
    assert scheduler.fired == []  # the master claims at once only after a fire


# -- cost, errors, reloads ------------------------------------------------------------


class Counting:
    """The real store, counting the calls the scheduler makes."""

    def __init__(self, inner: SQLStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self.inner, name)


def test_tick_touches_the_store_only_when_something_is_due(store: SQLStore) -> None:
    counting = Counting(store)
    scheduler = Scheduler(counting, settings_with(every(60)))  # type: ignore[arg-type]
    assert scheduler.tick(T0) == T0 + 60
    assert counting.calls[0] == "sync_schedules"
    counting.calls.clear()
    for step in range(1, 600):
        assert scheduler.tick(T0 + step / 10) == T0 + 60
    assert counting.calls == []
    scheduler.tick(T0 + 60)
    assert counting.calls == ["schedule_states", "routine_policies", "fire_schedules"]


def test_a_store_error_never_escapes_tick(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'jobd.db'}"
    setup = open_store(url)
    setup.upgrade()
    setup.close()
    quick = open_store(url, timeout=0.2)
    scheduler = Scheduler(quick, settings_with(every(60)))
    assert scheduler.tick(T0) == T0 + 60
    caplog.set_level(logging.WARNING, "jobd.scheduler")
    locker = create_engine(normalize_url(url)).connect()
    locker.exec_driver_sql("BEGIN IMMEDIATE")  # another writer holds the lock
    assert scheduler.tick(T0 + 60) == T0 + 60 + RETRY_FIRST
    assert scheduler.tick(T0 + 60.5) == T0 + 60 + RETRY_FIRST  # no retry before the backoff
    assert scheduler.tick(T0 + 61) == T0 + 61 + 2 * RETRY_FIRST
    assert "store unavailable" in caplog.text
    locker.rollback()
    locker.close()
    assert scheduler.tick(T0 + 63) == T0 + 120
    assert [job.run_at for job in quick.list_jobs()] == [T0 + 60]  # late, not lost
    quick.close()


def test_an_unreachable_database_is_retried_not_raised() -> None:
    unreachable = open_store("postgresql://postgres@127.0.0.1:1/nothing", timeout=0.5)
    scheduler = Scheduler(unreachable, settings_with(every(60)))
    assert scheduler.tick(T0) == T0 + RETRY_FIRST
    assert scheduler.failures == 1


def test_reload_stores_the_new_schedules(store: SQLStore) -> None:
    scheduler = Scheduler(store, settings_with(every(60), every(600, "slow")))
    scheduler.tick(T0)
    scheduler.tick(T0 + 61)
    assert [job.run_at for job in store.list_jobs()] == [T0 + 60]
    scheduler.reload(settings_with(every(30), every(3600, "new", enabled=False)))
    assert scheduler.tick(T0 + 70) == T0 + 90
    states = {s.name: s for s in store.schedule_states()}
    assert sorted(states) == ["new", "tick"]  # "slow" is gone
    assert states["tick"].definition["every"] == 30
    assert states["tick"].fired_until == T0 + 70  # changed: starts afresh from the reload
    assert states["new"].next_fire_at is None and states["new"].definition["enabled"] is False
    scheduler.tick(T0 + 90)
    assert [job.run_at for job in store.list_jobs()] == [T0 + 90, T0 + 60]
    scheduler.reload(settings_with(every(3600, "new", enabled=False)))
    assert scheduler.tick(T0 + 100) is None  # nothing enabled: no timer needed


def test_jobs_take_the_schedule_then_the_routines_policy(store: SQLStore) -> None:
    store.register_routines(
        {"app.jobs:tick": {"queue": "ticks", "priority": 3, "max_attempts": 7}}, T0
    )
    scheduler = Scheduler(
        store,
        settings_with(
            every(60, "plain", args=(1, "a"), kwargs={"k": [2]}),
            every(60, "custom", queue="urgent", priority=9),
        ),
    )
    scheduler.tick(T0)
    scheduler.tick(T0 + 60)
    jobs = {job.queue: job for job in store.list_jobs()}
    assert (jobs["ticks"].priority, jobs["ticks"].max_attempts) == (3, 7)
    assert (jobs["ticks"].args, jobs["ticks"].kwargs) == ([1, "a"], {"k": [2]})
    assert (jobs["urgent"].priority, jobs["urgent"].max_attempts) == (9, 7)


def test_the_cleanup_schedule_is_stored_by_default(store: SQLStore) -> None:
    scheduler = Scheduler(store, Settings())
    due = scheduler.tick(T0)
    (cleanup,) = store.schedule_states()
    assert cleanup.name == "jobd.cleanup" and due == cleanup.next_fire_at
    assert cleanup.definition["routine"] == "jobd.maintenance:cleanup"
