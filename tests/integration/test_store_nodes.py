"""Nodes across hosts (jobd/store/nodes.py), on SQLite, on PostgreSQL and in memory.

A node whose heartbeat is older than the window is dead and its running
jobs are rescued, once, however many nodes try; a node with a fresh
heartbeat never is; a node that comes back cannot overwrite what happened
to the jobs taken from it.

Every test but the race of rescuers (several connections at once: SQL's
row locks) runs on the in-memory store too (`also_in_memory`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import create_engine, text

from jobd.records import Claim, JobState, Settle
from jobd.store import open_store
from jobd.store.contract import Store
from jobd.store.engine import normalize_url
from jobd.store.memory import MemoryStore
from jobd.store.sql import SQLStore
from tests.integration.jobs import NOW, also_in_memory, attempt_for, claim, new_job

WINDOW = 10.0


def backdate(store: Store, node_id: int, seconds: float) -> None:
    """Make the node's last heartbeat `seconds` old, on the clock the store judges by."""
    if isinstance(store, MemoryStore):
        store.set_heartbeat(node_id, NOW - seconds)
        return
    assert isinstance(store, SQLStore)
    clock = "extract(epoch from clock_timestamp())" if store.dialect == "postgresql" else str(NOW)
    engine = create_engine(normalize_url(store.url))
    with engine.begin() as conn:
        conn.execute(
            text(f"UPDATE nodes SET heartbeat_at = {clock} - :s WHERE id = :id"),
            {"s": seconds, "id": node_id},
        )
    engine.dispose()


def lost(store: Store, node_id: int) -> Callable[[Claim], Settle]:
    def decide(c: Claim) -> Settle:
        attempt = attempt_for(c, node_id, "lost")
        return Settle(c.id, JobState.QUEUED, attempt, run_at=NOW)

    return decide


def attempts_of(store: Store, job_id: int) -> list[tuple[int, str]]:
    return [(a.attempt, a.outcome) for a in store.job_attempts(job_id)]


@also_in_memory
def test_a_fresh_heartbeat_is_never_rescued_however_long_its_jobs_run(store: Store) -> None:
    a = store.register_node("a", "host-a", 1, NOW)
    b = store.register_node("b", "host-b", 2, NOW)
    store.enqueue([new_job(run_at=NOW - 7200)])
    (held,) = claim(store, a, now=NOW - 3600)  # running for an hour
    store.heartbeat(a, NOW, {})
    assert store.dead_nodes(NOW, WINDOW, exclude=b) == []
    assert store.rescue_node(a, NOW, lost(store, a), timeout=WINDOW) == []
    job = store.get_job(held.id)
    assert (job.state, job.node_id) == ("running", a)
    assert a in [n.id for n in store.nodes()]


@also_in_memory
def test_a_stale_node_is_rescued_once(store: Store) -> None:
    a = store.register_node("a", "host-a", 1, NOW)
    b = store.register_node("b", "host-b", 2, NOW)
    store.enqueue([new_job(), new_job()])
    held = claim(store, a)
    backdate(store, a, WINDOW + 5)
    assert [n.id for n in store.dead_nodes(NOW, WINDOW, exclude=b)] == [a]
    assert store.dead_nodes(NOW, WINDOW, exclude=a) == []  # a node never rescues itself

    settles = store.rescue_node(a, NOW, lost(store, a), timeout=WINDOW)
    assert sorted(s.job_id for s in settles) == sorted(c.id for c in held)
    assert {store.get_job(c.id).state for c in held} == {"queued"}
    assert [attempts_of(store, c.id) for c in held] == [[(1, "lost")], [(1, "lost")]]
    (gone,) = store.nodes(include_stopped=True)[:1]
    assert gone.id == a and gone.stopped_at == NOW and gone.rescued_at == NOW

    assert store.rescue_node(a, NOW, lost(store, a), timeout=WINDOW) == []
    assert store.dead_nodes(NOW, WINDOW, exclude=b) == []
    assert [attempts_of(store, c.id) for c in held] == [[(1, "lost")], [(1, "lost")]]


