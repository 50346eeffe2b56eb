"""The job_failed hooks of attempts lost with a whole node (supervisor/duties.py),
on SQLite and on PostgreSQL: one order per lost attempt, once the rescue has
committed, and none from a rescue that found the node alive or already taken."""

from __future__ import annotations

from typing import Any

from jobd.store.sql import SQLStore
from jobd.supervisor import duties
from jobd.supervisor.catalog import Catalog
from tests.integration.jobs import NOW, claim, new_job
from tests.integration.test_store_nodes import WINDOW, backdate


def test_each_attempt_a_rescue_loses_gets_the_hooks_once(store: SQLStore) -> None:
    dead = store.register_node("a", "host-a", 1, NOW)
    me = duties.Identity(store.register_node("b", "host-b", 2, NOW), "b", "host-b")
    store.enqueue([new_job(queue="last", max_attempts=1), new_job(queue="again")])
    (last,) = claim(store, dead, queues=("last",))
    (again,) = claim(store, dead, queues=("again",))
    orders: list[dict[str, Any]] = []
    decider = Catalog().for_dead_node(NOW)
    assert duties.rescue_stale_nodes(store, me, WINDOW, NOW, decider, orders.append) == 0
    assert orders == []  # its heartbeat is fresh: nothing lost

    backdate(store, dead, WINDOW + 5)
    assert duties.rescue_stale_nodes(store, me, WINDOW, NOW, decider, orders.append) == 1
    by_job = {order["job"]["id"]: order for order in orders}
    assert sorted(by_job) == sorted([last.id, again.id]) and len(orders) == 2
    assert store.get_job(last.id).state == "failed"
    assert store.get_job(again.id).state == "queued"  # retried, and its attempt still failed
    order = by_job[last.id]
    assert order["job"] == {
        "id": last.id, "routine": last.routine, "queue": "last", "attempt": 1,
        "max_attempts": 1, "enqueued_at": last.enqueued_at,
    }  # fmt: skip
    assert (order["outcome"], order["error_type"]) == ("lost", "NodeLost")
    assert order["worker"] == {"slot": 0, "pid": None}
    assert "stopped heartbeating" in order["message"]

    assert duties.rescue_stale_nodes(store, me, WINDOW, NOW, decider, orders.append) == 0
    assert len(orders) == 2  # rescued once: no second order
