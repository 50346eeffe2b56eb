"""Rows of the `jobs` table to records, and new jobs to rows."""

from __future__ import annotations

import json
from typing import Any

from jobd.records import Job, JobState, NewJob, loads_or_none


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
