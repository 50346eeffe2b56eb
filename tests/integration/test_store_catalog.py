"""The routine catalog follows what live nodes register (store/catalog.py), on
SQLite and on PostgreSQL: a deploy that removes a routine removes it from the
catalog producers are checked against, and a rolling deploy keeps a routine
while one live node still registers it."""

from __future__ import annotations

import pytest

from jobd import Client
from jobd.client import UnknownRoutine
from jobd.store.contract import Store
from tests.integration.jobs import NOW, also_in_memory

OLD = {"app:kept": {"queue": "a"}, "app:removed": {"queue": "b"}}
NEW = {"app:kept": {"queue": "a2"}, "app:added": {"queue": "c"}}


@also_in_memory
def test_a_restart_with_new_code_drops_the_routines_it_no_longer_has(store: Store) -> None:
    first = store.register_node("n", "host-a", 1, NOW)
    store.register_routines(OLD, NOW, first)
    assert store.routine_policies() == OLD
    store.stop_node(first, NOW + 1)
    # Between the stop and the restart no live node registers anything: the last
    # catalog stands, so producers are not refused while the master restarts.
    assert store.routine_policies() == OLD
    second = store.register_node("n", "host-a", 2, NOW + 2)
    store.register_routines(NEW, NOW + 2, second)
    assert store.routine_policies() == NEW
    assert store.routine_registrations() == {"app:kept": [second], "app:added": [second]}
    store.stop_node(second, NOW + 3)
    assert store.routine_policies() == NEW  # the removed routine does not come back


@also_in_memory
def test_a_reload_that_drops_a_routine_drops_it_for_that_node(store: Store) -> None:
    node = store.register_node("n", "host-a", 1, NOW)
    store.register_routines(OLD, NOW, node)
    store.register_routines({"app:kept": {"queue": "a"}}, NOW + 1, node)
    assert store.routine_policies() == {"app:kept": {"queue": "a"}}


@also_in_memory
def test_a_rolling_deploy_keeps_what_a_live_node_still_registers(store: Store) -> None:
    old_a = store.register_node("a", "host-a", 1, NOW)
    old_b = store.register_node("b", "host-b", 2, NOW)
    store.register_routines(OLD, NOW, old_a)
    store.register_routines(OLD, NOW, old_b)
    store.stop_node(old_a, NOW + 1)
    new_a = store.register_node("a", "host-a", 3, NOW + 1)
    store.register_routines(NEW, NOW + 1, new_a)  # b still runs the old code
    assert set(store.routine_policies()) == {"app:kept", "app:removed", "app:added"}
    assert store.routine_registrations()["app:removed"] == [old_b]
    assert sorted(store.routine_registrations()["app:kept"]) == sorted([old_b, new_a])
    store.stop_node(old_b, NOW + 2)
    new_b = store.register_node("b", "host-b", 4, NOW + 2)
    store.register_routines(NEW, NOW + 2, new_b)
    assert store.routine_policies() == NEW


@also_in_memory
def test_a_node_declared_dead_stops_registering_its_routines(store: Store) -> None:
    dead = store.register_node("a", "host-a", 1, NOW)
    live = store.register_node("b", "host-b", 2, NOW)
    store.register_routines(OLD, NOW, dead)
    store.register_routines(NEW, NOW, live)
    assert "app:removed" in store.routine_policies()
    store.rescue_node(dead, NOW, lambda claim: pytest.fail("it held no job"))
    assert store.routine_policies() == {"app:kept": NEW["app:kept"], "app:added": {"queue": "c"}}
    store.heartbeat(dead, NOW + 1, {})  # it was only cut off: back, with its code
    assert "app:removed" in store.routine_policies()


def test_a_producer_is_refused_a_routine_no_live_node_registers(db_url: str) -> None:
    client = Client(db_url)
    try:
        client.store.upgrade()
        first = client.store.register_node("n", "host-a", 1, NOW)
        client.store.register_routines(OLD, NOW, first)
        client.store.stop_node(first, NOW + 1)
        second = client.store.register_node("n", "host-a", 2, NOW + 2)
        client.store.register_routines(NEW, NOW + 2, second)
        producer = Client(db_url)  # a fresh producer: no catalog cached yet
        try:
            with pytest.raises(UnknownRoutine):
                producer.enqueue("app:removed")
            assert producer.enqueue("app:added").queue == "c"
        finally:
            producer.close()
    finally:
        client.close()
