"""The master's autoscaling pass: measure each pool's load, apply the policy.

The decision itself is the pure function of supervisor/scaling.py; this
gathers its inputs (one capped count of each served queue, the pool's
workers and their idleness, its recent runtime) and applies its output.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from jobd.pools import PoolSpec
from jobd.store.contract import StoreError
from jobd.supervisor.phase import Phase
from jobd.supervisor.scaling import Load, Scaling, decide

if TYPE_CHECKING:
    from jobd.supervisor.master import Master

log = logging.getLogger("jobd.master")


# The queue counts stop here at the least (enough for the status line) and
# here at the most. Each counted job is an index entry read: at a 100,000
# cap a million-job backlog cost the master 41 ms a second on SQLite and
# its drain fell by 15% (benchmarks/compare.py, scale).
LOAD_CAP_MIN = 10_000
LOAD_CAP_MAX = 100_000


def load_cap(pools: Iterable[PoolSpec]) -> int:
    """The ready jobs worth counting: with max_workers * scale_up_threshold
    ready, a pool already wants all its workers, and more cannot change that."""
    need = max((math.ceil(p.max_workers * p.scale_up_threshold) for p in pools), default=0)
    return min(max(need, LOAD_CAP_MIN), LOAD_CAP_MAX)


def autoscale(master: Master, now: float) -> None:
    """Each pool's size from its queues' load (supervisor/scaling.py decides)."""
    cap = load_cap(master.workforce.pools.values())
    try:
        loads = master.store.queue_load(master.settings.served_queues(), now, cap)
    except StoreError as exc:
        log.warning("autoscaling: %s", exc)
        return
    master.queued_estimate = sum(load.queued for load in loads.values())
    master.queued_capped = any(load.capped for load in loads.values())
    oldest = min((q.oldest_ready for q in loads.values() if q.oldest_ready), default=None)
    master.oldest_ready_age = None if oldest is None else max(now - oldest, 0.0)
    if master.phase is not Phase.RUNNING:
        return
    mono = master.clock.monotonic()
    for name, pool in master.workforce.pools.items():
        mine = [loads[queue] for queue in pool.queues if queue in loads]
        oldest = min((q.oldest_ready for q in mine if q.oldest_ready), default=None)
        workers = master.workforce.live(name)
        busy = sum(1 for w in workers if w.inflight)
        load = Load(
            ready=sum(q.ready for q in mine),
            oldest_ready_age=None if oldest is None else max(now - oldest, 0.0),
            mean_runtime=master.workforce.pool_runtime.get(name),
            busy=busy,
            idle=len(workers) - busy,
            idle_expired=master.workforce.idle_longer_than(name, pool.idle_timeout),
            since_change=mono - master.last_change.get(name, mono),
        )
        current = master.workforce.targets[name]
        decision = decide(current, load, Scaling.of(pool, master.bounds.get(name)))
        if decision.target == current:
            continue
        log.info("pool %s: %s", name, decision.reason)
        master.workforce.targets[name] = decision.target
        master.last_change[name] = mono
        if decision.target > current:
            master.workforce.spawn_workers()
        else:
            master.workforce.shrink(name, idle_only=True)
