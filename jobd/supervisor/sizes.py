"""The running pools and each one's size, in one place: its bounds, its target and
when it last changed.

Three things change a pool's size, each through `PoolSizes`:

- the autoscaler sets a new target within the bounds (`resize`, the master
  applies its plan);
- SIGTTIN / SIGTTOU move the bounds by one worker, until the next reload
  (`nudge`, from the master's signal handling);
- a reload that takes over brings the new config's pools and bounds, and
  every target starts again at `min_workers` (`reset`, when the new
  generation takes over: reloads.py).

The workforce reads the targets to spawn and shrink, the dispatch and the
autoscaler the pools; nothing else keeps a copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from jobd.settings import PoolSpec
from jobd.supervisor.scaling import Scaling


@dataclass(slots=True)
class PoolSize:
    low: int
    high: int
    target: int
    changed_at: float  # monotonic: when the target last changed


class PoolSizes:
    def __init__(self, pools: Iterable[PoolSpec], now: float) -> None:
        self._sizes: dict[str, PoolSize] = {}
        self._pools: dict[str, PoolSpec] = {}
        self.reset(pools, now)

    @property
    def pools(self) -> Mapping[str, PoolSpec]:
        """The running generation's pools, by name."""
        return self._pools

    def reset(self, pools: Iterable[PoolSpec], now: float) -> None:
        """The configured pools and bounds, and every target back at its pool's minimum."""
        pools = list(pools)
        self._pools = {pool.name: pool for pool in pools}
        self._sizes = {
            pool.name: PoolSize(pool.min_workers, pool.max_workers, pool.min_workers, now)
            for pool in pools
        }

    def target(self, pool: str) -> int:
        size = self._sizes.get(pool)
        return 0 if size is None else size.target

    def bounds(self, pool: str) -> tuple[int, int]:
        size = self._sizes[pool]
        return size.low, size.high

    def since_change(self, pool: str, now: float) -> float:
        return now - self._sizes[pool].changed_at

    def scaling(self, pool: PoolSpec) -> Scaling:
        """The pool's scaling settings, within its current bounds."""
        return Scaling.of(pool, self.bounds(pool.name))

    def resize(self, pool: str, target: int, now: float) -> None:
        size = self._sizes[pool]
        size.target, size.changed_at = target, now

    def nudge(self, delta: int) -> list[str]:
        """Every pool's bounds up (or down) by `delta`, never below one worker;
        targets kept inside them. The pools, for the log."""
        for size in self._sizes.values():
            size.low, size.high = max(1, size.low + delta), max(1, size.high + delta)
            size.target = min(max(size.target, size.low), size.high)
        return list(self._sizes)
