"""The health verdicts (jobd/health.py): pure functions of facts and thresholds."""

from __future__ import annotations

import dataclasses
import os

import psutil

from jobd.health import evaluate, gone_here, healthy
from jobd.records import HealthFacts, NodeInfo
from jobd.settings import HealthSection

NOW = 1_800_000_000.0
LIMITS = HealthSection()  # 30s stale, 5m ready, 15m window, 25% from 20 attempts


def node(node_id: int, heartbeat_age: float) -> NodeInfo:
    return NodeInfo(node_id, f"n{node_id}", "host", 100, NOW - 3600, NOW - heartbeat_age, None, {})


GOOD = HealthFacts(
    nodes=[node(1, 1.0)],
    oldest_ready={"default": NOW - 2.0},
    orphaned=[],
    orphaned_count=0,
    attempts=100,
    failures=3,
)


def verdicts(facts: HealthFacts, limits: HealthSection = LIMITS) -> dict[str, bool]:
    return {check.name: check.ok for check in evaluate(facts, limits, NOW)}


def test_all_good() -> None:
    checks = evaluate(GOOD, LIMITS, NOW)
    assert [c.name for c in checks] == [
        "master",
        "nodes",
        "ready_jobs",
        "running_jobs",
        "failure_rate",
    ]
    assert healthy(checks)
    assert all("\n" not in c.summary for c in checks)


def test_no_live_master() -> None:
    stale = dataclasses.replace(GOOD, nodes=[node(1, 31.0), node(2, 400.0)])
    assert verdicts(stale)["master"] is False
    (master, *_) = evaluate(stale, LIMITS, NOW)
    assert "31s ago" in master.summary and master.details["live_nodes"] == []
    assert verdicts(dataclasses.replace(GOOD, nodes=[]))["master"] is False
    assert verdicts(dataclasses.replace(GOOD, nodes=[node(1, 31.0), node(2, 3.0)]))["master"]


def test_a_node_whose_master_has_ended_fails_before_its_heartbeat_goes_stale() -> None:
    two = dataclasses.replace(GOOD, nodes=[node(1, 1.0), node(2, 1.0)])
    checks = {c.name: c for c in evaluate(two, LIMITS, NOW, gone=frozenset({1}))}
    assert checks["master"].ok  # node 2 still runs
    assert not checks["nodes"].ok and "n1 (node 1 on host): its master (pid 100) has ended" in (
        checks["nodes"].summary
    )
    alone = {c.name: c for c in evaluate(GOOD, LIMITS, NOW, gone=frozenset({1}))}
    assert not alone["master"].ok and "n1 (node 1, pid 100) ended" in alone["master"].summary


def test_gone_here_checks_only_this_hosts_pids() -> None:
    me = os.getpid()
    started = psutil.Process(me).create_time()
    facts = dataclasses.replace(
        GOOD,
        nodes=[
            NodeInfo(1, "alive", "here", me, started, NOW, None, {}),
            NodeInfo(2, "reused", "here", me, started - 60, NOW, None, {}),  # pid reused since
            NodeInfo(3, "elsewhere", "there", 2**22 + 1, NOW, NOW, None, {}),
            NodeInfo(4, "dead", "here", 2**22 + 1, NOW, NOW, None, {}),
        ],
    )
    assert gone_here(facts, "here") == {2, 4}


def test_a_job_ready_for_too_long() -> None:
    late = dataclasses.replace(GOOD, oldest_ready={"default": NOW - 10, "emails": NOW - 301})
    assert verdicts(late)["ready_jobs"] is False
    check = evaluate(late, LIMITS, NOW)[2]
    assert "emails" in check.summary and check.details["oldest_ready_age"]["emails"] == 301
    relaxed = dataclasses.replace(LIMITS, ready_max_age=600.0)
    assert verdicts(late, relaxed)["ready_jobs"]
    assert verdicts(dataclasses.replace(GOOD, oldest_ready={}))["ready_jobs"]


def test_running_jobs_of_dead_nodes() -> None:
    orphans = dataclasses.replace(GOOD, orphaned=[(7, 3), (9, None)], orphaned_count=2)
    assert verdicts(orphans)["running_jobs"] is False
    assert "#7 (node 3)" in evaluate(orphans, LIMITS, NOW)[3].summary


def test_a_node_that_stopped_heartbeating_is_named() -> None:
    # One master of three lost the database: the others still heartbeat.
    one_stale = dataclasses.replace(GOOD, nodes=[node(1, 1.0), node(2, 45.0), node(3, 2.0)])
    assert verdicts(one_stale) == {
        "master": True,
        "nodes": False,
        "ready_jobs": True,
        "running_jobs": True,
        "failure_rate": True,
    }
    check = evaluate(one_stale, LIMITS, NOW)[1]
    assert "n2 (node 2 on host): no heartbeat for 45s" in check.summary
    assert check.details["stale"] == [
        {"id": 2, "name": "n2", "hostname": "host", "heartbeat_age": 45.0}
    ]
    assert verdicts(dataclasses.replace(GOOD, nodes=[node(1, 29.0)]))["nodes"]


def test_a_node_declared_dead_by_another_is_named_until_it_comes_back() -> None:
    rescued = NodeInfo(
        2, "n2", "host-b", 100, NOW - 3600, NOW - 70, NOW - 60, {"rescued_at": NOW - 60}
    )
    lost = dataclasses.replace(GOOD, lost=[rescued])
    assert verdicts(lost)["nodes"] is False
    summary = evaluate(lost, LIMITS, NOW)[1].summary
    assert summary.startswith("n2 (node 2 on host-b): declared dead 1m ago"), summary
    assert verdicts(dataclasses.replace(GOOD, lost=[]))["nodes"]


def test_failure_rate_over_the_threshold_from_enough_attempts() -> None:
    assert verdicts(dataclasses.replace(GOOD, failures=25))["failure_rate"]  # 25% is the limit
    assert verdicts(dataclasses.replace(GOOD, failures=26))["failure_rate"] is False
    few = dataclasses.replace(GOOD, attempts=19, failures=19)
    assert verdicts(few)["failure_rate"]  # too few to judge
    assert (
        verdicts(few, dataclasses.replace(LIMITS, failure_min_attempts=5))["failure_rate"] is False
    )
    assert healthy(evaluate(few, LIMITS, NOW))
