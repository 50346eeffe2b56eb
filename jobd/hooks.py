"""Lifecycle hooks an application registers; they run in the worker processes.

    class Metrics(jobd.Hooks):
        def job_processed(self, job: jobd.JobContext, result: object) -> None:
            statsd.incr(f"jobs.{job.routine}.ok")

    jobd.add_hooks(Metrics())   # in a module listed in `modules`

The seeds' events map to methods: `job.processing` -> `job_processing`,
`job.processed` -> `job_processed`, `job.failed` -> `job_failed`; plus
`worker_boot`. Hooks run in the order they were added.

`job_failed` also runs for attempts that ended outside the job (a hard
limit, a cancel, a kill, a stop), with a `jobd.JobKilled`, in a child of
the worker template: the worker that ran the job is gone (worker/aftermath.py).
An attempt lost with its whole node gets them from the template of the node
that rescues it (supervisor/duties.py), with the outcome `lost`.

Errors: an exception in `worker_boot` fails the worker's boot (the master
reports it); in `job_processing` it fails the attempt as if the job had
raised it; in `job_processed` and `job_failed` it is logged and the job's
outcome stands.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerInfo:
    """The worker a hook runs in."""

    slot: int
    pid: int
    generation: int


@dataclass(frozen=True)
class JobContext:
    """The job running now; `jobd.current_job()` inside a routine.

    `attempt` is the job's attempt number: it names this run alone (as in
    `jobd jobs show` and the journal's JOBD_ATTEMPT) and never repeats. It
    counts every run, also those that did not count toward `max_attempts`
    (a run a drain interrupted, the runs before a `jobd jobs retry`), so it
    may exceed `max_attempts`.
    """

    id: int
    routine: str
    queue: str
    attempt: int
    max_attempts: int
    enqueued_at: float
    worker: WorkerInfo


class Hooks:
    """Base class: override the methods you need; each default does nothing."""

    def worker_boot(self, worker: WorkerInfo) -> None:
        """A worker has started and imported `modules`; before its first job."""

    def job_processing(self, job: JobContext) -> None:
        """A job is about to run (seeds: `job.processing`)."""

    def job_processed(self, job: JobContext, result: object) -> None:
        """A job returned `result` (seeds: `job.processed`)."""

    def job_failed(self, job: JobContext, error: BaseException) -> None:
        """An attempt raised `error`; it may still be retried (seeds: `job.failed`)."""


_HOOKS: list[Hooks] = []
_CURRENT: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "jobd_current_job", default=None
)


def add_hooks(hooks: Hooks) -> Hooks:
    """Register a `Hooks` instance for this process's workers; returns it."""
    if not isinstance(hooks, Hooks):
        raise TypeError(f"{hooks!r} is not a jobd.Hooks instance")
    _HOOKS.append(hooks)
    return hooks


def registered_hooks() -> tuple[Hooks, ...]:
    return tuple(_HOOKS)


def current_job() -> JobContext | None:
    """The job this worker is running, or None outside a job."""
    return _CURRENT.get()


def set_current_job(job: JobContext | None) -> None:
    _CURRENT.set(job)
