"""Time in the master: the clock it is given, and its recurring timers.

Time is injected (a `Clock`), so the unit tests step the loop with a fake
one. Deadlines are monotonic; wall time is for what is stored and shown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


@dataclass(slots=True)
class Every:
    """A recurring timer: due at `at` (monotonic), then an interval after each run."""

    at: float

    def due(self, mono: float, interval: float) -> bool:
        """True (and next due `interval` from now) once `at` has come."""
        if mono < self.at:
            return False
        self.at = mono + interval
        return True
