"""What a worker's death means: the attempt it took with it, and whether it
fails a boot, counts towards a crash loop, or is only replaced.

Pure: the workforce hands in the dead worker and how it exited, and applies
what comes back (events for the master, the crash-loop backoff, a boot
failure, the template's failed hooks).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any

from jobd.processes import Exit
from jobd.records import Attempt, Claim
from jobd.supervisor.outcomes import death_attempt
from jobd.supervisor.workers import Worker


def lost_attempt(worker: Worker, exited: Exit, node_id: int, now: float) -> Attempt | None:
    """The record of the attempt a dead worker was running (None if it ran none).

    Its outcome is the master's reason when the master killed it (a limit, a
    cancel, a stop), `killed` otherwise; its error type the signal that ended it,
    the SIGTERM it handled, or WorkerExit.
    """
    if not worker.inflight:
        return None
    head = worker.inflight[0]
    outcome, message = worker.kill_reason or (
        "killed",
        f"worker {worker.slot} (pid {exited.pid}) died: {exited.describe()}",
    )
    if exited.signal:
        error_type = exited.describe()
    elif worker.signalled is not None:  # it handled our SIGTERM and exited
        error_type = signal.Signals(worker.signalled).name
    else:
        error_type = "WorkerExit"
    return death_attempt(
        head.claim, node_id, exited.pid, head.started, now,
        outcome, message, error_type, worker.kill_rss,
    )  # fmt: skip


def failed_hooks_order(worker: Worker, claim: Claim, attempt: Attempt) -> dict[str, Any]:
    """What the template needs to run the job_failed hooks the worker could not
    (worker/aftermath.py)."""
    return {
        "job": {
            "id": claim.id, "routine": claim.routine, "queue": claim.queue,
            "attempt": claim.attempt, "max_attempts": claim.max_attempts,
            "enqueued_at": claim.enqueued_at,
        },
        "worker": {"slot": worker.slot, "pid": attempt.worker_pid},
        "outcome": attempt.outcome,
        "error_type": attempt.error_type,
        "message": attempt.error_message,
    }  # fmt: skip


def rescued_hooks_order(claim: Claim, attempt: Attempt) -> dict[str, Any]:
    """The order for the job_failed hooks of an attempt lost with its whole node
    (its master died or stopped heartbeating), for this node's template.

    The worker that ran it was on the dead node and is unknown here: slot 0,
    pid 0. The hooks are the application's, not the routine's, so they run
    even if this node's code no longer has the routine: the application still
    hears that a job of it failed.
    """
    return {
        "job": {
            "id": claim.id, "routine": claim.routine, "queue": claim.queue,
            "attempt": claim.attempt, "max_attempts": claim.max_attempts,
            "enqueued_at": claim.enqueued_at,
        },
        "worker": {"slot": 0, "pid": None},
        "outcome": attempt.outcome,
        "error_type": attempt.error_type or "NodeLost",
        "message": attempt.error_message,
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Unexpected:
    """A death the master did not ask for, judged."""

    reason: str  # one line for the log
    boot_failure: bool  # its generation cannot boot: the start-up or the reload fails
    crash: bool  # counts towards the crash-loop backoff


def judge_unexpected(worker: Worker, exited: Exit, serving: bool, proven: bool) -> Unexpected:
    """While booting, in a generation none of whose workers has booted yet
    (`proven` False), its code or config cannot boot. In a proven generation the
    same death is a kill from outside (the OOM killer, an operator) or a flaky
    boot hook: the worker is replaced, and the crash-loop backoff keeps a boot
    that now always fails from becoming a fork loop. A worker that was serving
    jobs is replaced at once.
    """
    why = f"worker {worker.slot} (pid {exited.pid})"
    if not worker.booted:
        reason = worker.boot_error or f"{why} exited during boot: {exited.describe()}"
        return Unexpected(reason, boot_failure=not proven, crash=proven)
    return Unexpected(f"{why} died: {exited.describe()}", boot_failure=False, crash=not serving)
