"""PostgreSQL between hosts: LISTEN/NOTIFY wake-ups, lost connections, doubtful commits.

The real server on 127.0.0.1:5432; connections are killed with
`pg_terminate_backend`, silenced with SIGSTOP on their backend process, or
cut around a COMMIT by a TCP relay (tests/pgproxy.py).
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from jobd.records import JobState, Settle
from jobd.store import open_store
from jobd.store.contract import StoreError
from jobd.store.engine import build_engine, normalize_url
from jobd.store.migrate import UPGRADE_LOCK
from jobd.store.pglisten import PgListener
from jobd.store.sql import SQLStore
from tests.conftest import PG_BASE
from tests.integration.jobs import NOW, attempt_for, claim, new_job
from tests.pgproxy import PgProxy
from tests.process.daemon import JOBD
from tests.waiting import wait_until


@pytest.fixture
def store(pg_url: str) -> Iterator[SQLStore]:
    s = open_store(pg_url, timeout=2)
    s.upgrade()
    yield s
    s.close()


@pytest.fixture
def listener(store: SQLStore) -> Iterator[PgListener]:
    made = store.wake_listener()
    assert isinstance(made, PgListener)
    yield made
    made.close()


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    conn = psycopg.connect(PG_BASE, autocommit=True)
    yield conn
    conn.close()


def wakeups(listener: PgListener, timeout: float = 5.0) -> list[tuple[float, list[str]]]:
    """The next wake-ups, waiting for the listener's descriptor like the master does."""
    with selectors.DefaultSelector() as selector:
        selector.register(listener.fileno(), selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if selector.select(left) and (found := listener.drain()):
                return found
    return []


def quiet(listener: PgListener, within: float = 0.3) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(listener.fileno(), selectors.EVENT_READ)
        return not (selector.select(within) and listener.drain())


# -- wake-ups ---------------------------------------------------------------------------


def test_an_enqueue_notifies_listeners_at_commit(store: SQLStore, listener: PgListener) -> None:
    store.enqueue([new_job(queue="a", run_at=NOW + 5), new_job(queue="b", run_at=NOW + 3)])
    assert wakeups(listener) == [(NOW + 3, ["a", "b"])]
    assert quiet(listener)


def test_a_single_enqueue_notifies_and_leaves_the_connection_transactional(
    store: SQLStore, listener: PgListener
) -> None:
    (result,) = store.enqueue([new_job(queue="one", run_at=NOW + 2)])
    assert wakeups(listener) == [(NOW + 2, ["one"])]
    assert store.get_job(result.job.id).queue == "one"
    # It runs as one autocommit statement; the connection is back to transactions.
    raw = store.db.connection().connection.dbapi_connection
    assert raw is not None and raw.autocommit is False
    assert quiet(listener)


def test_in_the_callers_transaction_the_wake_up_comes_with_its_commit(
    store: SQLStore, listener: PgListener
) -> None:
    engine = build_engine(store.url, 5)
    with engine.connect() as conn:
        with conn.begin():
            store.enqueue([new_job(args="[1]", queue="rolled")], connection=conn)
            conn.rollback()
        assert quiet(listener)
        conn.begin()
        store.enqueue([new_job(args="[2]", queue="kept")], connection=conn)
        assert quiet(listener)  # not before the application commits
        conn.commit()
    engine.dispose()
    assert wakeups(listener) == [(NOW, ["kept"])]


def test_another_schema_does_not_wake_us(pg_url: str, listener: PgListener) -> None:
    other = PG_BASE  # the public schema of the same database
    engine = create_engine(normalize_url(other))
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_notify('jobd.public', '1800000000.0 default')"))
    engine.dispose()
    assert quiet(listener)


def test_retries_and_failed_hook_jobs_wake_too(store: SQLStore, listener: PgListener) -> None:
    node = store.register_node("n", "h", 1, NOW)
    store.enqueue([new_job(max_attempts=1)])
    wakeups(listener)
    (c,) = claim(store, node)
    failed = attempt_for(c, node, "error", error_type="E", error_message="m")
    hook = new_job(routine="jobd.failure:call_failed_hook", queue="hooks")
    claim(store, node, limit=0, settles=[Settle(c.id, JobState.FAILED, failed, follow_up=hook)])
    assert wakeups(listener) == [(NOW, ["hooks"])]
    store.retry(c.id, NOW + 1)
    assert wakeups(listener) == [(NOW + 1, ["default"])]


# -- the listening connection dies ----------------------------------------------------------


def test_a_terminated_listener_reconnects_and_says_so(
    store: SQLStore, listener: PgListener, admin: psycopg.Connection[tuple[object, ...]]
) -> None:
    fd = listener.fileno()
    assert listener.check()
    pid = listener.backend_pid
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert wakeups(listener, timeout=1.0) == []  # the goodbye is read, not a wake-up
    assert listener.check() is False  # reconnected: the master claims once
    assert listener.fileno() == fd  # nothing for the master to re-register
    assert listener.reconnects == 1
    assert listener.check()
    store.enqueue([new_job(queue="after")])
    assert wakeups(listener) == [(NOW, ["after"])]


def test_a_silently_dead_listener_is_found_by_its_probe(
    store: SQLStore, admin: psycopg.Connection[tuple[object, ...]]
) -> None:
    quick = open_store(store.url, timeout=0.3)
    listener = quick.wake_listener()
    assert isinstance(listener, PgListener)
    try:
        assert listener.check()  # sends the first probe
        pid = listener.backend_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # its server process stops answering, without a word
        try:
            wait_until(lambda: not listener.check(), timeout=5, what="the probe to go unanswered")
        finally:
            os.kill(pid, signal.SIGCONT)
        # The reconnect is made at once; on a loaded machine it may miss the
        # 0.3 s connect timeout and be retried after a backoff.
        wait_until(listener.check, timeout=10, what="the listener to reconnect")
        assert listener.reconnects == 1
        store.enqueue([new_job(queue="after")])
        assert wakeups(listener) == [(NOW, ["after"])]
    finally:
        listener.close()
        quick.close()


def test_a_listener_keeps_trying_while_the_server_refuses(store: SQLStore) -> None:
    relay = PgProxy()
    listener = open_store(relay.url(store.url), timeout=1).wake_listener()
    assert isinstance(listener, PgListener)
    try:
        relay.upstream = ("127.0.0.1", 1)  # nothing listens there: new connections fail
        relay.close()  # and the relay itself is gone
        wait_until(lambda: not listener.check(), timeout=5, what="the loss to be noticed")
        assert listener.check() is False  # still down: each check says so, never raises
        assert listener.drain() == []
    finally:
        listener.close()


# -- the store's own connection --------------------------------------------------------------


def test_a_connection_terminated_while_idle_is_replaced_before_use(
    store: SQLStore, admin: psycopg.Connection[tuple[object, ...]]
) -> None:
    node = store.register_node("n", "h", 1, NOW)
    store.enqueue([new_job()])
    raw = store.db.connection().connection.dbapi_connection
    assert isinstance(raw, psycopg.Connection)
    pid = raw.info.backend_pid
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_until(
        lambda: (
            not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        ),
        what="the backend to exit",
    )
    (c,) = claim(store, node)  # no StoreError: the dead connection was not reused
    assert c.attempt == 1


def test_a_timeout_on_the_hot_path_is_a_store_error(pg_url: str, store: SQLStore) -> None:
    node = store.register_node("n", "h", 1, NOW)
    quick = open_store(pg_url, timeout=0.3)
    engine = create_engine(normalize_url(pg_url))
    with engine.connect() as locker:
        locker.execute(text("BEGIN"))
        locker.execute(text("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE"))
        with pytest.raises(StoreError, match="timeout"):
            quick.exchange(node, [], ("default",), 5, NOW)
        locker.rollback()
    assert quick.exchange(node, [], ("default",), 5, NOW) == []  # and the store goes on
    quick.close()
    engine.dispose()


def test_a_rescue_skips_a_node_that_is_heartbeating_right_now(pg_url: str, store: SQLStore) -> None:
    a = store.register_node("a", "host-a", 1, NOW)
    store.enqueue([new_job()])
    (held,) = claim(store, a)
    engine = create_engine(normalize_url(pg_url))
    with engine.connect() as conn:
        conn.execute(
            text("UPDATE nodes SET heartbeat_at = heartbeat_at - 60 WHERE id = :a"), {"a": a}
        )
        conn.commit()
        # The node's heartbeat transaction holds its row: the rescuer must not wait or act.
        conn.execute(text("UPDATE nodes SET info = '{}' WHERE id = :a"), {"a": a})
        started = time.monotonic()
        assert store.rescue_node(a, NOW, lambda c: Settle(c.id, JobState.QUEUED), timeout=10) == []
        assert time.monotonic() - started < 1.0
        conn.rollback()
    engine.dispose()
    assert store.get_job(held.id).state == "running"


# -- a COMMIT that got no answer ---------------------------------------------------------------


@pytest.fixture
def relay() -> Iterator[PgProxy]:
    proxy = PgProxy()
    yield proxy
    proxy.close()


def test_a_commit_that_happened_unheard_puts_its_claims_back_and_records_once(
    store: SQLStore, relay: PgProxy
) -> None:
    node = store.register_node("n", "h", 1, NOW)
    store.enqueue([new_job(), new_job(), new_job()])
    (first,) = claim(store, node, limit=1)
    done = [Settle(first.id, JobState.SUCCEEDED, attempt_for(first, node), result_json="1")]
    cut = open_store(relay.url(store.url), timeout=2)
    assert cut.exchange(node, [], ("default",), 0, NOW) == []  # connected (its setup commits)
    relay.cut_at_commit(delivered=True)
    with pytest.raises(StoreError):
        cut.exchange(node, done, ("default",), 2, NOW)
    # It committed: two jobs are running on this node, which never heard of them.
    assert [j.state for j in store.list_jobs()] == ["running", "running", "succeeded"]

    # The master sends the same settles again with its next exchange.
    assert cut.exchange(node, done, ("default",), 0, NOW) == []
    jobs = store.list_jobs()
    assert [(j.state, j.attempts) for j in jobs] == [("queued", 0), ("queued", 0), ("succeeded", 1)]
    assert [(a.attempt, a.outcome) for a in store.job_attempts(first.id)] == [(1, "succeeded")]
    assert len(cut.exchange(node, [], ("default",), 5, NOW)) == 2
    cut.close()


def test_a_commit_that_never_arrived_is_sent_again(store: SQLStore, relay: PgProxy) -> None:
    node = store.register_node("n", "h", 1, NOW)
    store.enqueue([new_job(), new_job()])
    (first,) = claim(store, node, limit=1)
    done = [Settle(first.id, JobState.SUCCEEDED, attempt_for(first, node), result_json="1")]
    cut = open_store(relay.url(store.url), timeout=2)
    assert cut.exchange(node, [], ("default",), 0, NOW) == []  # connected (its setup commits)
    relay.cut_at_commit(delivered=False)
    with pytest.raises(StoreError):
        cut.exchange(node, done, ("default",), 1, NOW)
    assert cut.exchange(node, done, ("default",), 1, NOW)  # the second job, claimed now
    assert store.get_job(first.id).state == "succeeded"
    assert [(a.attempt, a.outcome) for a in store.job_attempts(first.id)] == [(1, "succeeded")]
    cut.close()


# -- migrations ----------------------------------------------------------------------------------


def test_two_hosts_upgrading_at_once_both_succeed_with_one_schema(
    pg_url: str, tmp_path: Path, admin: psycopg.Connection[tuple[object, ...]]
) -> None:
    config = tmp_path / "jobd.toml"
    config.write_text(f'[jobd]\ndatabase = "{pg_url}"\n')
    env = {k: v for k, v in os.environ.items() if k != "JOBD_CONFIG"}
    holder = psycopg.connect(PG_BASE, autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (UPGRADE_LOCK,))  # hold both at the door
        upgrades = [
            subprocess.Popen(
                [*JOBD, "-c", str(config), "db", "upgrade"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
            for _ in range(2)
        ]
        try:
            wait_until(
                lambda: (
                    admin.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND objid = %s AND NOT granted",
                        (UPGRADE_LOCK,),
                    ).fetchone()
                    == (2,)
                ),
                timeout=20,
                what="both upgrades to wait for the lock",
            )
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (UPGRADE_LOCK,))
        outputs = [process.communicate(timeout=30)[0] for process in upgrades]
    finally:
        holder.close()
        for process in upgrades:
            if process.poll() is None:
                process.kill()
    assert [process.returncode for process in upgrades] == [0, 0], outputs
    said = sorted("already" in output for output in outputs)
    assert said == [False, True], outputs  # one upgraded, the other found nothing to do
    store = open_store(pg_url)
    store.check_schema()
    store.close()
    engine = create_engine(normalize_url(pg_url))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()
