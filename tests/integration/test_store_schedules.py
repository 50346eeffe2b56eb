"""The store contract for schedules, retention and health (jobd/store/contract.py),
on SQLite and on PostgreSQL, like test_store_contract.py, and in memory.

Every test but two runs on the in-memory store too (`also_in_memory`): the
upgrade from revision 0001 (a SQL schema) and the race of masters on the same
fires (several connections at once: the unique key under SQL's locks).
"""

from __future__ import annotations

import dataclasses
import threading

import pytest
from sqlalchemy import create_engine, text

from jobd.records import Fire, JobState, NewJob, ScheduleProgress, Settle
from jobd.store import open_store
from jobd.store.contract import Store
from jobd.store.engine import normalize_url
from jobd.store.memory import MemoryStore
from jobd.store.schema import SCHEMA_REVISION
from jobd.store.sql import SQLStore
from tests.integration.jobs import NOW, also_in_memory, attempt_for, claim, new_job

DAY = 86400.0


def fire(schedule: str, at: float, routine: str = "app.jobs:tick", **job: object) -> Fire:
    made = NewJob(routine, "default", 0, "[]", "{}", at, NOW, 3)
    return Fire(schedule, at, dataclasses.replace(made, **job))  # type: ignore[arg-type]


def set_heartbeat(store: Store, node_id: int, at: float) -> None:
    if isinstance(store, MemoryStore):
        store.set_heartbeat(node_id, at)
        return
    assert isinstance(store, SQLStore)
    engine = create_engine(normalize_url(store.url))
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE nodes SET heartbeat_at = :at WHERE id = :id"), {"at": at, "id": node_id}
        )
    engine.dispose()


def count(store: Store, table: str) -> int:
    if isinstance(store, MemoryStore):
        return store.count_rows(table)
    assert isinstance(store, SQLStore)
    engine = create_engine(normalize_url(store.url))
    with engine.connect() as conn:
        found = int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)
    engine.dispose()
    return found


# -- the migration ------------------------------------------------------------------


def test_upgrading_from_0001_keeps_the_jobs(db_url: str) -> None:
    from alembic import command

    from jobd.store.migrate import alembic_config

    store = open_store(db_url, timeout=5, create=True)
    engine = create_engine(normalize_url(store.url))
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "0001")  # type: ignore[arg-type]
        conn.commit()
    engine.dispose()
    job_id = store.enqueue([new_job(args="[42]")])[0].job.id
    assert store.upgrade() == ("0001", SCHEMA_REVISION)
    store.check_schema()
    assert store.get_job(job_id).args == [42]
    assert store.schedule_states() == []
    store.close()


# -- schedules ------------------------------------------------------------------------


@also_in_memory
def test_sync_inserts_keeps_replaces_and_deletes(store: Store) -> None:
    a, b = {"routine": "app.jobs:a", "every": 60}, {"routine": "app.jobs:b", "every": 600}
    store.sync_schedules({"a": a, "b": b}, {"a": NOW + 60, "b": NOW + 600}, NOW)
    states = {s.name: s for s in store.schedule_states()}
    assert states["a"].definition == a
    assert (states["a"].defined_at, states["a"].fired_until, states["a"].next_fire_at) == (
        NOW,
        NOW,
        NOW + 60,
    )
    store.fire_schedules(None, [], [ScheduleProgress("a", NOW + 100, NOW + 120)], NOW + 100)
    changed = {**b, "every": 300}
    store.sync_schedules({"a": a, "b2": changed}, {"a": NOW + 999, "b2": NOW + 300}, NOW + 200)
    states = {s.name: s for s in store.schedule_states()}
    assert sorted(states) == ["a", "b2"]  # b is gone
    unchanged = states["a"]  # keeps its cursor, its history and its next fire
    assert (unchanged.defined_at, unchanged.fired_until, unchanged.next_fire_at) == (
        NOW,
        NOW + 100,
        NOW + 120,
    )
    store.sync_schedules({"a": {**a, "every": 30}}, {"a": NOW + 210}, NOW + 200)
    (replaced,) = store.schedule_states()  # a new definition starts afresh
    assert (replaced.defined_at, replaced.fired_until, replaced.next_fire_at) == (
        NOW + 200,
        NOW + 200,
        NOW + 210,
    )
    store.sync_schedules({}, {}, NOW + 300)
    assert store.schedule_states() == []


