"""The autoscaling policy, as a table of situations and the decisions expected."""

from __future__ import annotations

import pytest

from jobd.supervisor.scaling import Decision, Load, Scaling, decide, demand

SEED = Scaling(min_workers=1, max_workers=8, scale_up_threshold=5, max_step=4)


def load(
    ready: int = 0,
    oldest: float | None = None,
    runtime: float | None = None,
    busy: int = 0,
    idle: int = 0,
    idle_expired: int = 0,
    since_change: float = 1000.0,
) -> Load:
    return Load(ready, oldest, runtime, busy, idle, idle_expired, since_change)


@pytest.mark.parametrize(
    ("case", "current", "situation", "target"),
    [
        # the seed supervisor: 1 worker at 0 jobs, 8 at 45 jobs, back to 1
        ("idle stays at the minimum", 1, load(idle=1, idle_expired=1), 1),
        ("45 ready: first step", 1, load(ready=45, busy=1), 5),
        ("45 ready: second step reaches the bound", 5, load(ready=45, busy=5), 8),
        ("never above max_workers", 8, load(ready=500, busy=8), 8),
        ("3 ready, 8 idle: back to 1 in steps", 8, load(ready=3, idle=8, idle_expired=8), 4),
        ("then to the minimum", 4, load(idle=4, idle_expired=4), 1),
        # growing
        ("a few ready jobs fit the threshold", 2, load(ready=10, busy=2), 2),
        ("one more than the threshold allows", 2, load(ready=11, busy=2), 3),
        ("long jobs: time to clear decides", 2, load(ready=12, runtime=10.0, busy=2), 4),
        (
            "an old job grows the pool even when few are ready",
            2,
            load(ready=2, oldest=45.0, busy=2),
            6,
        ),
        ("no cooldown on the way up", 2, load(ready=40, busy=2, since_change=0.1), 6),
        # shrinking: slowly, only idle workers
        ("busy workers are never planned away", 6, load(busy=6), 6),
        ("within the cooldown: keep", 6, load(idle=6, idle_expired=6, since_change=2.0), 6),
        ("idle but not for idle_timeout: keep", 6, load(idle=6, idle_expired=0), 6),
        ("only as many as have idled long", 6, load(idle=6, idle_expired=2), 4),
        (
            "hysteresis: a small dip keeps the size",
            8,
            load(ready=35, busy=7, idle=1, idle_expired=1),
            8,
        ),
        ("a big dip shrinks", 8, load(ready=10, busy=2, idle=6, idle_expired=6), 4),
        ("lowered bounds apply at once", 10, load(busy=10), 8),
    ],
)
def test_decisions(case: str, current: int, situation: Load, target: int) -> None:
    decision = decide(current, situation, SEED)
    assert decision.target == target, f"{case}: {decision}"
    assert (decision.reason == "") == (target == current), case


def test_demand_counts_busy_workers_and_names_its_reason() -> None:
    assert demand(load(ready=0, busy=3), SEED) == (3, "3 busy")
    assert demand(load(ready=12), SEED) == (3, "12 ready")
    assert demand(load(ready=4, runtime=60.0), SEED) == (8, "4 ready at 60s each")


def test_reasons_are_readable() -> None:
    assert decide(1, load(ready=45, busy=1), SEED) == Decision(5, "grow 1 -> 5: 45 ready")
    shrink = decide(4, load(idle=4, idle_expired=4), SEED)
    assert shrink.reason == "shrink 4 -> 1: 0 ready, 4 idle"


def test_a_burst_reaches_the_bound_within_two_decisions_and_returns() -> None:
    size, history = 1, []
    for ready in (45, 45, 40, 20, 0, 0, 0):
        busy = min(size, ready)
        situation = load(ready=ready, busy=busy, idle=size - busy, idle_expired=size - busy)
        size = decide(size, situation, SEED).target
        history.append(size)
    assert history[:2] == [5, 8]
    assert history[-1] == 1


def test_the_load_cap_is_what_a_full_pool_needs_within_bounds() -> None:
    from jobd.settings import PoolSpec
    from jobd.supervisor.autoscaler import LOAD_CAP_MAX, LOAD_CAP_MIN, load_cap

    def pool(max_workers: int, threshold: float) -> PoolSpec:
        return PoolSpec("p", ("q",), None, 1, max_workers, threshold, 10.0, 4, 1.0, 10.0, 0.5, 30.0)

    assert load_cap([]) == LOAD_CAP_MIN
    assert load_cap([pool(8, 5)]) == LOAD_CAP_MIN  # 40 ready fill it; the status wants more
    assert load_cap([pool(8, 5), pool(1000, 20.5)]) == 20_500
    assert load_cap([pool(1024, 1e6)]) == LOAD_CAP_MAX
