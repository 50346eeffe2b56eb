"""Routines for tests/unit/test_routines.py, at the top level of an importable module."""

from __future__ import annotations

from typing import Any

import jobd


@jobd.routine
def plain(x: int, y: int = 1) -> int:
    return x + y


@jobd.routine(queue="images", priority=3, max_attempts=5, time_limit="5m", memory_limit="512M")
def resize(path: str, width: int = 640) -> dict[str, Any]:
    return {"path": path, "width": width}


@resize.on_failure
def resize_failed(failure: jobd.JobFailure, path: str, width: int = 640) -> str:
    return f"{failure.routine} failed on {path}"


@jobd.routine(retry_delay="1m", retry_max_delay="2h")
def no_limits_declared() -> None:
    """Takes its time and memory limits from [limits] when the config sets them."""


# Each Report made, so a test can see the class form builds one instance per worker.
REPORTS_MADE: list[Any] = []


@jobd.routine(queue="reports", unique=True)
class Report:
    def __init__(self) -> None:
        REPORTS_MADE.append(self)

    def run(self, title: str) -> str:
        return f"report {title}"

    def failed(self, failure: jobd.JobFailure, title: str) -> str:
        return f"report {title} failed after {failure.attempts}"


@jobd.routine
class Silent:
    """The class form without a `failed` hook."""

    def run(self) -> str:
        return "ran"