@also_in_memory
def test_a_fire_and_its_job_are_inserted_once(store: Store) -> None:
    store.sync_schedules({"tick": {"routine": "app.jobs:tick", "every": 60}}, {}, NOW)
    fires = [fire("tick", NOW + 60), fire("tick", NOW + 120)]
    progress = [ScheduleProgress("tick", NOW + 130, NOW + 180)]
    first = store.fire_schedules(7, fires, progress, NOW + 130)
    assert [(f.schedule, f.fire_at) for f in first] == [("tick", NOW + 60), ("tick", NOW + 120)]
    jobs = {job.id: job for job in store.list_jobs()}
    assert sorted(jobs) == sorted(f.job_id for f in first)
    assert sorted(job.run_at for job in jobs.values()) == [NOW + 60, NOW + 120]
    # Another master with the same fires, one more, and a cursor behind ours.
    again = store.fire_schedules(
        8,
        [*fires, fire("tick", NOW + 180)],
        [ScheduleProgress("tick", NOW + 125, NOW + 180)],
        NOW + 181,
    )
    assert [f.fire_at for f in again] == [NOW + 180]
    assert len(store.list_jobs()) == 3 and count(store, "schedule_fires") == 3
    (state,) = store.schedule_states()
    assert state.fired_until == NOW + 130  # never moved back
    assert (state.last_fire_at, state.last_job_id, state.last_job_state) == (
        NOW + 180,
        again[0].job_id,
        "queued",
    )


@also_in_memory
def test_the_last_outcome_is_the_last_fires_job_state(store: Store, node: int) -> None:
    store.sync_schedules({"tick": {"routine": "app.jobs:tick", "every": 60}}, {}, NOW)
    (fired,) = store.fire_schedules(None, [fire("tick", NOW - 60)], [], NOW)
    (c,) = claim(store, node)
    assert c.id == fired.job_id
    assert store.schedule_states()[0].last_job_state == "running"
    claim(store, node, limit=0, settles=[Settle(c.id, JobState.FAILED, attempt_for(c, node, "x"))])
    assert store.schedule_states()[0].last_job_state == "failed"


@also_in_memory
def test_a_unique_routines_fire_reuses_its_live_job(store: Store) -> None:
    live = store.enqueue([new_job(routine="app.jobs:tick", unique_key="u")])[0].job.id
    (fired,) = store.fire_schedules(None, [fire("tick", NOW, unique_key="u")], [], NOW)
    assert fired.job_id == live and len(store.list_jobs()) == 1


@also_in_memory
def test_fires_of_a_schedule_that_is_not_stored_still_count(store: Store) -> None:
    (fired,) = store.fire_schedules(None, [fire("elsewhere", NOW)], [], NOW)
    assert store.get_job(fired.job_id).routine == "app.jobs:tick"
    assert store.fire_schedules(None, [fire("elsewhere", NOW)], [], NOW) == []


