"""The built-in routine that runs a routine's `failed` hook, in a worker.

When a job fails for good, the master inserts, in the same transaction, a
job of this routine carrying the failure and the original arguments. So
the hook runs once, in a worker (never in the master), and survives a
crash like any other job (at least once, like everything in jobd).
"""

from __future__ import annotations

from typing import Any

from jobd.routines import JobFailure, routine
from jobd.worker.execute import find_routine

NAME = "jobd.failure:call_failed_hook"


@routine(max_attempts=3, retry_delay="5s")
def call_failed_hook(failure: dict[str, Any], args: list[Any], kwargs: dict[str, Any]) -> None:
    target = find_routine(failure["routine"])
    hook = target.failed_hook
    if hook is not None:
        hook(JobFailure(**failure), *args, **kwargs)
