"""Rows of the store's tables to records, and new jobs to rows.

Pure (no SQLAlchemy): the SQL store's statement modules and the in-memory
store (memory.py) share these, so both build their records the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from jobd.records import Job, JobState, NewJob, RoutineStats, loads_or_none, percentile

# Seconds a stopped node's routine registrations are kept (store/catalog.py):
# a node declared dead may come back, and registers again only when it reloads.
KEEP_STOPPED = 86_400.0


def insert_row(job: NewJob) -> dict[str, Any]:
    return {
        "routine": job.routine,
        "queue": job.queue,
        "state": "queued",
        "priority": job.priority,
        "args": job.args_json,
        "kwargs": job.kwargs_json,
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "unique_key": job.unique_key,
        "enqueued_at": job.enqueued_at,
        "run_at": job.run_at,
        "cancel_requested": False,
    }


INSERT_NAMES = (
    "routine", "queue", "state", "priority", "args", "kwargs", "attempts", "max_attempts",
    "unique_key", "enqueued_at", "run_at", "cancel_requested",
)  # fmt: skip


def insert_tuple(job: NewJob) -> tuple[Any, ...]:
    return (
        job.routine, job.queue, "queued", job.priority, job.args_json, job.kwargs_json, 0,
        job.max_attempts, job.unique_key, job.enqueued_at, job.run_at, False,
    )  # fmt: skip


_QUEUED = JobState.QUEUED.value  # an enum member's .value is a descriptor call


def new_job_record(job_id: int, job: NewJob) -> Job:
    args, kwargs = job.decoded or (json.loads(job.args_json), json.loads(job.kwargs_json))
    return Job(
        id=job_id,
        routine=job.routine,
        queue=job.queue,
        state=_QUEUED,
        priority=job.priority,
        args=args,
        kwargs=kwargs,
        attempts=0,
        max_attempts=job.max_attempts,
        result=None,
        error_type=None,
        error_message=None,
        unique_key=job.unique_key,
        enqueued_at=job.enqueued_at,
        run_at=job.run_at,
        started_at=None,
        finished_at=None,
        node_id=None,
        cancel_requested=False,
    )


def job_from_row(row: Any) -> Job:
    return Job(
        id=row.id,
        routine=row.routine,
        queue=row.queue,
        state=row.state,
        priority=row.priority,
        args=json.loads(row.args),
        kwargs=json.loads(row.kwargs),
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        result=loads_or_none(row.result),
        error_type=row.error_type,
        error_message=row.error_message,
        unique_key=row.unique_key,
        enqueued_at=row.enqueued_at,
        run_at=row.run_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        node_id=row.node_id,
        cancel_requested=bool(row.cancel_requested),
        runs=row.runs,
    )


# (routine, outcome, started_at, finished_at, peak_rss, cpu_seconds) of one attempt
AttemptFigures = tuple[str, str, float | None, float, int | None, float | None]


def routine_stats(rows: Iterable[AttemptFigures]) -> list[RoutineStats]:
    """Per routine, by name: the figures of the attempts in `rows`."""
    durations: dict[str, list[float]] = {}
    outcomes: dict[str, dict[str, int]] = {}
    peaks: dict[str, int] = {}
    cpu: dict[str, float] = {}
    for name, outcome, started, finished, rss, seconds in rows:
        counts = outcomes.setdefault(name, {})
        counts[outcome] = counts.get(outcome, 0) + 1
        if started is not None:
            durations.setdefault(name, []).append(max(finished - started, 0.0))
        if rss is not None:
            peaks[name] = max(peaks.get(name, 0), rss)
        cpu[name] = cpu.get(name, 0.0) + (seconds or 0.0)
    stats = []
    for name in sorted(outcomes):
        ordered = sorted(durations.get(name, []))
        counts = outcomes[name]
        stats.append(
            RoutineStats(
                routine=name,
                runs=sum(counts.values()),
                succeeded=counts.get("succeeded", 0),
                outcomes=counts,
                p50=percentile(ordered, 0.5),
                p95=percentile(ordered, 0.95),
                max_duration=ordered[-1] if ordered else None,
                peak_rss=peaks.get(name),
                cpu_seconds=cpu.get(name, 0.0),
            )
        )
    return stats


def definition_text(definition: dict[str, Any]) -> str:
    """One canonical text per schedule definition, so "changed" is a string comparison."""
    return json.dumps(definition, sort_keys=True, separators=(",", ":"))
