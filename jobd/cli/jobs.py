"""`jobd enqueue` and `jobd jobs list/show/retry/cancel`: adding jobs, and acting on one."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from jobd import exitcodes
from jobd.cli.common import UsageError, open_client
from jobd.cli.output import age, local_time, print_json, print_table, seconds, size
from jobd.client import JobSpec, UnknownRoutine, run_at, unknown_routine_message
from jobd.records import Job


def enqueue(args: argparse.Namespace) -> int:
    job_args = _json_arg(args.args, "args", list)
    job_kwargs = _json_arg(args.kwargs, "kwargs", dict)
    try:
        run_at(0.0, args.delay, args.at)  # validate before touching the store
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    # The name is checked against the catalog the workers registered, never by
    # importing it here: that would run code from the working directory.
    with open_client(args, check_routines=not args.no_check) as client:
        try:
            # A JobSpec: --kwargs are the routine's alone, even one named `queue`.
            spec = JobSpec(
                args.routine,
                job_args,
                job_kwargs,
                queue=args.queue,
                priority=args.priority,
                delay=args.delay,
                at=args.at,
                unique_key=args.unique_key,
                max_attempts=args.max_attempts,
            )
            (job,) = client.enqueue_many([spec])
        except UnknownRoutine as exc:
            raise UsageError(
                unknown_routine_message(exc.name, exc.anything_registered, "--no-check")
            ) from None
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    if args.json:
        print_json(job.to_json())
    else:
        print(job.id)
    return exitcodes.OK


def jobs_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    with open_client(args) as client:
        found = client.list(
            state=args.state, queue=args.queue, routine=args.routine, limit=args.limit
        )
    if args.json:
        print_json([job.to_json() for job in found])
        return exitcodes.OK
    now = time.time()
    print_table(
        ["id", "state", "routine", "queue", "attempts", "enqueued", "finished", "error"],
        [
            [
                job.id,
                job.state,
                job.routine,
                job.queue,
                f"{job.attempts}/{job.max_attempts}",
                age(job.enqueued_at, now),
                age(job.finished_at, now),
                _short_error(job),
            ]
            for job in found
        ],
    )
    return exitcodes.OK


def _attempts(job: Job) -> str:
    """Counted over allowed, and the runs when they differ (a drain's put-back and a
    manual retry run a job without counting toward max_attempts)."""
    counted = f"{job.attempts}/{job.max_attempts}"
    return counted if job.runs == job.attempts else f"{counted} (runs {job.runs})"


def _short_error(job: Job) -> str | None:
    if job.error_type is None:
        return None
    text = f"{job.error_type}: {job.error_message or ''}".strip()
    return text if len(text) <= 60 else text[:57] + "..."


def jobs_show(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        job = client.get(args.id)
        attempts = client.attempts(args.id)
    if args.json:
        print_json({**job.to_json(), "attempts_detail": [a.to_json() for a in attempts]})
        return exitcodes.OK
    fields = [
        ("id", job.id),
        ("routine", job.routine),
        ("queue", job.queue),
        ("state", job.state),
        ("priority", job.priority),
        ("attempts", _attempts(job)),
        ("args", json.dumps(job.args)),
        ("kwargs", json.dumps(job.kwargs)),
        ("result", json.dumps(job.result) if job.result is not None else None),
        ("error", _short_error(job)),
        ("unique key", job.unique_key),
        ("enqueued", local_time(job.enqueued_at)),
        ("run at", local_time(job.run_at)),
        ("started", local_time(job.started_at)),
        ("finished", local_time(job.finished_at)),
        ("node", job.node_id),
        ("cancel requested", "yes" if job.cancel_requested else None),
    ]
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        if value is not None:
            print(f"{name.ljust(width)}  {value}")
    if attempts:
        print()
        print_table(
            ["attempt", "outcome", "started", "duration", "cpu", "peak rss", "worker pid", "error"],
            [
                [
                    a.attempt,
                    a.outcome,
                    local_time(a.started_at),
                    seconds(None if a.started_at is None else a.finished_at - a.started_at),
                    seconds(a.cpu_seconds),
                    size(a.peak_rss),
                    a.worker_pid,
                    None if a.error_type is None else f"{a.error_type}: {a.error_message}"[:80],
                ]
                for a in attempts
            ],
        )
    return exitcodes.OK


def jobs_retry(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        job = client.retry(args.id)
    _report(args, job, f"job {job.id} queued again")
    return exitcodes.OK


def jobs_cancel(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        job = client.cancel(args.id)
    if job.state == "cancelled":
        _report(args, job, f"job {job.id} cancelled")
    else:
        _report(args, job, f"job {job.id} is running: its master will stop it")
    return exitcodes.OK


def _report(args: argparse.Namespace, job: Job, text: str) -> None:
    if args.json:
        print_json(job.to_json())
    else:
        print(text)


def _json_arg(text: str, name: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--{name} is not valid JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"--{name} is nested too deeply to be read") from None
    if not isinstance(value, kind):
        expected = "array" if kind is list else "object"
        raise UsageError(f"--{name} must be a JSON {expected}, not {type(value).__name__}")
    return value
