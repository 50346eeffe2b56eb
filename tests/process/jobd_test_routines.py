"""Routines the process tests run in real workers.

Workers import this module by name (the test config puts this directory on
`pythonpath`). Routines report what happens by appending lines to files the
test names in the arguments, and block on "gates" the test opens.
"""

from __future__ import annotations

import json
import os
import signal
import time

import jobd


def note(path: str, **fields: object) -> None:
    """Append one JSON line to `path` (O_APPEND: lines from several workers never mix)."""
    line = json.dumps({"pid": os.getpid(), "t": time.time(), **fields}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def wait_gate(gate: str) -> None:
    """Block until the test opens the gate (creates the file `gate`)."""
    while not os.path.exists(gate):
        time.sleep(0.005)


@jobd.routine
def record(events: str, tag: object = None) -> int:
    job = jobd.current_job()
    assert job is not None
    note(events, event="ran", tag=tag, job=job.id, attempt=job.attempt)
    return os.getpid()


@jobd.routine(max_attempts=2, retry_delay=0)
def blocked(events: str, gate: str, tag: object = None) -> str:
    """Notes its start, then blocks on the gate."""
    job = jobd.current_job()
    assert job is not None
    note(events, event="started", tag=tag, job=job.id, attempt=job.attempt)
    wait_gate(gate)
    note(events, event="finished", tag=tag, job=job.id, attempt=job.attempt)
    return "done"


@jobd.routine(max_attempts=2, retry_delay=0)
def blocked_first_time(events: str, gate: str) -> str:
    """Blocks on the gate on its first attempt only."""
    job = jobd.current_job()
    assert job is not None
    note(events, event="started", job=job.id, attempt=job.attempt)
    if job.attempt == 1:
        wait_gate(gate)
    return f"attempt {job.attempt}"


@jobd.routine(max_attempts=3, retry_delay=0)
def poison(events: str) -> None:
    """Kills its own worker, every time."""
    job = jobd.current_job()
    assert job is not None
    note(events, event="poison", job=job.id, attempt=job.attempt)
    os.kill(os.getpid(), signal.SIGKILL)


@jobd.routine(max_attempts=2, retry_delay=0)
class AlwaysFails:
    def run(self, events: str) -> None:
        raise ValueError("this routine always fails")

    def failed(self, failure: jobd.JobFailure, events: str) -> None:
        note(
            events,
            event="failed_hook",
            job=failure.job_id,
            attempts=failure.attempts,
            outcome=failure.outcome,
            message=failure.message,
        )


@jobd.routine
def report_process(events: str) -> None:
    """What the worker process looks like from inside."""
    note(
        events,
        event="process",
        notify_socket=os.environ.get("NOTIFY_SOCKET"),
        ppid=os.getppid(),
        sigint_ignored=signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
    )


@jobd.routine
def noop(n: int = 0) -> None:
    pass


class Recorder(jobd.Hooks):
    """Hooks that note every lifecycle event to $JOBD_TEST_HOOK_EVENTS."""

    def _note(self, **fields: object) -> None:
        path = os.environ.get("JOBD_TEST_HOOK_EVENTS")
        if path:
            note(path, **fields)

    def worker_boot(self, worker: jobd.WorkerInfo) -> None:
        self._note(event="worker_boot", slot=worker.slot)

    def job_processing(self, job: jobd.JobContext) -> None:
        self._note(event="job_processing", job=job.id)

    def job_processed(self, job: jobd.JobContext, result: object) -> None:
        self._note(event="job_processed", job=job.id)

    def job_failed(self, job: jobd.JobContext, error: BaseException) -> None:
        self._note(event="job_failed", job=job.id, error=type(error).__name__)


jobd.add_hooks(Recorder())