def test_masters_racing_on_the_same_fires_insert_each_once(db_url: str, store: SQLStore) -> None:
    store.sync_schedules({"tick": {"routine": "app.jobs:tick", "every": 1}}, {}, NOW)
    fires = [fire("tick", NOW + i) for i in range(1, 61)]
    inserted: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(3)

    def master(number: int) -> None:
        mine = open_store(db_url, timeout=10)
        start.wait()
        for i in range(0, 60, 5):  # each pass a few fires, overlapping the others'
            done = mine.fire_schedules(number, fires[i : i + 5], [], NOW + i)
            with lock:
                inserted.extend(f.fire_at for f in done)
        mine.close()

    threads = [threading.Thread(target=master, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(inserted) == [f.fire_at for f in fires]
    assert sorted(job.run_at for job in store.list_jobs(limit=1000)) == [f.fire_at for f in fires]


# -- retention ----------------------------------------------------------------------


def finish(store: Store, node: int, state: JobState, finished_at: float, n: int = 1) -> None:
    """`n` jobs that ended in `state` at `finished_at`, each with one attempt."""
    store.enqueue([new_job() for _ in range(n)])
    settles = []
    for c in claim(store, node, limit=n):
        attempt = dataclasses.replace(attempt_for(c, node, state.value), finished_at=finished_at)
        settles.append(Settle(c.id, state, attempt))
    claim(store, node, limit=0, settles=settles)


@also_in_memory
def test_delete_finished_in_batches_with_their_attempts(store: Store, node: int) -> None:
    finish(store, node, JobState.SUCCEEDED, NOW - 8 * DAY, 7)
    finish(store, node, JobState.SUCCEEDED, NOW - 6 * DAY, 2)
    finish(store, node, JobState.FAILED, NOW - 8 * DAY, 2)
    store.enqueue([new_job(run_at=NOW - 30 * DAY)])  # queued: never deleted
    before = NOW - 7 * DAY
    assert store.delete_finished("succeeded", before, 3) == (3, 3)
    assert store.delete_finished("succeeded", before, 3) == (3, 3)
    assert store.delete_finished("succeeded", before, 3) == (1, 1)  # fewer: none left
    assert store.delete_finished("succeeded", before, 3) == (0, 0)
    states = sorted(job.state for job in store.list_jobs())
    assert states == ["failed", "failed", "queued", "succeeded", "succeeded"]
    assert count(store, "attempts") == 4
    with pytest.raises(ValueError, match="finished"):
        store.delete_finished("queued", before, 3)


@also_in_memory
def test_delete_fires_oldest_first(store: Store) -> None:
    store.fire_schedules(None, [fire("t", NOW - i * DAY) for i in range(5)], [], NOW)
    assert store.delete_fires(NOW - 1.5 * DAY, 2) == 2
    assert store.delete_fires(NOW - 1.5 * DAY, 2) == 1
    assert count(store, "schedule_fires") == 2


# -- health -----------------------------------------------------------------------------


@also_in_memory
def test_health_facts(store: Store, node: int) -> None:
    stale = store.register_node("stale", "host-b", 2, NOW - 100)
    stopped = store.register_node("stopped", "host-c", 3, NOW)
    store.enqueue(
        [
            new_job(queue="a", run_at=NOW - 50),
            new_job(queue="a", run_at=NOW - 10),
            new_job(queue="b", run_at=NOW + 10),  # not ready
            new_job(queue="c", run_at=NOW - 5),
        ]
    )
    (mine,) = claim(store, node, queues=("c",))
    (on_stale,) = claim(store, stale, queues=("a",), limit=1)
    store.enqueue([new_job(queue="d")])
    (on_stopped,) = claim(store, stopped, queues=("d",))
    store.stop_node(stopped, NOW)
    for outcome in ("succeeded", "error", "interrupted", "time_limit_exceeded"):
        finish_at = NOW - 10
        store.enqueue([new_job(queue="e")])
        (c,) = claim(store, node, queues=("e",))
        state = JobState.SUCCEEDED if outcome == "succeeded" else JobState.FAILED
        attempt = dataclasses.replace(attempt_for(c, node, outcome), finished_at=finish_at)
        claim(store, node, limit=0, settles=[Settle(c.id, state, attempt)])
    finish(store, node, JobState.FAILED, NOW - 1000)  # outside the window
    # PostgreSQL stamps heartbeats with its own clock: put them on this test's.
    set_heartbeat(store, node, NOW)
    set_heartbeat(store, stale, NOW - 100)

    facts = store.health_facts(NOW, stale_before=NOW - 30, window_start=NOW - 60)
    assert sorted(n.id for n in facts.nodes) == sorted([node, stale])
    assert facts.oldest_ready == {"a": NOW - 10}
    assert sorted(facts.orphaned) == sorted([(on_stale.id, stale), (on_stopped.id, stopped)])
    assert facts.orphaned_count == 2 and mine.id not in {job for job, _ in facts.orphaned}
    assert (facts.attempts, facts.failures) == (4, 2)
