"""The master's periodic duties as a node: heartbeat, status, rescue, cancels.

A rerun happens only when the run that held a job is provably dead, and
there are two proofs:

- on its own host, a node is dead when its master's pid no longer exists
  (or now belongs to a younger process), so a restarted master puts the
  running jobs of its earlier incarnations (same host name, same node name)
  back at once instead of waiting for a timeout;
- anywhere, a node is dead when its heartbeat is older than
  `store.node_timeout`: every heartbeat, each master rescues such nodes, on
  any host (the store makes sure that happens once: store/nodes.py).

Nodes with other names on the same host are treated as other hosts (the
heartbeat rule): several masters may share a host name but not a pid
namespace (containers), and a pid is only proof inside its own namespace.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psutil

from jobd.records import Claim, Pulse, Settle
from jobd.store.contract import StoreError
from jobd.supervisor.outcomes import after_attempt, death_attempt
from jobd.units import format_duration

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


def node_name(master: Master) -> str:
    return master.settings.jobd.node_name or master.hostname


def rescue_dead_local_nodes(master: Master, now: float) -> None:
    """Earlier incarnations of this node whose master pid is gone: rescued at once."""
    name = node_name(master)
    for other in master.store.nodes():
        if other.id == master.node_id or (other.hostname, other.name) != (master.hostname, name):
            continue
        if process_alive(other.pid, other.started_at):
            continue
        why = f"node {other.id} (master pid {other.pid}) died while the job ran"
        settles = master.store.rescue_node(other.id, now, _decider(master, other.id, why, now))
        log.warning(
            "node %s (pid %s) is dead: %d of its running jobs put back or failed",
            other.id,
            other.pid,
            len(settles),
        )
        master.mark_ready()


def rescue_stale_nodes(master: Master, now: float) -> None:
    """Nodes, on any host, whose heartbeat is older than `store.node_timeout`."""
    timeout = master.settings.store.node_window()
    for other in master.store.dead_nodes(now, timeout, exclude=master.node_id):
        why = (
            f"node {other.id} ({other.name} on {other.hostname}, master pid {other.pid}) "
            f"stopped heartbeating for over {format_duration(timeout)} while the job ran"
        )
        settles = master.store.rescue_node(
            other.id, now, _decider(master, other.id, why, now), timeout=timeout
        )
        if not settles:  # it held nothing, or another node got to it first
            log.info(
                "node %s (%s on %s) has not heartbeated for over %s: dead",
                other.id, other.name, other.hostname, format_duration(timeout),
            )  # fmt: skip
            continue
        log.warning(
            "node %s (%s on %s) has not heartbeated for over %s: %d of its running jobs "
            "put back or failed",
            other.id, other.name, other.hostname, format_duration(timeout), len(settles),
        )  # fmt: skip
        master.mark_ready()


def _decider(master: Master, node_id: int, why: str, now: float) -> Callable[[Claim], Settle]:
    """Where each job of a dead node goes: its attempt was lost; retry or fail by policy."""

    def decide(claim: Claim) -> Settle:
        attempt = death_attempt(claim, node_id, None, None, now, "lost", why)
        return after_attempt(
            claim,
            attempt,
            master.workforce.policy(claim.routine),
            now,
            master.rand.random(),
            failed_hook=claim.routine in master.workforce.failed_hooks,
        )

    return decide


def _noticed_gap(master: Master, pulse: Pulse | None) -> None:
    """A heartbeat after a long silence: other nodes may have taken this node's jobs.

    Nothing to undo: this node's settles apply only to jobs still running on it
    in the attempt they report, so a job rescued and run elsewhere keeps that
    run's outcome; this node's late results are recorded as attempts only.
    """
    if pulse is None:
        return
    timeout = master.settings.store.node_window()
    if pulse.was_stopped_at is not None:
        log.warning(
            "node %s was declared dead by another node (no heartbeat for over %s) and is "
            "live again: the jobs it was running were put back and may run twice",
            master.node_id, format_duration(timeout),
        )  # fmt: skip
    elif pulse.at - pulse.previous > timeout:
        log.warning(
            "node %s could not record a heartbeat for %s (over store.node_timeout, %s): "
            "other nodes may have put its running jobs back",
            master.node_id, format_duration(pulse.at - pulse.previous), format_duration(timeout),
        )  # fmt: skip


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
        _noticed_gap(master, master.store.heartbeat(master.node_id, now, node_info(master)))
        _cancel_requested(master, master.store.cancel_requests(master.node_id))
        rescue_dead_local_nodes(master, now)
        rescue_stale_nodes(master, now)
    except StoreError as exc:
        log.warning("heartbeat: %s", exc)
    master.check_listener()  # its own connection: checked even when the store is not
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
        "queues": list(master.settings.served_queues()),
        "pools": [
            {
                "name": name,
                "queues": list(pool.queues),
                "workers": len(master.workforce.live(name)),
                "target": master.workforce.targets.get(name),
                "min_workers": master.bounds.get(name, (pool.min_workers, pool.max_workers))[0],
                "max_workers": master.bounds.get(name, (pool.min_workers, pool.max_workers))[1],
            }
            for name, pool in master.workforce.pools.items()
        ],
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
