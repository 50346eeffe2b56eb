"""The scaling policy: a pure function from queue load to a pool's target size.

Inputs are what the master measures (ready jobs in the pool's queues, the
age of the oldest, the recent mean runtime, busy and idle workers, how long
since the last change and how many workers have been idle past
`idle_timeout`); the output is a target size and the reason for it.

- **Demand.** The workers the load calls for: enough that no worker has
  more than `scale_up_threshold` ready jobs ahead of it, and, when runtimes
  are known, enough to clear the ready jobs within `clear_within`. Workers
  that are busy count as demand too: a pool never plans to shrink below
  what is working.
- **Grow fast.** Towards the demand, up to `max_step` workers per decision
  (a decision every `scale_interval`), and at once: no cooldown on the way
  up. A ready job older than `clear_within` adds `max_step` on its own, so
  a backlog of long jobs grows the pool even when it is short.
- **Shrink slowly, and only idle workers.** Only after `scale_cooldown`
  since the last change, only when the demand is below the current size by
  the `hysteresis` fraction (so a load hovering at a boundary does not make
  the pool flap), and only by as many workers as have been idle longer
  than `idle_timeout`; the master then retires idle workers, never busy
  ones.

These inputs come from the queue itself (the store), not from what workers
hold, unlike autoscalers that count prefetched messages; and a pool starts
at `min_workers`, not at its maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from jobd.settings import PoolSpec


@dataclass(frozen=True)
class Scaling:
    """A pool's scaling settings (see docs/settings.md)."""

    min_workers: int
    max_workers: int
    scale_up_threshold: float = 5.0
    clear_within: float = 30.0
    max_step: int = 4
    scale_cooldown: float = 10.0
    hysteresis: float = 0.25
    idle_timeout: float = 30.0

    @classmethod
    def of(cls, pool: PoolSpec, bounds: tuple[int, int] | None = None) -> Scaling:
        """A pool's scaling settings, within `bounds` (SIGTTIN/SIGTTOU move them)."""
        low, high = bounds or (pool.min_workers, pool.max_workers)
        return cls(
            min_workers=low,
            max_workers=high,
            scale_up_threshold=pool.scale_up_threshold,
            clear_within=pool.clear_within,
            max_step=pool.max_step,
            scale_cooldown=pool.scale_cooldown,
            hysteresis=pool.hysteresis,
            idle_timeout=pool.idle_timeout,
        )


@dataclass(frozen=True)
class Load:
    """What the master measured for one pool."""

    ready: int  # ready jobs in the pool's queues
    oldest_ready_age: float | None  # seconds the longest-waiting ready job has waited
    mean_runtime: float | None  # recent seconds per job, None before any ran
    busy: int
    idle: int
    idle_expired: int  # idle for longer than idle_timeout
    since_change: float  # seconds since the pool's size last changed


@dataclass(frozen=True)
class Decision:
    target: int
    reason: str


def demand(load: Load, scaling: Scaling) -> tuple[int, str]:
    """The workers the load calls for, and why (not yet clamped to the bounds)."""
    by_queue = math.ceil(load.ready / scaling.scale_up_threshold) if load.ready else 0
    want, why = by_queue, f"{load.ready} ready"
    if load.ready and load.mean_runtime:
        by_time = math.ceil(load.ready * load.mean_runtime / scaling.clear_within)
        if by_time > want:
            want = by_time
            why = f"{load.ready} ready at {load.mean_runtime:.2g}s each"
    if load.busy > want:
        want, why = load.busy, f"{load.busy} busy"
    return want, why


def decide(current: int, load: Load, scaling: Scaling) -> Decision:
    """The pool's next target size; `current` when nothing should change."""
    want, why = demand(load, scaling)
    overdue = (
        load.ready > 0
        and load.oldest_ready_age is not None
        and load.oldest_ready_age > scaling.clear_within
    )
    if overdue:
        want = max(want, current + scaling.max_step)
        why = f"oldest ready job waited {load.oldest_ready_age:.0f}s"
    want = min(max(want, scaling.min_workers), scaling.max_workers)
    if want > current:
        target = min(want, current + scaling.max_step)
        return Decision(target, f"grow {current} -> {target}: {why}")
    if current > scaling.max_workers:  # the bounds were lowered
        return Decision(scaling.max_workers, f"shrink to max_workers {scaling.max_workers}")
    if want < current:
        if load.since_change < scaling.scale_cooldown or not load.idle_expired:
            return Decision(current, "")
        if want > current * (1 - scaling.hysteresis) and want > scaling.min_workers:
            return Decision(current, "")
        step = min(current - want, scaling.max_step, load.idle_expired)
        target = current - step
        return Decision(target, f"shrink {current} -> {target}: {why}, {load.idle_expired} idle")
    return Decision(current, "")
