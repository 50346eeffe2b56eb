"""The master's periodic duties as a node: heartbeat, status, rescue, cancels.

A rerun happens only when the run that held a job is provably dead. On one
host that proof is immediate: a node row whose master pid no longer exists
(or now belongs to a younger process) is dead, so a restarted master puts
that node's running jobs back at once instead of waiting for a timeout.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import psutil

from jobd.store.base import Claim, Settle, StoreError
from jobd.supervisor.outcomes import after_attempt, death_attempt

if TYPE_CHECKING:
    from jobd.supervisor.master import Master

log = logging.getLogger("jobd.master")


def process_alive(pid: int, since: float) -> bool:
    """Is `pid` still the process that was running at `since` (epoch seconds)?"""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= since + 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell: assume alive, never rescue on a guess


def rescue_dead_local_nodes(master: Master, now: float) -> None:
    for other in master.store.nodes():
        if other.id == master.node_id or other.hostname != master.hostname:
            continue
        if process_alive(other.pid, other.started_at):
            continue

        def decide(claim: Claim, node_id: int = other.id, pid: int = other.pid) -> Settle:
            attempt = death_attempt(
                claim,
                node_id,
                None,
                None,
                now,
                "lost",
                f"node {node_id} (master pid {pid}) died while the job ran",
            )
            return after_attempt(
                claim,
                attempt,
                master.workforce.policy(claim.routine),
                now,
                master.rand.random(),
                failed_hook=claim.routine in master.workforce.failed_hooks,
            )

        settles = master.store.rescue_node(other.id, now, decide)
        log.warning(
            "node %s (pid %s) is dead: %d of its running jobs put back or failed",
            other.id,
            other.pid,
            len(settles),
        )
        master.dry = False


class Rates:
    """Jobs done and failed per minute, from the master's counters sampled each heartbeat."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int, int]] = deque()

    def sample(self, mono: float, done: int, failed: int) -> None:
        self._samples.append((mono, done, failed))
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


def heartbeat(master: Master, now: float) -> None:
    """Record liveness and worker status; act on cancels; STATUS= for systemd."""
    counters = master.counters
    master.rates.sample(
        master.clock.monotonic(), counters["succeeded"] + counters["failed"], counters["failed"]
    )
    try:
        master.store.heartbeat(master.node_id, now, node_info(master))
        load = master.store.queue_load(master.settings.pool.queues, now)
        master.queued_estimate = sum(q.queued for q in load.values())
        oldest = min((q.oldest_ready for q in load.values() if q.oldest_ready), default=None)
        master.oldest_ready_age = None if oldest is None else max(now - oldest, 0.0)
        _cancel_requested(master, master.store.cancel_requests(master.node_id))
        rescue_dead_local_nodes(master, now)
        master.check_listener()
    except StoreError as exc:
        log.warning("heartbeat: %s", exc)
    master.notifier.status(master.status_line())


def _cancel_requested(master: Master, job_ids: list[int]) -> None:
    if not job_ids:
        return
    wanted = set(job_ids)
    for worker in list(master.workers.values()):
        current = worker.current
        if current is not None and current.id in wanted and worker.kill_reason is None:
            log.info("job %s cancelled while running: stopping worker %s", current.id, worker.slot)
            master.workforce.terminate(worker, "cancelled", "cancelled while running")


def node_info(master: Master) -> dict[str, Any]:
    """What `jobd status` shows about this node."""
    workers = []
    for worker in sorted(master.workers.values(), key=lambda w: w.slot):
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
        "phase": master.phase.value,
        "generation": master.workforce.generation,
        "queues": list(master.settings.pool.queues),
        "target": master.workforce.target,
        "min_workers": master.settings.pool.min_workers,
        "max_workers": master.settings.pool.max_workers,
        "counters": dict(master.counters),
        "workers": workers,
    }


def _rss(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None
