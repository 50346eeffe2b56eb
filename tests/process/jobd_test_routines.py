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


@jobd.routine(retry_delay=0)
def record_slowly(events: str, seconds: float, tag: object = None) -> int:
    """`record_retry_now` that then takes `seconds`: jobs still running when a test
    cuts the database off."""
    job = jobd.current_job()
    assert job is not None
    note(events, event="ran", tag=tag, job=job.id, attempt=job.attempt)
    time.sleep(seconds)
    return os.getpid()


@jobd.routine(retry_delay=0)
def record_retry_now(events: str, tag: object = None) -> int:
    """`record`, retried at once after a lost attempt (multi-node tests)."""
    job = jobd.current_job()
    assert job is not None
    note(events, event="ran", tag=tag, job=job.id, attempt=job.attempt)
    return os.getpid()


@jobd.routine(max_attempts=2, retry_delay=0)
def blocked(events: str, gate: str, tag: object = None) -> str:
    """Notes its start, then blocks on the gate."""
    job = jobd.current_job()
    assert job is not None
    note(events, event="started", tag=tag, job=job.id, attempt=job.attempt, pid=os.getpid())
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
        gate = os.environ.get("JOBD_TEST_BOOT_GATE")
        if gate:  # a slow boot, until the test opens the gate
            wait_gate(gate)

    def job_processing(self, job: jobd.JobContext) -> None:
        self._note(event="job_processing", job=job.id)

    def job_processed(self, job: jobd.JobContext, result: object) -> None:
        self._note(event="job_processed", job=job.id)

    def job_failed(self, job: jobd.JobContext, error: BaseException) -> None:
        self._note(
            event="job_failed",
            job=job.id,
            error=type(error).__name__,
            attempt=job.attempt,
            outcome=getattr(error, "outcome", None),  # a JobKilled's: how its attempt ended
            pid=os.getpid(),
        )


jobd.add_hooks(Recorder())


# -- limits -----------------------------------------------------------------------

_HOARD: list[bytes] = []


def _touch(megabytes: int) -> bytearray:
    block = bytearray(megabytes << 20)
    for i in range(0, len(block), 4096):  # resident, not just reserved
        block[i] = 1
    return block


@jobd.routine(soft_time_limit="300ms", time_limit="5s", max_attempts=2, retry_delay=0)
def soft_limited(events: str) -> None:
    job = jobd.current_job()
    assert job is not None
    try:
        while True:
            time.sleep(0.01)
    except jobd.JobTimeout:
        note(events, event="cleaned_up", attempt=job.attempt)
        raise


@jobd.routine(time_limit="500ms", max_attempts=1)
def sleeps_past_limit(events: str) -> None:
    note(events, event="started")
    time.sleep(30)


@jobd.routine(time_limit="500ms", max_attempts=1)
def spins_in_c(events: str) -> None:
    note(events, event="started")
    sum(range(10**12))  # one C call: no Python signal handler runs meanwhile


@jobd.routine(time_limit="500ms", max_attempts=1)
def ignores_sigterm(events: str) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    note(events, event="started")
    time.sleep(30)


@jobd.routine(time_limit="500ms", max_attempts=1)
def spawns_then_hangs(events: str) -> None:
    """An inline job that starts a child (in its worker's process group) and
    one in a process group of its own, then hangs past its limit."""
    import subprocess

    child = subprocess.Popen(["sleep", "300"])
    # The worker ignores SIGINT/SIGTERM for nothing here: it is killed by SIGKILL.
    note(events, event="started", child=child.pid)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(30)


@jobd.routine(memory_limit="100M", max_attempts=1)
def grows(events: str, megabytes: int) -> None:
    note(events, event="started")
    kept = _touch(megabytes)
    time.sleep(30)
    del kept


@jobd.routine(address_space_limit="200M", max_attempts=1)
def reserves(megabytes: int) -> int:
    return len(bytearray(megabytes << 20))


@jobd.routine
def allocates(megabytes: int) -> int:
    return len(_touch(megabytes))


@jobd.routine(cpu_time_limit="1s", max_attempts=1)
def burns_cpu() -> None:
    while True:
        pass


@jobd.routine(open_files_limit=20, max_attempts=1)
def opens_files(count: int) -> int:
    handles = [open(os.devnull) for _ in range(count)]  # noqa: SIM115
    for handle in handles:
        handle.close()
    return len(handles)


@jobd.routine(isolation="process", time_limit="800ms", max_attempts=1)
def isolated_with_child(events: str) -> None:
    import subprocess

    child = subprocess.Popen(["sleep", "60"])
    note(events, event="horse", horse=os.getpid(), child=child.pid, worker=os.getppid())
    time.sleep(60)


@jobd.routine(isolation="process")
def isolated_allocates(megabytes: int) -> int:
    return len(_touch(megabytes))


@jobd.routine
def leaks(megabytes: int) -> int:
    _HOARD.append(bytes(_touch(megabytes)))
    return os.getpid()


@jobd.routine(queue="bulk")
def bulk_work(events: str, seconds: float) -> None:
    time.sleep(seconds)


@jobd.routine(queue="emails")
def send_email(events: str, tag: object = None) -> None:
    job = jobd.current_job()
    assert job is not None
    note(events, event="email", tag=tag, job=job.id, enqueued=job.enqueued_at)


@jobd.routine
def sleep_briefly(seconds: float) -> None:
    time.sleep(seconds)
