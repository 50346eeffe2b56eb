"""Which worker gets which job: idle first, then pipelines bounded by expected work.

A worker may hold more than the job it runs: further jobs wait in its pipe
("pipelining"), so a worker that finishes one no-op job finds the next
already in its socket instead of idling for a round trip through the master
and the database. Pipelining is bounded by expected work, not by count:
a job goes into a pipe only if the recent mean runtime of everything ahead
of it there, plus its own, stays under `pipeline_budget` (2 ms by default),
and new jobs go to the pipe with the least work (an idle worker first). A
job of a routine with no measured runtime yet goes only to an idle worker.
So no job can wait behind a long one, and the wait behind short ones is
bounded by the budget.

Measured (docs/architecture.md): the first rule tried, "pipeline only while
no worker is idle", never engaged with fast jobs, since a worker finishes a
no-op job faster than one master iteration and so is always idle at claim
time; every transaction then carried 1-2 jobs and the drain ran at 1,360
jobs/s. Bounding by expected work lets each transaction carry up to 16 jobs
per worker.

A claimed job that fits nowhere waits in the master (`held`) and goes to
the next worker that becomes idle.
"""

from __future__ import annotations

from jobd.records import Claim
from jobd.supervisor.workers import Worker

PIPELINE_MAX_DEPTH = 16
# What a job costs beyond its own runtime (two pipe messages, a row): a
# floor under the estimate, so even no-op routines pipeline only so deep.
PER_JOB_OVERHEAD = 0.00005
RUNTIME_SMOOTHING = 0.2


class Runtimes:
    """Recent mean runtime per routine, of all jobs, and per pool (exponentially
    smoothed), in seconds: the pipelining budget's and the autoscaler's input."""

    def __init__(self) -> None:
        self._mean: dict[str, float] = {}
        self._pools: dict[str, float] = {}
        self._typical: float | None = None

    def observe(self, routine: str, pool: str, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        self._mean[routine] = _smoothed(self._mean.get(routine), seconds)
        self._pools[pool] = _smoothed(self._pools.get(pool), seconds)
        self._typical = _smoothed(self._typical, seconds)

    def pool_mean(self, pool: str) -> float | None:
        return self._pools.get(pool)

    def expected(self, routine: str) -> float | None:
        mean = self._mean.get(routine)
        return None if mean is None else mean + PER_JOB_OVERHEAD

    def typical(self) -> float | None:
        """Expected cost of the next job, whatever its routine."""
        return None if self._typical is None else self._typical + PER_JOB_OVERHEAD

    def backlog(self, worker: Worker) -> float | None:
        """Expected seconds of work in a worker's pipe; None if any part is unknown."""
        total = 0.0
        for flight in worker.inflight:
            expected = self.expected(flight.claim.routine)
            if expected is None:
                return None
            total += expected
        return total


def _smoothed(mean: float | None, seconds: float) -> float:
    return seconds if mean is None else mean + RUNTIME_SMOOTHING * (seconds - mean)


def room(worker: Worker, runtimes: Runtimes, budget: float) -> int:
    """How many more jobs this worker may take now (see the module note)."""
    if not worker.accepting:
        return 0
    depth = len(worker.inflight)
    minimum = 1 if depth == 0 else 0
    typical = runtimes.typical()
    backlog = runtimes.backlog(worker)
    if budget <= 0 or typical is None or backlog is None:
        return minimum
    fits = int((budget - backlog) // typical) if typical > 0 else PIPELINE_MAX_DEPTH
    return max(minimum, min(fits, PIPELINE_MAX_DEPTH - depth))


def capacity(workers: list[Worker], runtimes: Runtimes, budget: float) -> int:
    return sum(room(worker, runtimes, budget) for worker in workers)


def choose_worker(
    workers: list[Worker], claim: Claim, runtimes: Runtimes, budget: float
) -> Worker | None:
    """The worker that should get `claim` now, or None to hold it in the master."""
    expected = runtimes.expected(claim.routine)
    best: Worker | None = None
    best_backlog = 0.0
    for worker in workers:
        if worker.idle:
            return worker
        if expected is None or not worker.accepting or len(worker.inflight) >= PIPELINE_MAX_DEPTH:
            continue
        backlog = runtimes.backlog(worker)
        if backlog is None or backlog + expected > budget:
            continue
        if best is None or backlog < best_backlog:
            best, best_backlog = worker, backlog
    return best
