"""The master's phases, in the order it goes through them."""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    STARTING = "starting"  # booting min_workers; READY=1 when they are
    RUNNING = "running"  # claiming and dispatching
    DRAINING = "draining"  # SIGTERM: no claims, running jobs finish
    STOPPING = "stopping"  # stop now: workers killed, their jobs put back
    DONE = "done"
