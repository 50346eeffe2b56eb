"""`jobd.Client` against a real SQLite file: enqueue, resolve, retry, cancel."""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

import jobd
from jobd import Client, JobSpec, UnknownRoutine
from jobd.policy import Policy
from jobd.records import Attempt, JobState, Settle
from jobd.settings import JobdSection, Settings
from jobd.store import open_store
from jobd.store.contract import InvalidTransition, JobNotFound
from jobd.store.engine import build_engine
from tests.integration import client_routines as routines

SEND = "tests.integration.client_routines:send"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "jobd.db"
    store = open_store(f"sqlite:///{path}")
    store.upgrade()
    store.close()
    return path


@pytest.fixture
def url(db_path: Path) -> str:
    return f"sqlite:///{db_path}"


@pytest.fixture
def client(url: str) -> Iterator[Client]:
    with Client(url, timeout=5) as c:
        yield c


def count_jobs(db_path: Path) -> int:
    """Rows in the jobs table, read with the stdlib driver (not through jobd)."""
    with sqlite3.connect(db_path) as conn:
        (count,) = conn.execute("SELECT count(*) FROM jobs").fetchone()
    return int(count)


# -- enqueue -------------------------------------------------------------------


def test_enqueue_a_routine_object(client: Client, db_path: Path) -> None:
    before = time.time()
    job = client.enqueue(routines.send, "a@example.com", subject="hi")
    assert job.routine == SEND
    assert job.state == "queued"
    assert job.queue == "emails"
    assert job.priority == 2
    assert job.max_attempts == 4
    assert job.attempts == 0
    assert job.args == ["a@example.com"]
    assert job.kwargs == {"subject": "hi"}
    assert before <= job.enqueued_at == job.run_at <= time.time()
    assert job.started_at is None
    assert job.finished_at is None
    assert client.get(job.id) == job
    assert count_jobs(db_path) == 1


def test_enqueue_by_name_of_a_routine_imported_here(client: Client) -> None:
    job = client.enqueue(SEND, "b@example.com")
    assert (job.routine, job.queue, job.priority, job.max_attempts) == (SEND, "emails", 2, 4)


