"""The job flow to workers and back: jobs handed out, results taken in.

Dispatch (dispatch.py) claims jobs for free capacity and gives each to
`assign`, which picks the worker (pipelining.py) and queues its run order;
`send_assigned` writes each worker's orders in one write. A worker's `done`
comes back to `on_done`: the attempt it reports becomes an event for the
master, the routine's runtime is observed, the next job in its pipe starts,
and a worker past its job quota or `max_worker_rss` is retired.
The autoscaler's view of a pool's workers (`occupancy`) and the stopping of
jobs cancelled while they run are read and done here too.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping

from jobd.records import Claim
from jobd.settings import PoolSpec
from jobd.supervisor.autoscaler import Occupancy
from jobd.supervisor.crew import Crew
from jobd.supervisor.events import AttemptEnded
from jobd.supervisor.outcomes import attempt_from_done
from jobd.supervisor.pipelining import Runtimes, capacity, choose_worker
from jobd.supervisor.sizes import PoolSizes
from jobd.supervisor.workers import InFlight, Worker
from jobd.units import format_size
from jobd.wire import Done, run_message

log = logging.getLogger("jobd.master")

QUOTA_JITTER = 0.1


class Handout:
    def __init__(self, crew: Crew, sizes: PoolSizes) -> None:
        self.crew = crew
        self.sizes = sizes
        self.runtimes = Runtimes()
        self.outgoing: dict[Worker, list[bytes]] = {}
        self.rand = random.Random()

    @property
    def pools(self) -> Mapping[str, PoolSpec]:
        return self.sizes.pools

    def capacity(self, pool: str) -> int:
        budget = self.crew.settings.pool.pipeline_budget
        return capacity(self.crew.pool_workers(pool), self.runtimes, budget)

    def any_idle(self, pool: str) -> bool:
        return any(worker.idle for worker in self.crew.pool_workers(pool))

    def assign(self, claim: Claim, pool: str) -> bool:
        """Give `claim` to a worker of `pool` (sent by `send_assigned`); False if none may now."""
        budget = self.crew.settings.pool.pipeline_budget
        worker = choose_worker(self.crew.pool_workers(pool), claim, self.runtimes, budget)
        if worker is None:
            return False
        flight = InFlight(claim)
        clock = self.crew.clock
        if not worker.inflight:
            flight.started, flight.started_mono = clock.time(), clock.monotonic()
        worker.inflight.append(flight)
        worker.idle_since = None
        # Sent once per worker per exchange (send_assigned): one syscall, one wake-up.
        self.outgoing.setdefault(worker, []).append(run_message(claim))
        return True

    def send_assigned(self) -> None:
        for worker, messages in self.outgoing.items():
            self.crew.send(worker, b"".join(messages))
        self.outgoing.clear()

    def occupancy(self, pool: str, generation: int) -> Occupancy:
        """What the autoscaler needs to know of a pool's workers."""
        workers = self.crew.live(pool, generation)
        busy = sum(1 for w in workers if w.inflight)
        now, timeout = self.crew.clock.monotonic(), self.pools[pool].idle_timeout
        expired = sum(
            1 for w in workers
            if w.idle and w.idle_since is not None and now - w.idle_since >= timeout
        )  # fmt: skip
        return Occupancy(busy, len(workers) - busy, expired, self.runtimes.pool_mean(pool))

    def job_quota(self) -> int | None:
        """How many jobs a new worker serves before it is recycled (max_jobs_per_worker)."""
        quota = self.crew.settings.pool.max_jobs_per_worker
        if not quota:
            return None
        return max(1, round(quota * (1 + QUOTA_JITTER * (2 * self.rand.random() - 1))))

    def on_done(self, worker: Worker, done: Done) -> bool:
        """A worker reported an attempt; True if it was recycled (to be replaced)."""
        if not worker.inflight or worker.inflight[0].claim.id != done.id:
            log.error("worker %s finished job %s it was not running", worker.slot, done.id)
            return False
        flight = worker.inflight.popleft()
        attempt = attempt_from_done(flight.claim, done, self.crew.node_id, worker.pid)
        if flight.verdict is not None:  # the master killed its horse: say why
            flight.verdict.apply(attempt)
        self.crew.events.append(AttemptEnded(flight.claim, attempt, done.result))
        worker.jobs_done += 1
        elapsed = attempt.finished_at - (attempt.started_at or attempt.finished_at)
        self.runtimes.observe(flight.claim.routine, worker.pool, elapsed)
        mono = self.crew.clock.monotonic()
        if worker.inflight:
            head = worker.inflight[0]
            head.started, head.started_mono = attempt.finished_at, mono
        else:
            worker.idle_since = mono
        return self._maybe_recycle(worker, done.rss_now)

    def _maybe_recycle(self, worker: Worker, rss_now: int | None) -> bool:
        """Retire a worker gracefully after enough jobs or too much memory."""
        if worker.retiring:
            return False
        reason = None
        if worker.job_quota is not None and worker.jobs_done >= worker.job_quota:
            reason = f"served {worker.jobs_done} jobs (max_jobs_per_worker)"
        limit = self.crew.settings.pool.max_worker_rss
        if limit and rss_now is not None and rss_now > limit:
            reason = f"RSS {format_size(rss_now)} over max_worker_rss {format_size(limit)}"
        if reason is None:
            return False
        log.info("recycling worker %s (pid %s): %s", worker.slot, worker.pid, reason)
        self.crew.retire(worker)
        return True

    def cancel(self, job_ids: Iterable[int]) -> None:
        """Stop the workers running these jobs (cancelled while they ran)."""
        wanted = set(job_ids)
        for worker in list(self.crew.workers.values()):
            current = worker.current
            if current is not None and current.id in wanted and worker.kill_reason is None:
                log.info(
                    "job %s cancelled while running: stopping worker %s", current.id, worker.slot
                )
                self.crew.terminate(worker, "cancelled", "cancelled while running")
