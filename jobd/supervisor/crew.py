"""The master's workers as one roster, and the orders it gives them.

Every part of the workforce reads and changes the same records (workers.py):
the reload protocol (reloads.py) retires or stands workers by, the job flow
(handout.py) hands them jobs, the reaper (reaping.py) buries them. They
share this roster rather than each other: it holds the records by slot and
by pid, the running generation's settings and the events for the master
(events.py), and carries out the few orders a worker can be given (a line
on its socket, a graceful stop, a signal).
"""

from __future__ import annotations

import contextlib
import selectors
import signal

from jobd.settings import Settings
from jobd.supervisor.children import Launcher
from jobd.supervisor.clock import Clock
from jobd.supervisor.events import Event
from jobd.supervisor.workers import Worker
from jobd.wire import STOP

KILL_GRACE = 1.0  # stop-now and drain timeouts: SIGTERM, then SIGKILL this much later


class Crew:
    def __init__(
        self,
        settings: Settings,
        launcher: Launcher,
        clock: Clock,
        selector: selectors.BaseSelector,
    ) -> None:
        self.settings = settings  # the running generation's (reloads.py changes it)
        self.launcher = launcher
        self.clock = clock
        self.selector = selector
        self.node_id = 0  # recorded on attempts; set once the node is registered
        self.workers: dict[int, Worker] = {}  # by slot
        self.by_pid: dict[int, Worker] = {}
        self.events: list[Event] = []

    def add(self, worker: Worker) -> None:
        self.workers[worker.slot] = worker
        self.selector.register(worker.channel, selectors.EVENT_READ, worker)

    def free_slot(self) -> int:
        return next(n for n in range(1, len(self.workers) + 2) if n not in self.workers)

    def known_as(self, worker: Worker, pid: int) -> None:
        worker.pid = pid
        self.by_pid[pid] = worker

    def live(self, pool: str, generation: int) -> list[Worker]:
        """A pool's workers of `generation` that count towards its size (not leaving,
        not killed)."""
        return [
            w for w in self.workers.values()
            if w.pool == pool and w.generation == generation and not w.retiring
            and w.kill_reason is None
        ]  # fmt: skip

    def pool_workers(self, pool: str) -> list[Worker]:
        return [w for w in self.workers.values() if w.pool == pool]

    def booted(self, generation: int) -> int:
        return sum(1 for w in self.workers.values() if w.booted and w.generation == generation)

    # -- orders ----------------------------------------------------------------

    def send(self, worker: Worker, data: bytes) -> None:
        worker.channel.send(data)
        if worker.channel.wants_write:
            self.selector.modify(
                worker.channel, selectors.EVENT_READ | selectors.EVENT_WRITE, worker
            )

    def flush(self, worker: Worker) -> None:
        worker.channel.flush()
        if not worker.channel.wants_write:
            self.selector.modify(worker.channel, selectors.EVENT_READ, worker)

    def retire(self, worker: Worker) -> None:
        """Ask a worker to exit after the jobs it holds."""
        if worker.retiring:
            return
        worker.retiring = True
        self.send(worker, STOP)

    def terminate(
        self, worker: Worker, outcome: str, message: str, grace: float = KILL_GRACE
    ) -> None:
        """Kill a worker (SIGTERM, then SIGKILL after `grace`); record why."""
        if worker.kill_reason is None:
            worker.kill_reason = (outcome, message)
        if worker.pid is None:
            return  # not forked yet; killed as soon as its pid is known (workforce.py)
        if grace <= 0:
            self.signal(worker, signal.SIGKILL)
            worker.kill_at = None
        else:
            self.signal(worker, signal.SIGTERM)
            worker.kill_at = self.clock.monotonic() + grace

    def signal(self, worker: Worker, signum: int) -> None:
        assert worker.pid is not None
        if signum == signal.SIGKILL:
            # The worker's process group: what an inline job started dies with it.
            self.launcher.kill_group(worker.pid, signum)
        self.launcher.kill(worker.pid, signum)
        worker.signalled = signum

    def unregister(self, worker: Worker) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(worker.channel)

    def remove(self, worker: Worker) -> None:
        """A worker that is gone: off the selector and the roster, its socket closed."""
        self.unregister(worker)
        worker.channel.close()
        self.workers.pop(worker.slot, None)
        if worker.pid is not None:
            self.by_pid.pop(worker.pid, None)