@pytest.fixture
def lazy_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module nothing has imported yet, with one routine (fresh name per test)."""
    name = f"lazy_routines_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "import jobd\n\n"
        "@jobd.routine(queue='lazy', priority=-4, max_attempts=6)\n"
        "def found_by_import(n):\n"
        "    return n\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_enqueue_by_name_never_imports_the_module(client: Client, lazy_module: str) -> None:
    # It imported it (issue 21 A2): a name is code only once the producer imports it.
    assert lazy_module not in sys.modules
    with pytest.raises(UnknownRoutine, match="unknown routine"):
        client.enqueue(f"{lazy_module}:found_by_import", 3)
    assert lazy_module not in sys.modules
    importlib.import_module(lazy_module)  # what a producer does with its routines module
    job = client.enqueue(f"{lazy_module}:found_by_import", 3)
    assert job.routine == f"{lazy_module}:found_by_import"
    assert (job.queue, job.priority, job.max_attempts, job.args) == ("lazy", -4, 6, [3])


def test_enqueue_by_name_uses_the_catalog_workers_registered(client: Client) -> None:
    # The routine's module does not exist here: only the store knows its policy.
    catalog_policy = {"queue": "remote", "priority": 8, "max_attempts": 2, "unique": False}
    client.store.register_routines({"elsewhere.jobs:crunch": catalog_policy}, time.time())
    job = client.enqueue("elsewhere.jobs:crunch", 1)
    assert (job.queue, job.priority, job.max_attempts) == ("remote", 8, 2)


def test_config_routine_table_applies_over_catalog_and_decorator(url: str) -> None:
    settings = Settings(
        jobd=JobdSection(database=url),
        routines={
            SEND: {"queue": "bulk", "max_attempts": 9},
            "elsewhere.jobs:crunch": {"priority": -1},
        },
    )
    with Client(settings=settings) as client:
        client.store.register_routines({"elsewhere.jobs:crunch": {"queue": "remote"}}, time.time())
        sent = client.enqueue(routines.send, "c@example.com")
        crunched = client.enqueue("elsewhere.jobs:crunch")
    assert (sent.queue, sent.priority, sent.max_attempts) == ("bulk", 2, 9)
    assert (crunched.queue, crunched.priority) == ("remote", -1)


def test_options_override_the_policy(client: Client) -> None:
    job = client.enqueue(
        routines.send,
        "d@example.com",
        queue="urgent",
        priority=100,
        max_attempts=1,
        unique_key="mail:d",
    )
    assert (job.queue, job.priority, job.max_attempts, job.unique_key) == (
        "urgent",
        100,
        1,
        "mail:d",
    )
    assert client.get(job.id) == job


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("no_such_package.jobs:work", UnknownRoutine, "no worker has registered any routine"),
        ("tests.integration.client_routines:missing", UnknownRoutine, "unknown routine"),
        ("not a name", ValueError, "is not a routine name"),
        ("module_only", ValueError, "is not a routine name"),
    ],
)
def test_unknown_routine_is_refused_and_nothing_written(
    client: Client, db_path: Path, name: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        client.enqueue(name)
    assert count_jobs(db_path) == 0


def test_unknown_routine_is_a_value_error() -> None:
    assert issubclass(UnknownRoutine, ValueError)


def test_a_name_is_checked_against_the_catalog_never_by_importing_it(
    client: Client, db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module that would run if the client imported the name: in the working
    # directory and on sys.path, where an import would find it (issue 21 A2).
    marker = tmp_path / "imported"
    (tmp_path / "planted_client_jobs.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nimport jobd\n\n@jobd.routine\ndef work():\n    pass\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    client.store.register_routines({"elsewhere.jobs:crunch": {"queue": "remote"}}, time.time())
    with pytest.raises(UnknownRoutine) as refused:
        client.enqueue("planted_client_jobs:work")
    message = str(refused.value)
    assert "\n" not in message
    assert "unknown routine 'planted_client_jobs:work'" in message
    assert "no worker has registered it" in message and "check_routines=False" in message
    assert not marker.exists() and "planted_client_jobs" not in sys.modules
    assert count_jobs(db_path) == 0


def test_check_routines_false_enqueues_a_name_not_registered_yet(
    url: str, db_path: Path, tmp_path: Path
) -> None:
    # The default policy, the config's [routines] table over it; nothing imported.
    settings = Settings(
        jobd=JobdSection(database=url), routines={"later.jobs:work": {"max_attempts": 9}}
    )
    with Client(settings=settings, check_routines=False) as client:
        job = client.enqueue("later.jobs:work", 1, queue="later")
        plain = client.enqueue("later.jobs:other")
    assert (job.routine, job.queue, job.max_attempts, job.args) == (
        "later.jobs:work", "later", 9, [1],
    )  # fmt: skip
    assert (plain.queue, plain.max_attempts) == ("default", Policy().max_attempts)
    assert "later.jobs" not in sys.modules
    assert count_jobs(db_path) == 2


def test_a_routine_must_be_a_routine_or_a_name(client: Client) -> None:
    with pytest.raises(TypeError, match="neither a routine nor a routine name"):
        client.enqueue(print)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((datetime(2030, 1, 1),), {}, r"args\[0\] is datetime.datetime\(2030, 1, 1, 0, 0\)"),
        (("ok", {1, 2}), {}, r"args\[1\] is \{1, 2\} of type set"),
        ((), {"when": datetime(2030, 1, 1)}, r"kwargs\['when'\] is datetime"),
        ((), {"blob": b"x"}, r"kwargs\['blob'\] is b'x' of type bytes"),
        ((float("nan"),), {}, r"args\[0\] is nan"),
        (({1: "a"},), {}, r"args\[0\] has the key 1"),
        (("\ud800",), {}, r"args\[0\] is a str holding a lone surrogate"),
    ],
)
def test_non_json_arguments_are_refused_and_nothing_written(
    client: Client, db_path: Path, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        client.enqueue(routines.plain, *args, **kwargs)
    assert count_jobs(db_path) == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue": "bad queue"}, "is not a queue name"),
        ({"priority": 1.5}, "enqueue.priority: 1.5 is not an integer"),
        ({"priority": 2**31}, "is above the maximum"),
        ({"max_attempts": 0}, "enqueue.max_attempts: 0 is below the minimum 1"),
        ({"max_attempts": "three"}, "enqueue.max_attempts: 'three' is not an integer"),
    ],
)
def test_bad_options_are_refused_and_nothing_written(
    client: Client, db_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        client.enqueue(routines.plain, **options)
    assert count_jobs(db_path) == 0


def test_tuples_arrive_as_lists(client: Client) -> None:
    job = client.enqueue(routines.plain, (1, 2), pair=("a", "b"))
    assert client.get(job.id).args == [[1, 2]]
    assert client.get(job.id).kwargs == {"pair": ["a", "b"]}


# -- enqueue_many ------------------------------------------------------------


def test_enqueue_many_adds_all_in_order(client: Client, db_path: Path) -> None:
    jobs = client.enqueue_many(
        [
            JobSpec(routines.send, ("x@example.com",)),
            JobSpec(SEND, kwargs={"to": "y@example.com"}, priority=7),
            JobSpec(routines.plain, (1,), queue="other", delay="1m"),
        ]
    )
    assert [job.id for job in jobs] == sorted(job.id for job in jobs)
    assert [(job.routine, job.queue, job.priority) for job in jobs] == [
        (SEND, "emails", 2),
        (SEND, "emails", 7),
        ("tests.integration.client_routines:plain", "other", 0),
    ]
    assert jobs[2].run_at == pytest.approx(jobs[2].enqueued_at + 60)
    assert [client.get(job.id) for job in jobs] == jobs
    assert count_jobs(db_path) == 3


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (JobSpec(routines.plain, (datetime(2030, 1, 1),)), TypeError),
        (JobSpec("no_such_package.jobs:work"), UnknownRoutine),
        (JobSpec(routines.plain, queue="bad queue"), ValueError),
        (JobSpec(routines.plain, at="tomorrow"), ValueError),
    ],
)
def test_enqueue_many_is_all_or_nothing(
    client: Client, db_path: Path, bad: JobSpec, error: type[Exception]
) -> None:
    good = JobSpec(routines.plain, (1,))
    with pytest.raises(error):
        client.enqueue_many([good, good, bad, good])
    assert count_jobs(db_path) == 0


def test_enqueue_many_of_nothing_on_an_empty_store(client: Client, db_path: Path) -> None:
    assert client.enqueue_many([]) == []
    assert count_jobs(db_path) == 0


def test_enqueue_many_of_nothing(client: Client, db_path: Path) -> None:
    client.enqueue(routines.plain)
    assert client.enqueue_many([]) == []
    assert count_jobs(db_path) == 1


def test_a_bulk_enqueue_runs_no_garbage_collection_and_restores_the_collector(
    client: Client, db_path: Path
) -> None:
    # The records of a big batch would make the collector walk the whole heap
    # (docs/performance.md); its state afterwards is what it was before.
    import gc

    collections: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    specs = [JobSpec(routines.plain, (i,)) for i in range(5000)]
    # From empty generations: otherwise the young collection the first
    # allocation after the call makes may be counted as older by the test's
    # earlier allocations (seen: [1]).
    gc.collect()
    gc.callbacks.append(seen)
    try:
        client.enqueue_many(specs)
        # At most the young generation, once, on the first allocation after the
        # call (without the pause: ~35 collections, some of older generations).
        assert collections in ([], [0])
        assert gc.isenabled()
        gc.disable()  # a caller that switched it off keeps it off, also on errors
        with pytest.raises(TypeError):
            client.enqueue_many([*specs[:10], JobSpec(routines.plain, (object(),))])
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.callbacks.remove(seen)
    assert count_jobs(db_path) == 5000


# -- when a job may run --------------------------------------------------------

AT = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "at",
    [
        AT,
        AT.astimezone(timezone(timedelta(hours=5, minutes=30))),
        "2030-01-01T00:00:00Z",
        "2030-01-01T00:00:00+00:00",
        "2030-01-01T01:00:00+01:00",
        AT.timestamp(),
        int(AT.timestamp()),
    ],
)
def test_at_sets_run_at(client: Client, at: Any) -> None:
    job = client.enqueue(routines.plain, at=at)
    assert job.run_at == AT.timestamp()
    assert client.get(job.id).run_at == AT.timestamp()


@pytest.mark.parametrize(
    ("delay", "seconds"), [("5m", 300.0), ("250ms", 0.25), (30, 30.0), (timedelta(hours=2), 7200.0)]
)
def test_delay_sets_run_at(client: Client, delay: Any, seconds: float) -> None:
    job = client.enqueue(routines.plain, delay=delay)
    assert job.run_at == pytest.approx(job.enqueued_at + seconds)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"at": datetime(2030, 1, 1)}, ValueError, "has no time zone"),
        ({"at": "2030-01-01T00:00:00"}, ValueError, "has no time zone"),
        ({"at": "next tuesday"}, ValueError, "is not an ISO 8601 time"),
        ({"at": True}, TypeError, "at must be a datetime"),
        ({"at": float("nan")}, ValueError, "out of range"),
        ({"at": float("inf")}, ValueError, "out of range"),
        ({"at": "9999-12-31T23:59:59-05:00"}, ValueError, "out of range"),
        ({"delay": "99999999999999d"}, ValueError, "out of range"),
        ({"delay": "5x"}, ValueError, "is not a duration"),
        ({"delay": -1}, ValueError, "is not a duration"),
        ({"delay": "5m", "at": AT}, ValueError, "give delay or at, not both"),
    ],
)
def test_bad_times_are_refused_and_nothing_written(
    client: Client, db_path: Path, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        client.enqueue(routines.plain, **options)
    assert count_jobs(db_path) == 0


# -- uniqueness ----------------------------------------------------------------


def test_a_unique_routine_returns_the_live_job(client: Client, db_path: Path) -> None:
    first = client.enqueue(routines.refresh, "k1")
    again = client.enqueue(routines.refresh, "k1")
    other = client.enqueue(routines.refresh, "k2")
    assert again == first
    assert other.id != first.id
    assert count_jobs(db_path) == 2


def test_a_unique_routine_adds_a_job_once_the_live_one_is_finished(client: Client) -> None:
    first = client.enqueue(routines.refresh, "k1")
    client.cancel(first.id)
    second = client.enqueue(routines.refresh, "k1")
    assert second.id != first.id
    assert second.state == "queued"


def test_a_unique_key_returns_the_live_job_with_its_own_arguments(
    client: Client, db_path: Path
) -> None:
    first = client.enqueue(routines.plain, "first", unique_key="nightly")
    again = client.enqueue(routines.plain, "second", unique_key="nightly")
    assert again.id == first.id
    assert again.args == ["first"]
    assert count_jobs(db_path) == 1


def test_a_unique_key_returns_a_running_job_too(client: Client) -> None:
    first = client.enqueue(routines.plain, unique_key="nightly")
    claim_one(client)
    again = client.enqueue(routines.plain, unique_key="nightly")
    assert again.id == first.id
    assert again.state == "running"


# -- the caller's transaction ------------------------------------------------


@pytest.fixture
def app_engine(url: str) -> Iterator[Any]:
    engine = build_engine(url, timeout=5)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)"))
    yield engine
    engine.dispose()


def test_enqueue_in_a_rolled_back_transaction_leaves_no_job(
    client: Client, app_engine: Any, db_path: Path
) -> None:
    with app_engine.connect() as conn, conn.begin() as transaction:
        conn.execute(text("INSERT INTO orders (item) VALUES ('book')"))
        job = client.enqueue(routines.send, "e@example.com", connection=conn)
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 1
        transaction.rollback()
    assert count_jobs(db_path) == 0
    with pytest.raises(JobNotFound):
        client.get(job.id)


def test_enqueue_in_a_committed_transaction_keeps_the_job(
    client: Client, app_engine: Any, db_path: Path
) -> None:
    with app_engine.connect() as conn, conn.begin():
        conn.execute(text("INSERT INTO orders (item) VALUES ('book')"))
        job = client.enqueue(routines.send, "e@example.com", connection=conn)
        # Not visible outside the transaction before it commits.
        assert count_jobs(db_path) == 0
    assert client.get(job.id) == job
    with app_engine.connect() as conn:
        assert conn.execute(text("SELECT item FROM orders")).scalar() == "book"


def test_enqueue_many_in_the_callers_transaction(client: Client, app_engine: Any) -> None:
    with app_engine.connect() as conn, conn.begin():
        jobs = client.enqueue_many(
            [JobSpec(routines.plain, (n,)) for n in range(3)], connection=conn
        )
    assert [client.get(job.id).args for job in jobs] == [[0], [1], [2]]


def test_connection_must_be_a_sqlalchemy_connection(client: Client, db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw, pytest.raises(TypeError, match=r"sqlalchemy\.Connection"):
        client.enqueue(routines.plain, connection=raw)
    assert count_jobs(db_path) == 0


# -- retry and cancel ----------------------------------------------------------


def claim_one(client: Client, queue: str = "default") -> tuple[int, int]:
    """Have a (pretend) master claim the next job: (node id, job id)."""
    now = time.time()
    node = client.store.register_node("test-node", "localhost", os.getpid(), now)
    (claim,) = client.store.exchange(node, [], (queue,), 1, now)
    return node, claim.id


def fail_one(client: Client) -> int:
    """Enqueue a job with one attempt and record it failing for good."""
    job = client.enqueue(routines.plain, max_attempts=1)
    node, job_id = claim_one(client)
    now = time.time()
    attempt = Attempt(
        job_id=job_id,
        attempt=1,
        routine=job.routine,
        queue=job.queue,
        node_id=node,
        worker_pid=os.getpid(),
        started_at=now,
        finished_at=now,
        outcome="error",
        error_type="ValueError",
        error_message="boom",
    )
    client.store.exchange(node, [Settle(job_id, JobState.FAILED, attempt)], ("default",), 0, now)
    assert client.get(job_id).state == "failed"
    return job_id


def test_cancel_a_queued_job(client: Client) -> None:
    job = client.enqueue(routines.plain)
    cancelled = client.cancel(job.id)
    assert cancelled.state == "cancelled"
    assert cancelled.finished_at is not None
    assert client.get(job.id) == cancelled


def test_cancel_a_running_job_asks_its_master(client: Client) -> None:
    job = client.enqueue(routines.plain)
    claim_one(client)
    asked = client.cancel(job.id)
    assert asked.state == "running"
    assert asked.cancel_requested


@pytest.mark.parametrize("state", ["cancelled", "failed"])
def test_a_finished_job_cannot_be_cancelled(client: Client, state: str) -> None:
    if state == "failed":
        job_id = fail_one(client)
    else:
        job_id = client.cancel(client.enqueue(routines.plain).id).id
    with pytest.raises(InvalidTransition, match=f"job {job_id} is {state}"):
        client.cancel(job_id)
    assert client.get(job_id).state == state


def test_retry_a_cancelled_job(client: Client) -> None:
    job = client.enqueue(routines.plain, 1)
    client.cancel(job.id)
    retried = client.retry(job.id)
    assert retried.state == "queued"
    assert retried.attempts == 0
    assert retried.finished_at is None
    assert retried.args == [1]


def test_retry_a_failed_job_gives_it_fresh_attempts(client: Client) -> None:
    job_id = fail_one(client)
    assert client.get(job_id).attempts == 1
    retried = client.retry(job_id)
    assert (retried.state, retried.attempts, retried.finished_at) == ("queued", 0, None)
    assert retried.run_at <= time.time()


def test_a_queued_or_running_job_cannot_be_retried(client: Client) -> None:
    queued = client.enqueue(routines.plain)
    with pytest.raises(InvalidTransition, match=f"job {queued.id} is queued"):
        client.retry(queued.id)
    claim_one(client)
    with pytest.raises(InvalidTransition, match=f"job {queued.id} is running"):
        client.retry(queued.id)


def test_retry_is_refused_while_another_job_holds_the_unique_key(client: Client) -> None:
    first = client.enqueue(routines.plain, unique_key="k")
    client.cancel(first.id)
    second = client.enqueue(routines.plain, unique_key="k")
    with pytest.raises(InvalidTransition, match="already has its unique key"):
        client.retry(first.id)
    assert client.get(first.id).state == "cancelled"
    assert client.get(second.id).state == "queued"


@pytest.mark.parametrize("action", ["get", "retry", "cancel", "attempts"])
def test_unknown_job_id(client: Client, action: str) -> None:
    if action == "attempts":
        assert client.attempts(12345) == []
        return
    with pytest.raises(JobNotFound, match="no job with id 12345"):
        getattr(client, action)(12345)


# -- queries -----------------------------------------------------------------


def test_list_filters_newest_first(client: Client) -> None:
    a = client.enqueue(routines.send, "a@example.com")
    b = client.enqueue(routines.plain, queue="other")
    c = client.enqueue(routines.plain)
    client.cancel(c.id)
    assert [job.id for job in client.list()] == [c.id, b.id, a.id]
    assert [job.id for job in client.list(limit=2)] == [c.id, b.id]
    assert [job.id for job in client.list(state="cancelled")] == [c.id]
    assert [job.id for job in client.list(queue="other")] == [b.id]
    assert [job.id for job in client.list(routine=SEND)] == [a.id]
    assert client.list(state="failed") == []


def test_stats_count_jobs_by_queue_and_state(client: Client) -> None:
    client.enqueue(routines.send, "a@example.com")
    client.enqueue(routines.plain)
    client.cancel(client.enqueue(routines.plain).id)
    client.enqueue(routines.plain, delay="1h")
    stats = {s.queue: s for s in client.stats()}
    assert stats["emails"].counts == {"queued": 1}
    assert stats["default"].counts == {"queued": 2, "cancelled": 1}
    # The delayed job is not ready, so the oldest ready one is the first.
    assert stats["default"].oldest_queued_at is not None
    assert stats["default"].oldest_queued_at <= time.time()


# -- making a client -----------------------------------------------------------


def test_client_from_a_config_file(tmp_path: Path, db_path: Path) -> None:
    config = tmp_path / "jobd.toml"
    config.write_text(
        f'[jobd]\ndatabase = "sqlite:///{db_path.name}"\n[routines."{SEND}"]\nqueue = "cfg"\n'
    )
    with Client(config=config) as client:
        job = client.enqueue(routines.send, "f@example.com")
    assert job.queue == "cfg"
    assert count_jobs(db_path) == 1


def test_client_takes_one_source_of_settings(tmp_path: Path, url: str) -> None:
    config = tmp_path / "jobd.toml"
    config.write_text('[jobd]\ndatabase = "sqlite:///other.db"\n')
    with pytest.raises(TypeError, match="not several"):
        Client(url, config=config)
    with pytest.raises(TypeError, match="not several"):
        Client(url, settings=Settings())
    assert not (tmp_path / "other.db").exists()


def test_the_client_is_exported() -> None:
    assert jobd.Client is Client
    assert jobd.JobSpec is JobSpec


def test_a_unique_key_longer_than_its_column_is_refused(db_url: str) -> None:
    # SQLite kept all 5,000 characters, PostgreSQL raised a driver error: both
    # now refuse it before the store, with the reason (issue 21 B).
    store = open_store(db_url, timeout=5)
    store.upgrade()
    store.close()
    with Client(db_url) as client:
        with pytest.raises(ValueError, match="5000 characters long; at most 255"):
            client.enqueue(routines.send, "a@example.com", unique_key="k" * 5000)
        with pytest.raises(ValueError, match="at most 255"):
            client.enqueue_many([JobSpec(routines.send, ("a",), unique_key="k" * 256)])
        assert client.list() == []
        kept = client.enqueue(routines.send, "a@example.com", unique_key="k" * 255)
        assert client.get(kept.id).unique_key == "k" * 255
