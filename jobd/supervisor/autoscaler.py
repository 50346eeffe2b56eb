"""The autoscaling pass: each pool's load measured, the policy asked, resizes planned.

The decision itself is the pure function of scaling.py; `plan` gathers its
inputs for each pool (its queues' load from one capped count, its workers'
occupancy, its size and when that last changed) and returns the resizes,
which the master applies (sizes.py, then the workforce spawns or retires).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from jobd.records import QueueLoad
from jobd.settings import PoolSpec
from jobd.store.contract import Store, StoreError
from jobd.supervisor.scaling import Load, decide
from jobd.supervisor.sizes import PoolSizes

# The queue counts stop here at the least (enough for the status line) and
# here at the most. Each counted job is an index entry read: at a 100,000
# cap a million-job backlog cost the master 41 ms a second on SQLite and
# its drain fell by 15% (benchmarks/compare.py, scale).
LOAD_CAP_MIN = 10_000
LOAD_CAP_MAX = 100_000

log = logging.getLogger("jobd.master")


def load_cap(pools: Iterable[PoolSpec]) -> int:
    """The ready jobs worth counting: with max_workers * scale_up_threshold
    ready, a pool already wants all its workers, and more cannot change that."""
    need = max((math.ceil(p.max_workers * p.scale_up_threshold) for p in pools), default=0)
    return min(max(need, LOAD_CAP_MIN), LOAD_CAP_MAX)


def measure(
    store: Store, queues: tuple[str, ...], pools: Iterable[PoolSpec], now: float
) -> Mapping[str, QueueLoad] | None:
    """The served queues' load, counted up to `load_cap`; None (logged) when the
    store cannot say: the pools keep their size."""
    try:
        return store.queue_load(queues, now, load_cap(pools))
    except StoreError as exc:
        log.warning("autoscaling: %s", exc)
        return None


@dataclass(frozen=True)
class QueueFigures:
    """What the status line says about the served queues."""

    queued: int | None = None  # None before the first count
    capped: bool = False  # the count stopped at its cap: "10000+ queued"
    oldest_ready_age: float | None = None


def figures(loads: Mapping[str, QueueLoad], now: float) -> QueueFigures:
    oldest = min((q.oldest_ready for q in loads.values() if q.oldest_ready), default=None)
    return QueueFigures(
        queued=sum(load.queued for load in loads.values()),
        capped=any(load.capped for load in loads.values()),
        oldest_ready_age=None if oldest is None else max(now - oldest, 0.0),
    )


@dataclass(frozen=True)
class Occupancy:
    """What the workforce says about one pool's workers."""

    busy: int
    idle: int
    idle_expired: int  # idle for longer than the pool's idle_timeout
    mean_runtime: float | None  # recent seconds per job, None before any ran


@dataclass(frozen=True)
class Resize:
    pool: str
    target: int
    grow: bool
    reason: str


def plan(
    pools: Iterable[PoolSpec],
    loads: Mapping[str, QueueLoad],
    sizes: PoolSizes,
    occupancy: Callable[[str], Occupancy],
    now: float,
    mono: float,
) -> list[Resize]:
    """The pools whose size should change, with their new target and why."""
    resizes = []
    for pool in pools:
        mine = [loads[queue] for queue in pool.queues if queue in loads]
        oldest = min((q.oldest_ready for q in mine if q.oldest_ready), default=None)
        workers = occupancy(pool.name)
        load = Load(
            ready=sum(q.ready for q in mine),
            oldest_ready_age=None if oldest is None else max(now - oldest, 0.0),
            mean_runtime=workers.mean_runtime,
            busy=workers.busy,
            idle=workers.idle,
            idle_expired=workers.idle_expired,
            since_change=sizes.since_change(pool.name, mono),
        )
        current = sizes.target(pool.name)
        decision = decide(current, load, sizes.scaling(pool))
        if decision.target != current:
            resizes.append(
                Resize(pool.name, decision.target, decision.target > current, decision.reason)
            )
    return resizes
