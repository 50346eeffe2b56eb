"""Running one job inside a worker and describing what happened.

`Runner.run` takes a decoded run message and returns the `done` line for
the master. It never lets a job's exception escape, except `JobTerminated`
(the worker was told to stop now). It applies the routine's limits for the
attempt (worker/limits.py) and measures wall time, CPU seconds and peak
RSS. A routine with `isolation = "process"` runs each attempt in a fresh
child ("horse", worker/horse.py). The result goes back as JSON text.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from jobd.errors import JobTerminated, JobTimeout, UnregisteredRoutine
from jobd.hooks import JobContext, WorkerInfo, registered_hooks, set_current_job
from jobd.payload import dumps
from jobd.policy import Policy
from jobd.routines import REGISTRY, Routine
from jobd.settings import Settings
from jobd.wire import Done, JobError, encode_done
from jobd.worker.horse import run_in_horse
from jobd.worker.limits import METER, applied

log = logging.getLogger("jobd.worker")
MAX_MESSAGE = 4000
MAX_TRACEBACK = 32000


def find_routine(name: str) -> Routine[Any, Any]:
    """The routine registered at boot under `name`; never an import of what a job names."""
    registered = REGISTRY.booted(name)
    if registered is None:
        raise UnregisteredRoutine(
            f"routine {name!r} is not registered by the modules this node loads "
            f"(modules = {list(REGISTRY.modules)!r})"
        )
    return registered


def error_type(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def context(message: dict[str, Any], worker: WorkerInfo) -> JobContext:
    return JobContext(
        id=message["id"],
        routine=message["routine"],
        queue=message["queue"],
        attempt=message["attempt"],
        max_attempts=message["max_attempts"],
        enqueued_at=message["enqueued_at"],
        worker=worker,
    )


class Runner:
    """Runs the jobs of one worker; `send` writes a line to the master."""

    def __init__(
        self, worker: WorkerInfo, settings: Settings | None, send: Callable[[bytes], None]
    ) -> None:
        self.worker = worker
        self.settings = settings
        self.send = send
        self._policies: dict[str, Policy] = {}

    def policy(self, routine: Routine[Any, Any]) -> Policy:
        policy = self._policies.get(routine.name)
        if policy is None:
            policy = self._policies[routine.name] = routine.effective_policy(self.settings)
        return policy

    def run(self, message: dict[str, Any]) -> bytes:
        job = context(message, self.worker)
        try:
            routine = find_routine(job.routine)
        except UnregisteredRoutine as exc:
            now = time.time()
            return failure_reply(job, exc, now, now, 0.0, METER.peak())
        policy = self.policy(routine)
        if policy.isolation == "process":
            return run_in_horse(
                job.id, lambda: self.run_inline(job, routine, policy, message), self.send
            )
        return self.run_inline(job, routine, policy, message)

    def run_inline(
        self, job: JobContext, routine: Routine[Any, Any], policy: Policy, message: dict[str, Any]
    ) -> bytes:
        hooks = registered_hooks()
        started, cpu = time.time(), time.process_time()
        set_current_job(job)
        try:
            with applied(policy):
                for hook in hooks:
                    hook.job_processing(job)
                value = routine.run(*message["args"], **message["kwargs"])
        except JobTerminated:
            raise
        except BaseException as exc:  # the job's failure, whatever it is, is an outcome
            finished, cpu = time.time(), time.process_time() - cpu
            for hook in hooks:
                _quietly(hook.job_failed, job, exc)
            return failure_reply(job, exc, started, finished, cpu, METER.peak(), METER.current())
        finally:
            _flush_output()
            set_current_job(None)
        finished, cpu = time.time(), time.process_time() - cpu
        result = _result_json(job, value)
        for hook in hooks:
            _quietly(hook.job_processed, job, value)
        return encode_done(
            Done(job.id, True, started, finished, cpu, METER.peak(), METER.current(), result)
        )


def error_message(exc: BaseException) -> str:
    """`str(exc)`, or a note saying it raised: a job's broken `__str__` is its own failure."""
    try:
        return str(exc)
    except Exception as inner:
        return f"<str() of the {error_type(exc)} raised {error_type(inner)}>"


def failure_reply(
    job: JobContext,
    exc: BaseException,
    started: float,
    finished: float,
    cpu: float,
    rss: int,
    rss_now: int | None = None,
) -> bytes:
    text = "".join(traceback.format_exception(exc))
    error = JobError(error_type(exc), error_message(exc)[:MAX_MESSAGE], text[-MAX_TRACEBACK:])
    outcome = "soft_timeout" if isinstance(exc, JobTimeout) else "error"
    return encode_done(
        Done(job.id, False, started, finished, cpu, rss, rss_now, outcome=outcome, error=error)
    )


def malformed(line: str) -> bytes | None:
    """The failure reply for a run order whose stored JSON does not parse."""
    match = re.match(r'\{"op":"run","id":(\d+),', line)
    if match is None:
        log.error("unreadable message from the master: %r", line)
        return None
    now = time.time()
    error = JobError("jobd.MalformedJob", "stored arguments are not valid JSON")
    return encode_done(
        Done(
            int(match.group(1)),
            False,
            now,
            now,
            0.0,
            METER.peak(),
            METER.current(),
            outcome="error",
            error=error,
        )
    )


def _result_json(job: JobContext, value: Any) -> str | None:
    """The result as JSON text; a value JSON cannot hold is logged and dropped.

    The job has run (its effects happened), so it succeeds either way.
    """
    if value is None:
        return None
    try:
        return dumps(value, "result")
    except TypeError as exc:
        log.warning("job %s (%s): result not stored: %s", job.id, job.routine, exc)
        return None


def _flush_output() -> None:
    """A job's last unterminated line of output goes out tagged with the job."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _quietly(hook: Any, *args: Any) -> None:
    try:
        hook(*args)
    except Exception:
        log.exception("hook %s failed", getattr(hook, "__qualname__", hook))
