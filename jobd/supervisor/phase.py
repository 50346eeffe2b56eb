"""The master's phases, in the order it goes through them, and the deadlines
that come with them.

`Lifecycle` is bookkeeping only: each transition says whether it happens,
and the master applies what goes with it (systemd notifications, retiring or
killing workers, returning held jobs). So the rules (a second SIGTERM stops
at once, a boot failure drains with exit code 3 even while starting, a
SIGHUP while starting waits for the pool) are in one place and step-testable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from jobd import exitcodes


class Phase(enum.Enum):
    STARTING = "starting"  # booting min_workers; READY=1 when they are
    RUNNING = "running"  # claiming and dispatching
    DRAINING = "draining"  # SIGTERM: no claims, running jobs finish
    STOPPING = "stopping"  # stop now: workers killed, their jobs put back
    DONE = "done"


@dataclass(slots=True)
class Lifecycle:
    boot_deadline: float  # monotonic: STARTING past it is a boot failure
    phase: Phase = Phase.STARTING
    exit_code: int = exitcodes.OK
    drain_deadline: float | None = None  # monotonic: DRAINING past it kills the rest
    reload_deferred: bool = False  # a SIGHUP came while starting: reload once running

    @property
    def winding_down(self) -> bool:
        return self.phase in (Phase.DRAINING, Phase.STOPPING)

    def deadlines(self) -> list[float]:
        if self.phase is Phase.STARTING:
            return [self.boot_deadline]
        return [] if self.drain_deadline is None else [self.drain_deadline]

    def ready(self) -> bool:
        """STARTING -> RUNNING, once; True when it happened now."""
        if self.phase is not Phase.STARTING:
            return False
        self.phase = Phase.RUNNING
        return True

    def drain(self, exit_code: int, deadline: float) -> bool:
        """Begin draining (True), or not again once winding down (False)."""
        if self.winding_down or self.phase is Phase.DONE:
            return False
        self.phase = Phase.DRAINING
        self.exit_code = max(self.exit_code, exit_code)
        self.drain_deadline = deadline
        return True

    def stop(self) -> bool:
        """Stop at once (True), or not again (False)."""
        if self.phase in (Phase.STOPPING, Phase.DONE):
            return False
        self.phase = Phase.STOPPING
        return True

    def boot_failed(self) -> bool:
        """A pool that cannot boot drains with BOOT_ERROR; False if already said."""
        if self.exit_code == exitcodes.BOOT_ERROR:
            return False
        if self.phase is Phase.STARTING:
            self.phase = Phase.RUNNING  # so that drain applies
        return True

    def boot_overdue(self, mono: float) -> bool:
        return self.phase is Phase.STARTING and mono >= self.boot_deadline

    def drain_overdue(self, mono: float) -> bool:
        """True once, when the drain's deadline has passed."""
        if self.drain_deadline is None or mono < self.drain_deadline:
            return False
        self.drain_deadline = None
        return True

    def finish(self, dropped: bool) -> None:
        if dropped:
            self.exit_code = max(self.exit_code, exitcodes.FAILURE)
        self.phase = Phase.DONE
