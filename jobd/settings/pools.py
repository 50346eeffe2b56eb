"""Pools: groups of workers, each serving its own queues with its own bounds.

    [pools.emails]
    queues = ["emails"]
    min_workers = 1
    max_workers = 2

    [pools.background]
    queues = ["reports", "exports"]
    weights = [3, 1]          # or { reports = 3, exports = 1 }
    max_workers = 6

Each pool has its own workers, so a flood in one pool's queues cannot
starve another's. Within a pool, jobs are claimed in priority order, then
`run_at`, then id, across its queues; with `weights` each queue gets that
share of the claims while it has ready jobs (a flood in `reports` leaves
`exports` a quarter). A key a pool does not set comes from `[pool]`; a
config with no `[pools]` has one pool, `default`, made of `[pool]`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

POOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEFAULT_POOL = "default"
# The keys a [pools.NAME] table may set; all but `weights` default to [pool]'s.
POOL_KEYS = (
    "queues",
    "weights",
    "min_workers",
    "max_workers",
    "scale_up_threshold",
    "clear_within",
    "max_step",
    "scale_interval",
    "scale_cooldown",
    "hysteresis",
    "idle_timeout",
)


@dataclass(frozen=True)
class PoolSpec:
    name: str
    queues: tuple[str, ...]
    weights: tuple[float, ...] | None
    min_workers: int
    max_workers: int
    scale_up_threshold: float
    clear_within: float
    max_step: int
    scale_interval: float
    scale_cooldown: float
    hysteresis: float
    idle_timeout: float

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in ("name", *POOL_KEYS)}


def default_pool(section: Any) -> PoolSpec:
    """The one pool of a config without [pools]: [pool] itself."""
    values = {key: getattr(section, key) for key in POOL_KEYS if key != "weights"}
    return PoolSpec(name=DEFAULT_POOL, weights=None, **values)


def parse_pools(
    tables: object, section: Any, parsers: Mapping[str, Callable[[object], Any]], where: str
) -> tuple[PoolSpec, ...]:
    """[pools.NAME] tables, each key validated by [pool]'s parser for it."""
    if not isinstance(tables, dict):
        raise ValueError(f"{where}: [pools] must hold tables like [pools.emails]")
    pools = []
    owner: dict[str, str] = {}
    for name, table in tables.items():
        here = f"{where}: pools.{name}"
        if not POOL_NAME.fullmatch(name):
            raise ValueError(f"{here}: {name!r} is not a pool name (letters, digits, '_-')")
        if not isinstance(table, dict):
            raise ValueError(f"{here} must be a table")
        unknown = set(table) - set(POOL_KEYS)
        if unknown:
            raise ValueError(
                f"{here}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(POOL_KEYS)})"
            )
        if "queues" not in table:
            raise ValueError(f"{here}: needs `queues`")
        values = {key: getattr(section, key) for key in POOL_KEYS if key != "weights"}
        for key, raw in table.items():
            if key == "weights":
                continue
            try:
                values[key] = parsers[key](raw)
            except ValueError as exc:
                raise ValueError(f"{here}.{key}: {exc}") from None
        queues = values["queues"]
        weights = _weights(table.get("weights"), queues, here)
        for queue in queues:
            if queue in owner:
                raise ValueError(
                    f"{here}: queue {queue!r} is already served by pool {owner[queue]!r}"
                )
            owner[queue] = name
        if values["max_workers"] < values["min_workers"]:
            raise ValueError(
                f"{here}: max_workers ({values['max_workers']}) is below "
                f"min_workers ({values['min_workers']})"
            )
        pools.append(PoolSpec(name=name, weights=weights, **values))
    return tuple(pools)


def _weights(raw: object, queues: tuple[str, ...], where: str) -> tuple[float, ...] | None:
    if raw is None:
        return None
    if isinstance(raw, dict):
        unknown = set(raw) - set(queues)
        if unknown:
            raise ValueError(f"{where}.weights: {sorted(unknown)[0]!r} is not one of its queues")
        raw = [raw.get(queue, 1) for queue in queues]
    if not isinstance(raw, list) or len(raw) != len(queues):
        raise ValueError(f"{where}.weights: give one weight per queue ({len(queues)})")
    weights = []
    for value in raw:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"{where}.weights: {value!r} is not a positive number")
        weights.append(float(value))
    return tuple(weights)


def from_json(data: Mapping[str, Any]) -> PoolSpec:
    values = dict(data)
    values["queues"] = tuple(values["queues"])
    if values.get("weights") is not None:
        values["weights"] = tuple(values["weights"])
    return PoolSpec(**values)
