"""The store contract: what jobd asks of its database, method by method.

The master, the client and the CLI see only this module; the SQLAlchemy
implementation (`jobd.store.sql`) keeps every statement and every dialect
difference to itself. Records here are plain, typed and stdlib-only, so the
supervisor can use them without importing SQLAlchemy.

Job states:

    queued ──claim──> running ──> succeeded | failed | cancelled
      ^                  │
      └──── retry ───────┘   (and `jobd jobs retry` from failed/cancelled)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class StoreError(Exception):
    """The database cannot do what was asked (unreachable, locked too long, ...)."""


class SchemaError(StoreError):
    """The schema is missing or older than this jobd: run `jobd db upgrade`."""


class JobNotFound(StoreError):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"no job with id {job_id}")
        self.job_id = job_id


class InvalidTransition(StoreError):
    """`retry` or `cancel` asked of a job in a state that does not allow it."""


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC, the form `--json` output uses."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Job:
    """One job as stored."""

    id: int
    routine: str
    queue: str
    state: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    attempts: int
    max_attempts: int
    result: Any
    error_type: str | None
    error_message: str | None
    unique_key: str | None
    enqueued_at: float
    run_at: float
    started_at: float | None
    finished_at: float | None
    node_id: int | None
    cancel_requested: bool

    @property
    def error(self) -> dict[str, str | None] | None:
        if self.error_type is None:
            return None
        return {"type": self.error_type, "message": self.error_message}

    def to_json(self) -> dict[str, Any]:
        """Stable keys for `--json` output."""
        return {
            "id": self.id,
            "routine": self.routine,
            "queue": self.queue,
            "state": self.state,
            "priority": self.priority,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "args": self.args,
            "kwargs": self.kwargs,
            "result": self.result,
            "error": self.error,
            "unique_key": self.unique_key,
            "enqueued_at": iso(self.enqueued_at),
            "run_at": iso(self.run_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "node_id": self.node_id,
            "cancel_requested": self.cancel_requested,
        }


@dataclass(frozen=True)
class NewJob:
    """A job to insert; arguments already encoded as JSON text."""

    routine: str
    queue: str
    priority: int
    args_json: str
    kwargs_json: str
    run_at: float
    enqueued_at: float
    max_attempts: int
    unique_key: str | None = None
    # The decoded arguments, when the producer has them: the returned Job
    # record is built from these instead of parsing the JSON back.
    decoded: tuple[list[Any], dict[str, Any]] | None = None


class Claim(NamedTuple):
    """A job the master took for one of its workers (its attempt already counted).

    A NamedTuple: built straight from the row the claim statement returns.
    """

    id: int
    routine: str
    queue: str
    priority: int
    attempt: int
    max_attempts: int
    args_json: str
    kwargs_json: str
    enqueued_at: float
    run_at: float


@dataclass(slots=True)
class Attempt:
    """The record of one finished attempt, as the `attempts` table keeps it.

    Hot-path records (one or two per job) are plain slotted dataclasses:
    frozen ones cost 3.2 us to build against 0.6 us.
    """

    job_id: int
    attempt: int
    routine: str
    queue: str
    node_id: int | None
    worker_pid: int | None
    started_at: float | None
    finished_at: float
    outcome: str
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    cpu_seconds: float | None = None
    peak_rss: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "outcome": self.outcome,
            "node_id": self.node_id,
            "worker_pid": self.worker_pid,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration": None
            if self.started_at is None
            else round(self.finished_at - self.started_at, 6),
            "error_type": self.error_type,
            "error_message": self.error_message,
            "traceback": self.traceback,
            "cpu_seconds": self.cpu_seconds,
            "peak_rss": self.peak_rss,
        }


@dataclass(slots=True)
class Settle:
    """Where a claimed job goes next, and the attempt to record (if it ran).

    `state` is queued (retry at `run_at`), succeeded, failed or cancelled.
    `uncount` puts the job back without counting the attempt: it never
    started (it waited in a dead worker's pipe) or a drain interrupted it.
    """

    job_id: int
    state: JobState
    attempt: Attempt | None = None
    result_json: str | None = None
    run_at: float | None = None
    uncount: bool = False
    follow_up: NewJob | None = None  # inserted in the same transaction (failed hooks)


@dataclass(frozen=True)
class EnqueueResult:
    job: Job
    created: bool  # False when a unique key matched a live job


@dataclass(frozen=True)
class QueueStats:
    queue: str
    counts: dict[str, int]
    oldest_queued_at: float | None

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "queue": self.queue,
            **{state.value: self.counts.get(state.value, 0) for state in JobState},
            "oldest_queued_age": None
            if self.oldest_queued_at is None
            else round(max(now - self.oldest_queued_at, 0.0), 3),
        }


@dataclass(frozen=True)
class NodeInfo:
    id: int
    name: str
    hostname: str
    pid: int
    started_at: float
    heartbeat_at: float
    stopped_at: float | None
    info: dict[str, Any]

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "hostname": self.hostname,
            "pid": self.pid,
            "started_at": iso(self.started_at),
            "heartbeat_age": round(max(now - self.heartbeat_at, 0.0), 3),
            "stopped_at": iso(self.stopped_at),
            **self.info,
        }


def loads_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Store(Protocol):
    """What jobd needs from a database. Every call is bounded by the store's timeout."""

    url: str

    # -- schema
    def check_schema(self) -> None:
        """Raise SchemaError unless the schema is at this jobd's revision."""

    def upgrade(self) -> tuple[str | None, str]:
        """Migrate the schema to the head revision; return (before, after)."""

    # -- producers
    def enqueue(self, jobs: list[NewJob], connection: Any = None) -> list[EnqueueResult]:
        """Insert jobs in one transaction (the caller's, if `connection` is given)."""

    def wake(self, queues: set[str], earliest_run_at: float) -> None:
        """Tell masters that jobs were enqueued (after commit)."""

    # -- the master
    def exchange(
        self, node_id: int, settles: list[Settle], queues: tuple[str, ...], limit: int, now: float
    ) -> list[Claim]:
        """Apply settles and claim up to `limit` ready jobs, in one transaction."""

    def register_node(self, name: str, hostname: str, pid: int, now: float) -> int: ...

    def heartbeat(self, node_id: int, now: float, info: dict[str, Any]) -> None: ...

    def stop_node(self, node_id: int, now: float) -> None: ...

    def rescue_node(self, node_id: int, now: float, outcome: str) -> list[Claim]:
        """Put a dead node's running jobs back; return what it held (to record)."""

    def cancel_requests(self, node_id: int) -> list[int]:
        """Running jobs of this node that someone asked to cancel."""

    def register_routines(self, catalog: dict[str, dict[str, Any]], now: float) -> None: ...

    def routine_policies(self) -> dict[str, dict[str, Any]]: ...

    # -- people and scripts
    def get_job(self, job_id: int) -> Job: ...

    def list_jobs(
        self,
        state: str | None = None,
        queue: str | None = None,
        routine: str | None = None,
        limit: int = 50,
    ) -> list[Job]: ...

    def job_attempts(self, job_id: int) -> list[Attempt]: ...

    def retry(self, job_id: int, now: float) -> Job: ...

    def cancel(self, job_id: int, now: float) -> Job: ...

    def queue_stats(self) -> list[QueueStats]: ...

    def nodes(self, include_stopped: bool = False) -> list[NodeInfo]: ...

    def close(self) -> None: ...
