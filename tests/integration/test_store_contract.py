"""The store contract (jobd/store/contract.py), on SQLite, on PostgreSQL and in memory.

Every test runs on both dialects through the `db_url` fixture: the same
behaviour is required of each. Those marked `also_in_memory` run on the
in-memory store too (jobd/store/memory.py, which the master-loop unit tests
use): enqueueing, claiming (order, limits, queues, weights), settling
(success, retry, failure with its follow-up, uncounted requeue, another
node's settle), unique keys, retry and cancel (and cancel requests), nodes,
heartbeats and rescue, the routine catalog, queue loads, and queue and
routine statistics.

The others are about SQL and stay on the two dialects: the schema and its
revision, claims from several connections at once, joining the caller's
transaction, locks and timeouts, connecting, and creating the SQLite file.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import create_engine, text

from jobd.records import Claim, ClaimRequest, JobState, QueueLoad, Settle
from jobd.store import open_store
from jobd.store.contract import InvalidTransition, JobNotFound, SchemaError, Store, StoreError
from jobd.store.engine import normalize_url
from jobd.store.memory import MemoryStore
from jobd.store.schema import SCHEMA_REVISION
from jobd.store.sql import SQLStore
from tests.integration.jobs import NOW, also_in_memory, attempt_for, claim, new_job

# -- schema ---------------------------------------------------------------------


def test_missing_schema_names_the_upgrade_command(db_url: str) -> None:
    store = open_store(db_url, timeout=5)
    with pytest.raises(SchemaError, match="jobd db upgrade"):
        store.check_schema()
    assert store.upgrade() == (None, SCHEMA_REVISION)
    store.check_schema()
    assert store.upgrade() == (SCHEMA_REVISION, SCHEMA_REVISION)
    store.close()


def test_older_schema_names_the_upgrade_command(store: SQLStore) -> None:
    engine = create_engine(normalize_url(store.url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    engine.dispose()
    with pytest.raises(SchemaError, match=r"older .*jobd db upgrade"):
        store.check_schema()


def test_migrated_schema_matches_the_declared_tables(store: SQLStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from jobd.store.schema import metadata

    engine = create_engine(normalize_url(store.url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


# -- enqueue and claim ----------------------------------------------------------


@also_in_memory
def test_enqueue_returns_jobs_in_order(store: Store) -> None:
    results = store.enqueue([new_job(args=f"[{i}]") for i in range(5)])
    ids = [r.job.id for r in results]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [store.get_job(i).args for i in ids] == [[0], [1], [2], [3], [4]]
    job = store.get_job(ids[0])
    assert (job.state, job.attempts, job.max_attempts, job.queue) == ("queued", 0, 3, "default")


@also_in_memory
def test_a_bulk_enqueue_stores_each_job_as_given(store: Store) -> None:
    # Every field of every row lands on its own job (PostgreSQL sends the
    # batch as one array per column), unique keys mixed in.
    given = [
        new_job(
            routine=f"app.jobs:r{i}",
            queue=f"q{i % 3}",
            priority=i - 2,
            args=f"[{i}]",
            run_at=NOW + i,
            max_attempts=i + 1,
            unique_key="u" if i == 2 else None,
        )
        for i in range(6)
    ]
    results = store.enqueue(given)
    assert [r.created for r in results] == [True] * 6
    for job, result in zip(given, results, strict=True):
        stored = store.get_job(result.job.id)
        assert (stored.routine, stored.queue, stored.priority, stored.args) == (
            job.routine, job.queue, job.priority, json.loads(job.args_json)
        )  # fmt: skip
        assert (stored.run_at, stored.max_attempts, stored.state) == (
            job.run_at, job.max_attempts, "queued"
        )  # fmt: skip
        assert result.job.id == stored.id and result.job.args == stored.args


@also_in_memory
def test_one_exchange_settles_and_records_a_mixed_batch(store: Store, node: int) -> None:
    # PostgreSQL settles and records a batch as one statement each (pgbatch.py):
    # every row's fields must land on its own job and attempt.
    store.enqueue([new_job(args=f"[{i}]") for i in range(4)])
    done, retried, failed, returned = claim(store, node)
    settles = [
        Settle(done.id, JobState.SUCCEEDED, attempt_for(done, node), result_json='{"r": 1}'),
        Settle(
            retried.id,
            JobState.QUEUED,
            attempt_for(retried, node, "error", error_type="E1", error_message="m1"),
            run_at=NOW + 60,
        ),
        Settle(
            failed.id,
            JobState.FAILED,
            attempt_for(
                failed, node, "error", error_type="E2", error_message="m2", cpu_seconds=0.5
            ),
        ),
        Settle(returned.id, JobState.QUEUED, None, uncount=True),
    ]
    claim(store, node, limit=0, settles=settles)
    jobs = {c.id: store.get_job(c.id) for c in (done, retried, failed, returned)}
    assert (jobs[done.id].state, jobs[done.id].result) == ("succeeded", {"r": 1})
    assert (jobs[retried.id].state, jobs[retried.id].run_at) == ("queued", NOW + 60)
    assert (jobs[retried.id].error_type, jobs[retried.id].error_message) == ("E1", "m1")
    assert (jobs[failed.id].state, jobs[failed.id].error_type) == ("failed", "E2")
    assert (jobs[returned.id].state, jobs[returned.id].attempts) == ("queued", 0)
    assert store.job_attempts(returned.id) == []
    (record,) = store.job_attempts(failed.id)
    assert (record.outcome, record.error_message, record.cpu_seconds) == ("error", "m2", 0.5)
    assert [a.outcome for a in store.job_attempts(done.id)] == ["succeeded"]


@also_in_memory
def test_claim_order_is_priority_then_run_at_then_id(store: Store, node: int) -> None:
    low = store.enqueue([new_job(priority=0, run_at=NOW - 5)])[0].job.id
    high_late = store.enqueue([new_job(priority=9, run_at=NOW - 1)])[0].job.id
    high_early = store.enqueue([new_job(priority=9, run_at=NOW - 3)])[0].job.id
    tie_a, tie_b = (
        r.job.id for r in store.enqueue([new_job(run_at=NOW - 5), new_job(run_at=NOW - 5)])
    )
    claims = claim(store, node, limit=10)
    assert [c.id for c in claims] == [high_early, high_late, low, tie_a, tie_b]


@also_in_memory
def test_claim_respects_limit_queue_and_run_at(store: Store, node: int) -> None:
    due = [r.job.id for r in store.enqueue([new_job() for _ in range(3)])]
    store.enqueue([new_job(queue="other"), new_job(run_at=NOW + 60)])
    first = claim(store, node, limit=2)
    assert [c.id for c in first] == due[:2]
    assert [c.id for c in claim(store, node, limit=5)] == due[2:]
    assert claim(store, node, limit=5) == []
    later = claim(store, node, limit=5, now=NOW + 61)
    assert len(later) == 1


@also_in_memory
def test_claim_counts_the_attempt_and_marks_running(store: Store, node: int) -> None:
    job_id = store.enqueue([new_job()])[0].job.id
    (c,) = claim(store, node)
    assert (c.id, c.attempt, c.max_attempts) == (job_id, 1, 3)
    job = store.get_job(job_id)
    assert (job.state, job.attempts, job.node_id, job.started_at) == ("running", 1, node, NOW)


@also_in_memory
def test_claim_merges_several_queues_in_order(store: Store, node: int) -> None:
    a = store.enqueue([new_job(queue="a", priority=1)])[0].job.id
    b = store.enqueue([new_job(queue="b", priority=5)])[0].job.id
    store.enqueue([new_job(queue="c", priority=9)])
    claims = claim(store, node, queues=("a", "b"), limit=10)
    assert [c.id for c in claims] == [b, a]


@also_in_memory
def test_weighted_claims_one_at_a_time_keep_the_shares(store: Store, node: int) -> None:
    # A pool whose workers free up one by one claims one job at a time: the
    # round robin's credit carries across claims, so weights 3 and 1 give the
    # second queue its quarter (issue 21 C2: it got 0 of the first 20).
    store.enqueue([new_job(queue=q) for q in ("heavy", "light") for _ in range(20)])
    request = ClaimRequest(("heavy", "light"), 1, (3.0, 1.0))
    picked = [store.exchange_many(node, [], [request], NOW)[0][0].queue for _ in range(20)]
    assert picked.count("light") == 5 and picked.count("heavy") == 15
    assert "light" in picked[:4]


def test_concurrent_claims_never_share_a_job(db_url: str, store: SQLStore, node: int) -> None:
    ids = {r.job.id for r in store.enqueue([new_job() for _ in range(200)])}
    claimed: list[int] = []
    lock = threading.Lock()

    def claimer() -> None:
        mine = open_store(db_url, timeout=10)
        while True:
            got = mine.exchange(node, [], ("default",), 3, NOW)
            if not got:
                break
            with lock:
                claimed.extend(c.id for c in got)
        mine.close()

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(claimed) == sorted(ids)


# -- settling -------------------------------------------------------------------


@also_in_memory
def test_success_stores_the_result_and_the_attempt(store: Store, node: int) -> None:
    store.enqueue([new_job()])
    (c,) = claim(store, node)
    attempt = attempt_for(c, node, cpu_seconds=0.25, peak_rss=1 << 20)
    claim(store, node, settles=[Settle(c.id, JobState.SUCCEEDED, attempt, result_json='{"n": 1}')])
    job = store.get_job(c.id)
    assert (job.state, job.result, job.finished_at, job.error) == (
        "succeeded",
        {"n": 1},
        NOW + 0.5,
        None,
    )
    (recorded,) = store.job_attempts(c.id)
    assert (recorded.outcome, recorded.worker_pid, recorded.cpu_seconds, recorded.peak_rss) == (
        "succeeded",
        4242,
        0.25,
        1 << 20,
    )


@also_in_memory
def test_retry_requeues_with_run_at_and_keeps_the_count(store: Store, node: int) -> None:
    store.enqueue([new_job()])
    (c,) = claim(store, node)
    attempt = attempt_for(
        c, node, "error", error_type="ValueError", error_message="bad", traceback="Traceback..."
    )
    claim(store, node, settles=[Settle(c.id, JobState.QUEUED, attempt, run_at=NOW + 30)])
    job = store.get_job(c.id)
    assert (job.state, job.attempts, job.run_at) == ("queued", 1, NOW + 30)
    assert job.error == {"type": "ValueError", "message": "bad"}
    assert claim(store, node, now=NOW + 29) == []
    (again,) = claim(store, node, now=NOW + 30)
    assert again.attempt == 2
    assert store.job_attempts(c.id)[0].traceback == "Traceback..."


@also_in_memory
def test_failed_for_good_and_follow_up_in_one_transaction(store: Store, node: int) -> None:
    store.enqueue([new_job(max_attempts=1)])
    (c,) = claim(store, node)
    follow = new_job(routine="jobd.failure:call_failed_hook", args="[1]")
    attempt = attempt_for(c, node, "killed", error_type="SIGKILL")
    claim(store, node, limit=0, settles=[Settle(c.id, JobState.FAILED, attempt, follow_up=follow)])
    assert store.get_job(c.id).state == "failed"
    hooks = store.list_jobs(routine="jobd.failure:call_failed_hook")
    assert len(hooks) == 1 and hooks[0].state == "queued"


@also_in_memory
def test_uncounted_requeue_gives_the_attempt_back(store: Store, node: int) -> None:
    store.enqueue([new_job()])
    (c,) = claim(store, node)
    claim(store, node, limit=0, settles=[Settle(c.id, JobState.QUEUED, None, uncount=True)])
    job = store.get_job(c.id)
    assert (job.state, job.attempts) == ("queued", 0)
    assert store.job_attempts(c.id) == []


@also_in_memory
def test_settle_only_moves_jobs_this_node_runs(store: Store, node: int) -> None:
    other = store.register_node("other", "host-b", 99, NOW)
    store.enqueue([new_job()])
    (c,) = claim(store, node)
    claim(store, other, limit=0, settles=[Settle(c.id, JobState.SUCCEEDED, attempt_for(c, other))])
    assert store.get_job(c.id).state == "running"


# -- uniqueness, retry, cancel --------------------------------------------------


@also_in_memory
def test_unique_key_returns_the_live_job(store: Store, node: int) -> None:
    first = store.enqueue([new_job(unique_key="k")])[0]
    second = store.enqueue([new_job(unique_key="k")])[0]
    assert first.created and not second.created and second.job.id == first.job.id
    (c,) = claim(store, node)
    assert store.enqueue([new_job(unique_key="k")])[0].job.id == c.id  # running is live too
    claim(store, node, limit=0, settles=[Settle(c.id, JobState.SUCCEEDED, attempt_for(c, node))])
    third = store.enqueue([new_job(unique_key="k")])[0]
    assert third.created and third.job.id != c.id


@also_in_memory
def test_retry_and_cancel_rules(store: Store, node: int) -> None:
    queued = store.enqueue([new_job()])[0].job.id
    with pytest.raises(InvalidTransition):
        store.retry(queued, NOW)
    assert store.cancel(queued, NOW).state == "cancelled"
    with pytest.raises(InvalidTransition):
        store.cancel(queued, NOW)
    again = store.retry(queued, NOW)
    assert (again.state, again.attempts) == ("queued", 0)
    (c,) = claim(store, node)
    running = store.cancel(c.id, NOW)
    assert running.state == "running" and running.cancel_requested
    assert store.cancel_requests(node) == [c.id]
    with pytest.raises(JobNotFound):
        store.get_job(10_000)
    with pytest.raises(JobNotFound):
        store.retry(10_000, NOW)


@also_in_memory
def test_a_cancel_request_outlasts_a_retry_and_ends_with_the_job(store: Store, node: int) -> None:
    store.enqueue([new_job()])
    (c,) = claim(store, node)
    store.cancel(c.id, NOW)
    retried = Settle(c.id, JobState.QUEUED, attempt_for(c, node, "error"), run_at=NOW)
    claim(store, node, limit=0, settles=[retried])
    (again,) = claim(store, node)
    assert store.cancel_requests(node) == [again.id]  # the next attempt is stopped too
    ended = Settle(again.id, JobState.CANCELLED, attempt_for(again, node, "cancelled"))
    claim(store, node, limit=0, settles=[ended])
    job = store.get_job(c.id)
    assert (job.state, job.cancel_requested) == ("cancelled", False)
    assert store.cancel_requests(node) == []


@also_in_memory
def test_retrying_a_cancelled_delayed_job_keeps_its_delay(store: Store, node: int) -> None:
    # It became ready at once, its delay dropped without a word (issue 21 C9).
    delayed = store.enqueue([new_job(run_at=NOW + 3600)])[0].job.id
    store.cancel(delayed, NOW)
    assert store.retry(delayed, NOW + 60).run_at == NOW + 3600
    assert claim(store, node) == []
    (c,) = store.exchange(node, [], ("default",), 10, NOW + 3600)
    assert c.id == delayed
    due = store.enqueue([new_job()])[0].job.id
    store.cancel(due, NOW)
    assert store.retry(due, NOW + 60).run_at == NOW + 60, "a past run_at becomes now"


@also_in_memory
def test_retry_refused_while_its_unique_key_is_live(store: Store, node: int) -> None:
    store.enqueue([new_job(unique_key="u", max_attempts=1)])
    (c,) = claim(store, node)
    claim(
        store, node, limit=0, settles=[Settle(c.id, JobState.FAILED, attempt_for(c, node, "error"))]
    )
    store.enqueue([new_job(unique_key="u")])
    with pytest.raises(InvalidTransition, match="unique key"):
        store.retry(c.id, NOW)


# -- nodes and the catalog ------------------------------------------------------


@also_in_memory
def test_nodes_heartbeat_and_stop(store: Store, node: int) -> None:
    pulse = store.heartbeat(node, NOW + 5, {"workers": [{"slot": 1}]})
    (info,) = store.nodes()
    assert (info.id, info.info) == (node, {"workers": [{"slot": 1}]})
    # PostgreSQL stamps heartbeats with the server's clock (hosts' clocks may differ).
    stamped = NOW + 5 if store.dialect != "postgresql" else pytest.approx(time.time(), abs=5)
    assert info.heartbeat_at == stamped
    assert pulse is not None and (pulse.at, pulse.was_stopped_at) == (stamped, None)
    store.stop_node(node, NOW + 6)
    assert store.nodes() == []
    assert store.nodes(include_stopped=True)[0].stopped_at == NOW + 6


@also_in_memory
def test_rescue_node_settles_what_the_dead_node_held(store: Store, node: int) -> None:
    store.enqueue([new_job(), new_job()])
    held = claim(store, node)
    rescuer = store.register_node("rescuer", "host-a", 4321, NOW)

    def decide(c: Claim) -> Settle:
        return Settle(c.id, JobState.QUEUED, attempt_for(c, node, "lost"), run_at=NOW)

    settles = store.rescue_node(node, NOW, decide)
    assert sorted(s.job_id for s in settles) == sorted(c.id for c in held)
    assert {store.get_job(c.id).state for c in held} == {"queued"}
    assert [n.id for n in store.nodes()] == [rescuer]
    assert store.job_attempts(held[0].id)[0].outcome == "lost"


@also_in_memory
def test_routine_catalog_upserts(store: Store) -> None:
    store.register_routines({"a:b": {"queue": "x"}}, NOW)
    store.register_routines({"a:b": {"queue": "y"}, "c:d": {"queue": "z"}}, NOW)
    assert store.routine_policies() == {"a:b": {"queue": "y"}, "c:d": {"queue": "z"}}


@also_in_memory
def test_queue_stats_and_count(store: SQLStore | MemoryStore, node: int) -> None:
    store.enqueue([new_job(run_at=NOW - 30), new_job(), new_job(queue="b", run_at=NOW + 100)])
    claim(store, node, limit=1)
    stats = {q.queue: q for q in store.queue_stats(NOW)}
    assert stats["default"].counts == {"queued": 1, "running": 1}
    assert stats["default"].oldest_queued_at == NOW
    assert stats["b"].oldest_queued_at is None  # not ready yet
    assert store.count_queued(("default", "b")) == 2


@also_in_memory
def test_queue_load_counts_queued_and_ready_jobs_up_to_a_cap(store: Store, node: int) -> None:
    store.enqueue([new_job(run_at=NOW - 30), new_job(run_at=NOW - 10), new_job(run_at=NOW + 60)])
    store.enqueue([new_job(queue="b")])
    claim(store, node, limit=1)  # the longest-waiting one runs: no longer queued
    loads = store.queue_load(("default", "b", "empty"), NOW)
    assert loads["default"] == QueueLoad("default", 2, 1, NOW - 10, False)
    assert loads["b"] == QueueLoad("b", 1, 1, NOW, False)
    assert loads["empty"] == QueueLoad("empty", 0, 0, None, False)
    capped = store.queue_load(("default",), NOW, cap=2)["default"]
    assert (capped.queued, capped.capped) == (2, True)


# -- the caller's transaction and timeouts --------------------------------------


def test_enqueue_joins_the_callers_transaction(store: SQLStore) -> None:
    from jobd.store.engine import build_engine

    engine = build_engine(store.url, 5)
    with engine.connect() as conn:
        with conn.begin():
            store.enqueue([new_job(args="[1]")], connection=conn)
            conn.rollback()
        with conn.begin():
            store.enqueue([new_job(args="[2]")], connection=conn)
    engine.dispose()
    assert [job.args for job in store.list_jobs()] == [[2]]


def test_a_locked_database_fails_within_the_timeout(
    db_url: str, store: SQLStore, node: int
) -> None:
    engine = create_engine(normalize_url(db_url))
    quick = open_store(db_url, timeout=0.3)
    with engine.connect() as locker:
        if store.dialect == "sqlite":
            locker.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            locker.execute(text("BEGIN"))
            locker.execute(text("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        with pytest.raises(StoreError):
            quick.enqueue([new_job()])
        assert time.monotonic() - started < 3.0
        locker.rollback()
    # The failed transaction left nothing behind, and the store works again.
    (result,) = quick.enqueue([new_job(args="[7]")])
    assert [job.args for job in quick.list_jobs()] == [[7]]
    assert result.job.args == [7]
    quick.close()
    engine.dispose()


def test_a_runaway_sqlite_statement_is_stopped_at_the_timeout(sqlite_url: str) -> None:
    # (PostgreSQL bounds statements with statement_timeout, set at connect.)
    quick = open_store(sqlite_url, timeout=0.3)
    quick.upgrade()
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    for _ in range(2):  # each transaction gets its own deadline, not the first one's
        started = time.monotonic()
        with (
            pytest.raises(StoreError, match="ran past the store timeout"),
            quick.db.write() as raw,
        ):
            raw.execute(endless)
        assert 0.25 < time.monotonic() - started < 3.0
        quick.enqueue([new_job()])  # the store is usable again at once
    quick.close()


def test_unreachable_database_is_a_store_error() -> None:
    store = open_store("postgresql://postgres@127.0.0.1:1/nothing", timeout=1)
    with pytest.raises(StoreError, match="cannot connect"):
        store.get_job(1)


def test_a_missing_sqlite_file_is_not_created_by_reading(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "typo.db"
    store = open_store(f"sqlite:///{path}")
    with pytest.raises(SchemaError, match=r"does not exist.*jobd db upgrade"):
        store.list_jobs()
    assert not path.exists()
    store.upgrade()
    assert path.exists()
    store.close()


@also_in_memory
def test_retry_clears_the_last_run(store: Store, node: int) -> None:
    store.enqueue([new_job(max_attempts=1)])
    (c,) = claim(store, node)
    failed = attempt_for(c, node, "error", error_type="ValueError", error_message="bad")
    claim(store, node, limit=0, settles=[Settle(c.id, JobState.FAILED, failed)])
    job = store.retry(c.id, NOW + 1)
    assert (job.state, job.error, job.started_at, job.node_id, job.finished_at) == (
        "queued",
        None,
        None,
        None,
        None,
    )
    assert store.job_attempts(c.id)[0].error_type == "ValueError"  # history stays


@also_in_memory
def test_routine_stats(store: Store, node: int) -> None:
    store.enqueue([new_job() for _ in range(4)] + [new_job(routine="app.jobs:other")])
    claims = claim(store, node)
    outcomes = ["succeeded", "succeeded", "error", "time_limit_exceeded", "succeeded"]
    settles = []
    for i, (c, outcome) in enumerate(zip(claims, outcomes, strict=True)):
        a = attempt_for(c, node, outcome, peak_rss=(i + 1) << 20, cpu_seconds=0.5)
        a.finished_at = NOW + i + 1  # durations 1..5 s
        settles.append(Settle(c.id, JobState.SUCCEEDED, a))
    claim(store, node, limit=0, settles=settles)
    stats = {s.routine: s for s in store.routine_stats(NOW - 1)}
    work = stats["app.jobs:work"]
    assert (work.runs, work.succeeded, work.limit_violations) == (4, 2, 1)
    assert (work.p50, work.p95, work.max_duration) == (2.0, 4.0, 4.0)
    assert work.peak_rss == 4 << 20 and work.cpu_seconds == 2.0
    assert stats["app.jobs:other"].runs == 1
    assert store.routine_stats(NOW + 100) == []
    assert [s.routine for s in store.routine_stats(NOW - 1, routine="app.jobs:other")] == [
        "app.jobs:other"
    ]
