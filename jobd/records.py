"""The domain records: the vocabulary every layer of jobd shares.

Jobs, attempts, claims and settles, the states a job moves through, and
the records that status, health and the scheduler read. Plain, typed and
stdlib-only: the store, the master, the worker, the wire and the client
all import these, and this module imports none of them.

Job states:

    queued ──claim──> running ──> succeeded | failed | cancelled
      ^                  │
      └──── retry ───────┘   (and `jobd jobs retry` from failed/cancelled)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC, the form `--json` output uses."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Job:
    """One job as stored (a plain record: enqueue_many builds one per job, and a
    frozen dataclass costs 6 us more to build)."""

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
    # Runs so far, counted or not: the attempt number of the latest (0 if none).
    runs: int = 0

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


@dataclass(slots=True)
class NewJob:
    """A job to insert; arguments already encoded as JSON text (a plain slotted
    record, like Job: built once per job on the bulk enqueue path)."""

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

    `attempt` is the job's run number (`jobs.runs`): it grows at every claim
    and is never given back, so it names this run alone, in the `attempts`
    table and as the token a settle must match. `counted` is the job's count
    toward `max_attempts` with this run (`jobs.attempts`): an uncounted
    put-back gives it back and `jobd jobs retry` resets it, so it may lag.

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
    counted: int  # the count toward max_attempts: what retries and their backoff go by


@dataclass(frozen=True)
class ClaimRequest:
    """Jobs one pool may take: up to `limit` from `queues`, shared by `weights` if given."""

    queues: tuple[str, ...]
    limit: int
    weights: tuple[float, ...] | None = None


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


@dataclass(slots=True)
class EnqueueResult:  # plain and slotted: one per job on the bulk path
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


LIMIT_OUTCOMES = ("time_limit_exceeded", "memory_limit_exceeded", "soft_timeout")


@dataclass(frozen=True)
class RoutineStats:
    """The performance record of one routine over a window of attempts."""

    routine: str
    runs: int
    succeeded: int
    outcomes: dict[str, int]
    p50: float | None
    p95: float | None
    max_duration: float | None
    peak_rss: int | None
    cpu_seconds: float

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.runs if self.runs else 0.0

    @property
    def limit_violations(self) -> int:
        return sum(self.outcomes.get(outcome, 0) for outcome in LIMIT_OUTCOMES)

    def to_json(self) -> dict[str, Any]:
        return {
            "routine": self.routine,
            "runs": self.runs,
            "succeeded": self.succeeded,
            "success_rate": round(self.success_rate, 4),
            "p50_seconds": self.p50,
            "p95_seconds": self.p95,
            "max_seconds": self.max_duration,
            "peak_rss": self.peak_rss,
            "cpu_seconds": round(self.cpu_seconds, 6),
            "limit_violations": self.limit_violations,
            "outcomes": self.outcomes,
        }


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil without float surprises
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class QueueLoad:
    """What is waiting in one queue, counted up to a cap (an index range, never a scan)."""

    queue: str
    queued: int  # all queued, delayed ones included
    ready: int  # run_at has come
    oldest_ready: float | None  # run_at of the longest-waiting ready job
    capped: bool  # the counts stopped at the cap


RESCUED = "rescued_at"  # in a node's info: when another node declared it dead


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

    @property
    def rescued_at(self) -> float | None:
        """When another node declared this one dead, unless it came back since."""
        value = self.info.get(RESCUED)
        return float(value) if isinstance(value, int | float) else None

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


@dataclass(frozen=True)
class Pulse:
    """What a heartbeat found: the node's previous heartbeat, and whether another
    node had marked it stopped (rescued its jobs) since."""

    previous: float
    at: float  # this heartbeat, on the clock the store judges liveness by
    was_stopped_at: float | None


@dataclass(frozen=True)
class ScheduleState:
    """A stored schedule: its definition and how far firing it has got."""

    name: str
    definition: dict[str, Any]  # jobd.schedule.Schedule.definition()
    defined_at: float  # when this definition was first stored
    fired_until: float  # fires up to here are handled (enqueued, or skipped as too old)
    next_fire_at: float | None
    last_fire_at: float | None
    last_job_id: int | None
    last_job_state: str | None  # the last fire's job now; None before any fire or once deleted


@dataclass(frozen=True)
class Fire:
    """One fire of a schedule to insert, and the job it enqueues."""

    schedule: str
    fire_at: float
    job: NewJob


@dataclass(frozen=True)
class ScheduleProgress:
    """A schedule's cursor after a scheduler pass, and its next fire (for people)."""

    name: str
    fired_until: float
    next_fire_at: float | None


@dataclass(frozen=True)
class FiredJob:
    """A fire this call inserted (not one another master had), and its job."""

    schedule: str
    fire_at: float
    job_id: int
    queue: str


# Attempt outcomes that are not failures of the job's code or limits.
NOT_FAILURES = ("succeeded", "cancelled", "interrupted")


@dataclass(frozen=True)
class HealthFacts:
    """What `jobd health` judges, read in one transaction."""

    nodes: list[NodeInfo]  # not stopped (live or stale)
    oldest_ready: dict[str, float]  # per queue: run_at of its oldest ready job
    orphaned: list[tuple[int, int | None]]  # running jobs whose node is dead: (job, node)
    orphaned_count: int
    attempts: int  # attempts that finished in the window
    failures: int  # of which ended in an outcome outside NOT_FAILURES
    # Nodes another node declared dead (and rescued) in the window, that have
    # neither come back nor been replaced by a newer node of their name on their host.
    lost: list[NodeInfo] = field(default_factory=list)


def loads_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)
