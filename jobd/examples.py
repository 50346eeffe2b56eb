"""Example routines bundled with jobd, used by `jobd demo` and the docs.

Each logs what it does, so a worker's log shows jobs being processed.
"""

from __future__ import annotations

import logging
import random
import time

import jobd

log = logging.getLogger("jobd.examples")


@jobd.routine
def hello(name: str = "world") -> str:
    """The smallest routine: returns a greeting."""
    job = jobd.current_job()
    log.info("hello, %s (job #%s)", name, job.id if job else "?")
    return f"hello, {name}"


@jobd.routine(queue="default", priority=5)
def add(a: float, b: float) -> float:
    log.info("%s + %s = %s", a, b, a + b)
    return a + b


@jobd.routine(max_attempts=4, retry_delay="1s", retry_backoff=2.0)
def flaky(failure_rate: float = 0.5) -> str:
    """Fails at random, to show retries with backoff in `jobd jobs show`."""
    job = jobd.current_job()
    if random.random() < failure_rate:
        raise RuntimeError(f"flaky failure on attempt {job.attempt if job else '?'}")
    log.info("flaky succeeded")
    return "ok"


@jobd.routine(time_limit="30s")
def sleep(seconds: float) -> float:
    """Sleeps; stands in for a slow call to another service."""
    time.sleep(seconds)
    log.info("slept %.2fs", seconds)
    return seconds


@jobd.routine
def noop(n: int = 0) -> None:
    """Does nothing: what the benchmarks run."""


@jobd.routine(queue="default", max_attempts=2)
class Report:
    """The class form, with a `failed` hook that runs once when a job fails for good."""

    def run(self, title: str, fail: bool = False) -> dict[str, str]:
        if fail:
            raise ValueError(f"report {title!r} has no data")
        log.info("report %r built", title)
        return {"title": title, "status": "built"}

    def failed(self, failure: jobd.JobFailure, title: str, fail: bool = False) -> None:
        log.error(
            "report %r failed for good after %d attempts: %s",
            title,
            failure.attempts,
            failure.message,
        )
