"""Wake-ups: producers telling the master that jobs were enqueued, and when.

The store's wake source (a datagram socket beside a SQLite database, a
LISTEN connection on PostgreSQL) sits in the master's selector. Each
wake-up names the queues and the earliest `run_at` of what was enqueued:
jobs ready now make their pools claim at once (and once more shortly after,
`RECHECK_AFTER_WAKE`, since a wake-up may precede its producer's commit);
delayed ones set the timer at which they become ready. Retries scheduled
by the master itself set that timer too (`at`).
"""

from __future__ import annotations

import contextlib
import selectors
from collections.abc import Callable, Iterable

from jobd.store.contract import WakeSource

RECHECK_AFTER_WAKE = 0.05


class Wakeups:
    def __init__(self, selector: selectors.BaseSelector) -> None:
        self.selector = selector
        self.source: WakeSource | None = None
        self.fd = -1
        self.due: float | None = None  # wall clock: a delayed job becomes ready
        self.recheck_at: float | None = None  # wall clock: look again after a wake-up

    def listen(self, source: WakeSource | None) -> None:
        """Select on the store's wake source (None: the poll interval is the only backstop)."""
        self.source = source
        if source is not None:
            self.fd = source.fileno()
            self.selector.register(self.fd, selectors.EVENT_READ, "wake")

    def at(self, run_at: float) -> None:
        """Some job becomes ready at `run_at`: look then."""
        self.due = run_at if self.due is None else min(self.due, run_at)

    def read(
        self,
        now: float,
        serves: Callable[[Iterable[str]], bool],
        ready: Callable[[list[str]], None],
        at_most: int | None = None,
    ) -> int:
        """Read the wake-ups waiting (`at_most` of them), calling `ready` with the
        queues of jobs ready now; how many were read."""
        if self.source is None:
            return 0
        wakeups = self.source.drain(at_most)
        for run_at, queues in wakeups:
            if not serves(queues):
                continue
            if run_at <= now:
                ready(queues)
                if self.recheck_at is None:
                    self.recheck_at = now + RECHECK_AFTER_WAKE
            else:
                self.at(run_at)
        return len(wakeups)

    def timers(self) -> list[float]:
        return [wall for wall in (self.due, self.recheck_at) if wall is not None]

    def expired(self, now: float) -> bool:
        """Has a timer passed (then every pool may have ready jobs)?"""
        passed = False
        if self.due is not None and now >= self.due:
            self.due, passed = None, True
        if self.recheck_at is not None and now >= self.recheck_at:
            self.recheck_at, passed = None, True
        return passed

    def check(self) -> bool:
        """Heartbeat: is the wake source still there? It reconnects itself if not (the
        descriptor may change); False when wake-ups may have been missed."""
        if self.source is None:
            return True
        alive = self.source.check()
        fd = self.source.fileno()
        if fd != self.fd:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(self.fd)
            self.fd = fd
            if fd >= 0:
                self.selector.register(fd, selectors.EVENT_READ, "wake")
        return alive

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