def test_rescuers_racing_settle_each_job_once(db_url: str, store: SQLStore) -> None:
    a = store.register_node("a", "host-a", 1, NOW)
    store.enqueue([new_job() for _ in range(40)])
    held = claim(store, a, limit=40)
    backdate(store, a, WINDOW + 5)
    start = threading.Barrier(4)
    settled: list[int] = []
    lock = threading.Lock()

    def rescuer() -> None:
        mine = open_store(db_url, timeout=10)
        start.wait()
        done = mine.rescue_node(a, NOW, lost(mine, a), timeout=WINDOW)
        with lock:
            settled.extend(s.job_id for s in done)
        mine.close()

    threads = [threading.Thread(target=rescuer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(settled) == sorted(c.id for c in held)
    assert all(attempts_of(store, c.id) == [(1, "lost")] for c in held)


@also_in_memory
def test_a_stopped_node_that_still_holds_jobs_is_rescued_once_stale(store: Store) -> None:
    # A master that stopped while the store could not record its last results.
    a = store.register_node("a", "host-a", 1, NOW)
    store.enqueue([new_job()])
    (held,) = claim(store, a)
    store.stop_node(a, NOW)
    assert store.dead_nodes(NOW, WINDOW) == []  # its heartbeat is fresh
    backdate(store, a, WINDOW + 5)
    assert [n.id for n in store.dead_nodes(NOW, WINDOW)] == [a]
    assert len(store.rescue_node(a, NOW, lost(store, a), timeout=WINDOW)) == 1
    assert store.get_job(held.id).state == "queued"
    assert store.dead_nodes(NOW, WINDOW) == []
    assert store.nodes(include_stopped=True)[0].rescued_at is None  # it had stopped by itself


@also_in_memory
def test_a_node_that_comes_back_cannot_overwrite_what_was_done_without_it(
    store: Store,
) -> None:
    a = store.register_node("a", "host-a", 1, NOW)
    b = store.register_node("b", "host-b", 2, NOW)
    store.enqueue([new_job(queue="x"), new_job(queue="y")])
    (x1,) = claim(store, a, queues=("x",))
    (y1,) = claim(store, a, queues=("y",))
    backdate(store, a, WINDOW + 5)
    store.rescue_node(a, NOW, lost(store, a), timeout=WINDOW)
    (x2,) = claim(store, b, queues=("x",))  # rerun elsewhere
    assert x2.id == x1.id and x2.attempt == 2
    (y2,) = claim(store, a, queues=("y",))  # or by the very node, once it is back

    late = [
        Settle(x1.id, JobState.SUCCEEDED, attempt_for(x1, a), result_json='"late"'),
        Settle(y1.id, JobState.SUCCEEDED, attempt_for(y1, a), result_json='"late"'),
    ]
    claim(store, a, limit=0, settles=late)
    x, y = store.get_job(x1.id), store.get_job(y1.id)
    assert (x.state, x.node_id, x.attempts, x.result) == ("running", b, 2, None)
    assert (y.state, y.node_id, y.attempts, y.result) == ("running", a, 2, None)
    assert attempts_of(store, x1.id) == [(1, "lost"), (1, "succeeded")]  # a fact, recorded

    done = Settle(y2.id, JobState.SUCCEEDED, attempt_for(y2, a), result_json='"second"')
    claim(store, a, limit=0, settles=[done])
    assert (store.get_job(y2.id).state, store.get_job(y2.id).result) == ("succeeded", "second")

    pulse = store.heartbeat(a, NOW + 1, {"workers": []})
    assert pulse is not None and pulse.was_stopped_at == NOW
    (back,) = [n for n in store.nodes() if n.id == a]
    assert back.stopped_at is None and back.rescued_at is None


@also_in_memory
def test_health_names_a_rescued_node_until_it_is_restarted(store: Store) -> None:
    a = store.register_node("a", "host-a", 1, NOW)
    backdate(store, a, WINDOW + 5)
    store.rescue_node(a, NOW, lost(store, a), timeout=WINDOW)
    facts = store.health_facts(NOW, NOW - 30, NOW - 900)
    assert [n.id for n in facts.lost] == [a]
    store.register_node("a", "host-b", 3, NOW + 1)  # same name, another host: not a restart
    assert [n.id for n in store.health_facts(NOW, NOW - 30, NOW - 900).lost] == [a]
    store.register_node("a", "host-a", 4, NOW + 2)  # restarted
    assert store.health_facts(NOW, NOW - 30, NOW - 900).lost == []
