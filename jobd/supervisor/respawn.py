"""When the master may fork again after workers died: a backoff for crash loops.

A worker that dies unexpectedly is replaced; when deaths come in quick
succession (more than one within `WINDOW`), forks wait, 0.1 s doubling up
to `CAP`, so that code that crashes at once does not turn the master into
a fork loop.
"""

from __future__ import annotations

WINDOW = 60.0
FIRST = 0.1
CAP = 10.0


class CrashBackoff:
    def __init__(self) -> None:
        self.crashes: list[float] = []  # monotonic times of recent deaths
        self.not_before = 0.0  # no fork before this (monotonic)

    def crashed(self, now: float) -> None:
        self.crashes = [t for t in self.crashes if now - t < WINDOW] + [now]
        count = len(self.crashes)
        backoff = min(FIRST * 2 ** (count - 1), CAP) if count > 1 else 0.0
        self.not_before = now + backoff

    def allows(self, now: float) -> bool:
        return now >= self.not_before
