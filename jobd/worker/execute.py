"""Running one job inside a worker and describing what happened.

`execute` takes a decoded run message and returns the `done` line for the
master. It never lets a job's exception escape, except `JobTerminated`
(the worker was told to stop now). It measures wall time and CPU seconds
of the attempt; the result goes back as JSON text.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import resource
import time
import traceback
from typing import Any

from jobd.errors import JobTerminated, JobTimeout
from jobd.hooks import JobContext, WorkerInfo, registered_hooks, set_current_job
from jobd.payload import dumps
from jobd.routines import REGISTRY, Routine

log = logging.getLogger("jobd.worker")
_encode = json.JSONEncoder(separators=(",", ":")).encode
MAX_MESSAGE = 4000
MAX_TRACEBACK = 32000


class UnknownRoutineError(LookupError):
    """The job names a routine this worker cannot find."""


def find_routine(name: str) -> Routine[Any, Any]:
    registered = REGISTRY.get(name)
    if registered is None:
        module = name.partition(":")[0]
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise UnknownRoutineError(
                f"routine {name!r} is not registered and {module!r} cannot be imported: {exc}"
            ) from None
        registered = REGISTRY.get(name)
        if registered is None:
            raise UnknownRoutineError(f"routine {name!r} is not defined in {module!r}")
    return registered


def error_type(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def peak_rss() -> int:
    """This process's peak resident set size so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def execute(message: dict[str, Any], worker: WorkerInfo) -> bytes:
    job = JobContext(
        id=message["id"],
        routine=message["routine"],
        queue=message["queue"],
        attempt=message["attempt"],
        max_attempts=message["max_attempts"],
        enqueued_at=message["enqueued_at"],
        worker=worker,
    )
    hooks = registered_hooks()
    started, cpu = time.time(), time.process_time()
    set_current_job(job)
    try:
        routine = find_routine(job.routine)
        for hook in hooks:
            hook.job_processing(job)
        value = routine.run(*message["args"], **message["kwargs"])
    except JobTerminated:
        raise
    except BaseException as exc:  # the job's failure, whatever it is, is an outcome
        return _failed(job, exc, hooks, started, cpu)
    finally:
        set_current_job(None)
    finished, cpu = time.time(), time.process_time() - cpu
    result = _result_json(job, value)
    for hook in hooks:
        _quietly(hook.job_processed, job, value)
    return (
        f'{{"op":"done","id":{job.id},"ok":true,"result":{_encode(result)},'
        f'"started":{started!r},"finished":{finished!r},"cpu":{cpu!r},"rss":{peak_rss()}}}\n'
    ).encode()


def _failed(
    job: JobContext, exc: BaseException, hooks: tuple[Any, ...], started: float, cpu: float
) -> bytes:
    finished, cpu = time.time(), time.process_time() - cpu
    for hook in hooks:
        _quietly(hook.job_failed, job, exc)
    text = "".join(traceback.format_exception(exc))
    reply = {
        "op": "done",
        "id": job.id,
        "ok": False,
        "outcome": "soft_timeout" if isinstance(exc, JobTimeout) else "error",
        "error": {
            "type": error_type(exc),
            "message": str(exc)[:MAX_MESSAGE],
            "traceback": text[-MAX_TRACEBACK:],
        },
        "started": started,
        "finished": finished,
        "cpu": cpu,
        "rss": peak_rss(),
    }
    return (_encode(reply) + "\n").encode()


def malformed(line: str) -> bytes | None:
    """The failure reply for a run order whose stored JSON does not parse."""
    match = re.match(r'\{"op":"run","id":(\d+),', line)
    if match is None:
        log.error("unreadable message from the master: %r", line)
        return None
    now = time.time()
    reply = {
        "op": "done",
        "id": int(match.group(1)),
        "ok": False,
        "outcome": "error",
        "error": {
            "type": "jobd.MalformedJob",
            "message": "stored arguments are not valid JSON",
            "traceback": None,
        },
        "started": now,
        "finished": now,
        "cpu": 0.0,
        "rss": peak_rss(),
    }
    return (_encode(reply) + "\n").encode()


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


def _quietly(hook: Any, *args: Any) -> None:
    try:
        hook(*args)
    except Exception:
        log.exception("hook %s failed", getattr(hook, "__qualname__", hook))
