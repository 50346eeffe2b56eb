"""When the master may fork again after workers died: a backoff for crash loops.

A crash loop is code that cannot get a worker to its first job: workers that
die while booting, or after booting but before finishing a job, and a worker
template that dies. When such deaths come in quick succession (more than one
within `pool.crash_window`), forks wait, 0.1 s doubling up to
`pool.crash_backoff_max`, so that broken code does not turn the master into a
fork loop.

A worker that dies while serving jobs (the OOM killer, an operator's kill, a
job's own crash) is not a loop: it is replaced at once. Counting those too
throttled a node that lost a worker every 0.3 s from ~470 to 25-40 jobs/s.
"""

from __future__ import annotations

FIRST = 0.1


class CrashBackoff:
    def __init__(self) -> None:
        self.crashes: list[float] = []  # monotonic times of recent crash-loop deaths
        self.not_before = 0.0  # no fork before this (monotonic)

    def crashed(self, now: float, window: float, cap: float) -> None:
        self.crashes = [t for t in self.crashes if now - t < window] + [now]
        count = len(self.crashes)
        backoff = min(FIRST * 2 ** (count - 1), cap) if count > 1 else 0.0
        self.not_before = now + backoff

    def allows(self, now: float) -> bool:
        return now >= self.not_before
