"""Pure decisions about attempts: where a job goes after one ended.

Nothing here touches a process or the database; the master gathers the
inputs and applies the outputs, and the unit tests call these directly.
"""

from __future__ import annotations

from typing import Any

from jobd.errors import UnregisteredRoutine
from jobd.policy import Policy
from jobd.records import Attempt, Claim, JobState, NewJob, Settle
from jobd.wire import Done

FAILED_HOOK_ROUTINE = "jobd.failure:call_failed_hook"

# Outcomes that end a job at once, whatever attempts remain.
FINAL_OUTCOMES = {"succeeded": JobState.SUCCEEDED, "cancelled": JobState.CANCELLED}

# The error a worker reports for a job whose routine it did not register at
# boot: another attempt on the same code would fail the same way.
UNREGISTERED = f"{UnregisteredRoutine.__module__}.{UnregisteredRoutine.__qualname__}"


def after_attempt(
    claim: Claim,
    attempt: Attempt,
    policy: Policy,
    now: float,
    rand: float,
    result_json: str | None = None,
    failed_hook: bool = False,
) -> Settle:
    """Where the job goes after `attempt` ended with `attempt.outcome`.

    Succeeded and cancelled are final; "interrupted" (a drain or stop-now
    killed it) goes back without counting; anything else is retried after
    the routine's backoff while attempts remain (except a routine the worker
    did not register at boot: failed at once), else the job has failed
    for good and, if the routine has a `failed` hook, a job to run it is
    added in the same transaction.
    """
    final = FINAL_OUTCOMES.get(attempt.outcome)
    if final is not None:
        return Settle(claim.id, final, attempt, result_json=result_json)
    if attempt.outcome == "interrupted":
        return Settle(claim.id, JobState.QUEUED, attempt, run_at=now, uncount=True)
    if attempt.outcome == "error" and attempt.error_type == UNREGISTERED:
        return Settle(claim.id, JobState.FAILED, attempt)  # no retries, no failed hook to run
    if claim.counted < claim.max_attempts:
        delay = policy.retry_delay_for(claim.counted, rand)
        return Settle(claim.id, JobState.QUEUED, attempt, run_at=now + delay)
    follow_up = failed_hook_job(claim, attempt, now) if failed_hook else None
    return Settle(claim.id, JobState.FAILED, attempt, follow_up=follow_up)


def never_started(claim: Claim) -> Settle:
    """A job that waited in a worker's pipe when the worker went away."""
    return Settle(claim.id, JobState.QUEUED, None, run_at=None, uncount=True)


def failed_hook_job(claim: Claim, attempt: Attempt, now: float) -> NewJob:
    import json

    failure: dict[str, Any] = {
        "job_id": claim.id,
        "routine": claim.routine,
        "attempts": claim.counted,
        "outcome": attempt.outcome,
        "error_type": attempt.error_type,
        "message": attempt.error_message,
        "traceback": attempt.traceback,
    }
    args_json = f"[{json.dumps(failure)},{claim.args_json},{claim.kwargs_json}]"
    return NewJob(
        routine=FAILED_HOOK_ROUTINE,
        queue=claim.queue,
        priority=claim.priority,
        args_json=args_json,
        kwargs_json="{}",
        run_at=now,
        enqueued_at=now,
        max_attempts=3,
    )


def attempt_from_done(claim: Claim, done: Done, node_id: int, pid: int | None) -> Attempt:
    """The record of an attempt its worker reported on (checked by wire)."""
    error = done.error
    return Attempt(
        job_id=claim.id, attempt=claim.attempt, routine=claim.routine, queue=claim.queue,
        node_id=node_id, worker_pid=pid, started_at=done.started, finished_at=done.finished,
        outcome="succeeded" if done.ok else done.outcome or "error",
        error_type=None if error is None else error.type,
        error_message=None if error is None else error.message,
        traceback=None if error is None else error.traceback,
        cpu_seconds=done.cpu, peak_rss=done.rss,
    )  # fmt: skip


def death_attempt(
    claim: Claim,
    node_id: int,
    pid: int | None,
    started: float | None,
    now: float,
    outcome: str,
    message: str,
    error_type: str | None = None,
    peak_rss: int | None = None,
) -> Attempt:
    """The record of an attempt whose worker did not report back."""
    return Attempt(
        job_id=claim.id,
        attempt=claim.attempt,
        routine=claim.routine,
        queue=claim.queue,
        node_id=node_id,
        worker_pid=pid,
        started_at=started,
        finished_at=now,
        outcome=outcome,
        error_type=error_type,
        error_message=message,
        peak_rss=peak_rss,
    )
