"""What the master says about itself: STATUS= for systemd, and its node's info.

`status_line` is the line systemd shows (`systemctl status jobd`) and the
heartbeat sends: `3/8 busy, 120 queued (oldest 35s), 1.2k done/min, 2
failed/min`. `node_info` is what `jobd status` shows of this node, stored
with each heartbeat. Both are built from what the workforce, the pool sizes
and the last queue count say; neither changes anything.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import psutil

from jobd.settings import PoolSpec, Settings
from jobd.supervisor.autoscaler import QueueFigures
from jobd.supervisor.sizes import PoolSizes
from jobd.supervisor.workforce import Workforce
from jobd.units import format_duration


class Rates:
    """Jobs done and failed per minute, from the master's counters sampled each heartbeat."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int, int]] = deque()

    def sample(self, mono: float, counters: dict[str, int]) -> None:
        failed = counters["failed"]
        self._samples.append((mono, counters["succeeded"] + failed, failed))
        while len(self._samples) > 2 and mono - self._samples[1][0] >= self.WINDOW:
            self._samples.popleft()

    def per_minute(self) -> tuple[float | None, float | None]:
        if len(self._samples) < 2:
            return None, None
        (t0, done0, failed0), (t1, done1, failed1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return None, None
        scale = 60.0 / (t1 - t0)
        return (done1 - done0) * scale, (failed1 - failed0) * scale


def short(number: float) -> str:
    """120 -> "120", 1234 -> "1.2k", 2500000 -> "2.5M"."""
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if number >= size:
            return f"{number / size:.1f}{unit}"
    return f"{number:.0f}"


def status_line(
    workforce: Workforce,
    sizes: PoolSizes,
    queues: QueueFigures,
    rates: Rates,
    notes: list[str],
) -> str:
    """`3/8 busy, 120 queued (oldest 35s), 1.2k done/min, 2 failed/min[, notes...]`."""
    parts = []
    pools = workforce.pools
    for name in pools:
        workers = [w for w in workforce.crew.pool_workers(name) if not w.standby]
        busy = sum(1 for w in workers if w.inflight)
        size = len(workforce.live(name))
        text = f"{busy}/{size} busy" if len(pools) == 1 else f"{name} {busy}/{size} busy"
        target = sizes.target(name)
        if target != size:
            text += f" (target {target})"
        parts.append(text)
    if queues.queued is not None:
        more = "+" if queues.capped else ""
        queued = f"{short(queues.queued)}{more} queued"
        if queues.oldest_ready_age is not None and queues.queued:
            queued += f" (oldest {format_duration(queues.oldest_ready_age)})"
        parts.append(queued)
    done, failed = rates.per_minute()
    if done is not None and failed is not None:
        parts.append(f"{short(done)} done/min, {short(failed)} failed/min")
    return ", ".join(parts + notes)


def pools(specs: Iterable[PoolSpec]) -> str:
    """`pool default serves default,mail with 2-8 workers; ...` (the start-up line)."""
    return "; ".join(
        f"pool {p.name} serves {','.join(p.queues)} with {p.min_workers}-{p.max_workers} workers"
        for p in specs
    )


def title(workforce: Workforce, queues: QueueFigures) -> str:
    """The master's process title."""
    queued = "?" if queues.queued is None else f"{queues.queued}{'+' if queues.capped else ''}"
    return f"jobd: master [{len(workforce.workers)} workers, {queued} queued]"


def node_info(
    phase: str,
    settings: Settings,
    workforce: Workforce,
    sizes: PoolSizes,
    counters: dict[str, int],
) -> dict[str, Any]:
    """What `jobd status` shows about this node."""
    workers = []
    for worker in sorted(workforce.workers.values(), key=lambda w: w.slot):
        current = worker.current
        if not worker.booted:
            state = "booting"
        elif worker.retiring or worker.kill_reason is not None:
            state = "stopping"
        else:
            state = "busy" if current else "idle"
        workers.append(
            {
                "slot": worker.slot,
                "pid": worker.pid,
                "generation": worker.generation,
                "state": state,
                "job": None if current is None else current.id,
                "routine": None if current is None else current.routine,
                "rss": _rss(worker.pid),
                "jobs_done": worker.jobs_done,
            }
        )
    return {
        "phase": phase,
        "generation": workforce.generation,
        "queues": list(settings.served_queues()),
        "pools": [
            {
                "name": name,
                "queues": list(pool.queues),
                "workers": len(workforce.live(name)),
                "target": sizes.target(name),
                "min_workers": sizes.bounds(name)[0],
                "max_workers": sizes.bounds(name)[1],
            }
            for name, pool in workforce.pools.items()
        ],
        "counters": dict(counters),
        "workers": workers,
    }


def _rss(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None
