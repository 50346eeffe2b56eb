"""The master's children, from the template's fork request to the reaping.

The workforce spawns workers to each pool's target (sizes.py) with a backoff
after crashes (respawn.py), reads what they say (wire.py checks every
line), watches the hard limits while jobs run (hard_limits.py) and the boot
and kill deadlines, and routes the rest to its parts, which share one
roster of workers (crew.py):

- reloads.py: the generations' templates, and a reload's boot beside the
  running generation, take-over and abort;
- handout.py: jobs handed to workers, their results taken in, recycling;
- reaping.py: exits matched to workers, the dead buried, their jobs settled.

What it learns that concerns jobs, the store or the master's phase (an
attempt ended, a job never started, the pool booted or cannot, a reload
took over or failed) it reports as events (events.py), which the master
applies.
"""

from __future__ import annotations

import logging
import selectors
import signal
from collections.abc import Mapping

from jobd.processes import Exit
from jobd.settings import PoolSpec, Settings
from jobd.supervisor.autoscaler import Occupancy
from jobd.supervisor.catalog import Catalog
from jobd.supervisor.children import Launcher
from jobd.supervisor.clock import Clock
from jobd.supervisor.crew import KILL_GRACE, Crew
from jobd.supervisor.events import Booted, Event
from jobd.supervisor.generations import Generation, Generations
from jobd.supervisor.handout import Handout
from jobd.supervisor.hard_limits import HardLimits
from jobd.supervisor.pipelining import Runtimes
from jobd.supervisor.reaping import Reaper
from jobd.supervisor.reloads import Reloads
from jobd.supervisor.respawn import CrashBackoff
from jobd.supervisor.sizes import PoolSizes
from jobd.supervisor.workers import Worker
from jobd.wire import BootError, Done, FromWorker, Hello, Horse, Malformed

log = logging.getLogger("jobd.master")


class Workforce:
    def __init__(
        self,
        settings: Settings,
        sizes: PoolSizes,
        catalog: Catalog,
        launcher: Launcher,
        clock: Clock,
        selector: selectors.BaseSelector,
    ) -> None:
        self.crew = Crew(settings, launcher, clock, selector)
        self.sizes = sizes  # each pool's target: read here, changed by the master and reloads
        self.clock = clock
        self.spawning = True  # false once draining or stopping
        self.respawn = CrashBackoff()
        generations = Generations(launcher, selector)
        self.reloads = Reloads(self.crew, generations, catalog, sizes, self.respawn)
        self.jobs = Handout(self.crew, sizes)  # what dispatch hands jobs to
        self.reaper = Reaper(self.crew, self.reloads)
        self.limits = HardLimits(launcher, catalog.policy)

    def take_events(self) -> list[Event]:
        """What happened since the last call, for the master to apply, in order."""
        events, self.crew.events = self.crew.events, []
        return events

    @property
    def workers(self) -> dict[int, Worker]:
        return self.crew.workers

    @property
    def by_pid(self) -> dict[int, Worker]:
        return self.crew.by_pid

    @property
    def pools(self) -> Mapping[str, PoolSpec]:
        return self.sizes.pools

    @property
    def generations(self) -> Generations:
        return self.reloads.generations

    @property
    def generation(self) -> int:
        return self.generations.current.number

    @property
    def runtimes(self) -> Runtimes:
        return self.jobs.runtimes

    @property
    def node_id(self) -> int:
        return self.crew.node_id

    @node_id.setter
    def node_id(self, node_id: int) -> None:
        self.crew.node_id = node_id

    def start(self) -> None:
        self.generations.start(self.crew.settings)

    def begin_reload(self, settings: Settings) -> None:
        self.reloads.begin(settings)

    def on_template_readable(self, generation: Generation) -> None:
        if generation.template is None:
            return  # stopped earlier in this step (its generation was replaced): stale
        for slot, pid in self.reloads.on_template_readable(generation, self.spawning):
            self._on_forked(slot, pid)
        self.spawn_workers()

    # -- spawning --------------------------------------------------------------

    def spawn_workers(self) -> None:
        if not self.spawning:
            return
        current, pending = self.generations.current, self.generations.pending
        if self.respawn.allows(self.clock.monotonic()):
            self._spawn(current, {name: self.sizes.target(name) for name in self.pools})
        if pending is not None:
            wanted = {p.name: p.min_workers for p in pending.settings.pool_specs()}
            self._spawn(pending, wanted, standby=True)

    def _spawn(self, generation: Generation, wanted: dict[str, int], standby: bool = False) -> None:
        if not generation.ready or generation.template is None:
            return
        now = self.clock.monotonic()
        for pool, count in wanted.items():
            for _ in range(count - len(self.crew.live(pool, generation.number))):
                slot = self.crew.free_slot()
                channel = generation.template.fork_worker(slot, pool)
                worker = Worker(slot, generation.number, channel, now, standby=standby, pool=pool)
                worker.job_quota = self.jobs.job_quota()
                self.crew.add(worker)

    def occupancy(self, pool: str) -> Occupancy:
        """What the autoscaler needs to know of a pool's running workers."""
        return self.jobs.occupancy(pool, self.generation)

    def live(self, pool: str) -> list[Worker]:
        """A pool's workers that count towards its size (not leaving, not killed)."""
        return self.crew.live(pool, self.generation)

    def shrink(self, pool: str, idle_only: bool = False) -> int:
        """Retire workers beyond the pool's target: unbooted, then idle, then (unless
        `idle_only`) busy ones, highest slot first. How many were retired."""
        live = self.live(pool)
        order = sorted(live, key=lambda w: (w.booted, not w.idle, -w.slot))
        if idle_only:
            order = [w for w in order if w.idle or not w.booted]
        retired = order[: max(len(live) - self.sizes.target(pool), 0)]
        for worker in retired:
            log.info("retiring worker %s (pid %s): pool %s shrinks", worker.slot, worker.pid, pool)
            self.crew.retire(worker)
        return len(retired)

    def _on_forked(self, slot: int, pid: int) -> None:
        worker = self.crew.workers.get(slot)
        if worker is None or worker.pid is not None:
            return
        self.crew.known_as(worker, pid)
        exited = self.reaper.unmatched.pop(pid, None)
        if exited is not None:
            self._on_exit(worker, exited)
        elif worker.kill_reason is not None:
            self.crew.terminate(worker, *worker.kill_reason, grace=0.0)

    # -- messages --------------------------------------------------------------

    def on_readable(self, worker: Worker) -> None:
        messages = worker.channel.receive()
        if messages is None:  # EOF: the worker is gone; the reaper settles its jobs
            self.crew.unregister(worker)
            if worker.pid is None:  # never forked (the template died first): nothing to reap
                self.crew.remove(worker)
                self.spawn_workers()
            return
        self._on_messages(worker, messages)

    def _on_messages(
        self, worker: Worker, messages: list[FromWorker | Malformed], dead: bool = False
    ) -> None:
        for message in messages:
            if worker.untrusted:
                return  # after a malformed line nothing it says counts
            if type(message) is Done:
                if self.jobs.on_done(worker, message):
                    self.spawn_workers()  # the replacement of a recycled worker
            elif isinstance(message, Horse):
                if worker.inflight and worker.inflight[0].claim.id == message.id:
                    worker.inflight[0].horse = message.pid
            elif isinstance(message, Hello):
                self._on_hello(worker, message.pid)
            elif isinstance(message, BootError):
                worker.boot_error = message.error
            elif isinstance(message, Malformed):
                self._on_malformed(worker, message, dead)

    def _on_malformed(self, worker: Worker, reason: Malformed, dead: bool) -> None:
        """A line the master cannot trust: the worker is killed, its attempt recorded
        (reaping.py, once it is reaped), its job retried or failed by its policy.
        One already reaped (`dead`) is not signalled: its pid may be another's now."""
        worker.untrusted = True
        if dead:
            log.error("worker %s (pid %s) sent a malformed message before it died: %s",
                      worker.slot, worker.pid, reason)  # fmt: skip
            return
        log.error("worker %s (pid %s) sent a malformed message, killing it: %s",
                  worker.slot, worker.pid, reason)  # fmt: skip
        self.crew.terminate(worker, "killed", f"malformed message: {reason}", grace=0.0)

    def _on_hello(self, worker: Worker, pid: int) -> None:
        worker.booted = True
        self.reloads.generation(worker.generation).proven = True
        worker.idle_since = self.clock.monotonic()
        if worker.pid is None:
            self.crew.known_as(worker, pid)
        log.debug("worker %s (pid %s) booted", worker.slot, pid)
        pending = self.generations.pending
        if pending is not None and worker.generation == pending.number:
            self.reloads.maybe_commit()
            return
        self.crew.events.append(Booted(self.crew.booted(self.generation)))
        self.shrink(worker.pool, idle_only=True)  # a target lowered while it booted

    # -- orders ----------------------------------------------------------------

    def flush(self, worker: Worker) -> None:
        self.crew.flush(worker)

    def retire_all(self) -> None:
        self.spawning = False
        for worker in list(self.crew.workers.values()):
            self.crew.retire(worker)

    def terminate_all(self, outcome: str, message: str, grace: float = KILL_GRACE) -> None:
        self.spawning = False
        for worker in list(self.crew.workers.values()):
            self.crew.terminate(worker, outcome, message, grace)

    # -- reaping ---------------------------------------------------------------

    def reap(self) -> None:
        for worker, exited in self.reaper.reap():
            self._on_exit(worker, exited)

    def _on_exit(self, worker: Worker, exited: Exit) -> None:
        while True:  # what it wrote before it died counts
            messages = worker.channel.receive()
            if not messages:
                break
            self._on_messages(worker, messages, dead=True)
        incomplete = worker.channel.leftover()
        if incomplete is not None and not worker.untrusted:
            log.warning("worker %s (pid %s) died in the middle of a message: %s",
                        worker.slot, exited.pid, incomplete)  # fmt: skip
        verdict = self.reaper.bury(worker, exited)
        if verdict is not None and verdict.boot_failure:
            self.reloads.boot_failed(worker.generation, verdict.reason)
        elif verdict is not None:
            log.warning("%s; replacing it" if not worker.booted else "%s", verdict.reason)
            if verdict.crash:
                self.reloads.crash_loop_death()
        self.spawn_workers()

    # -- timers ----------------------------------------------------------------

    def deadlines(self) -> list[float]:
        """When something here is next due (monotonic)."""
        due = self.limits.deadlines(self.crew.workers.values())
        boot_timeout = self.crew.settings.pool.boot_timeout
        for worker in self.crew.workers.values():
            if worker.kill_at is not None:
                due.append(worker.kill_at)
            elif not worker.booted:
                due.append(worker.spawned_mono + boot_timeout)
        if self.spawning and not self.respawn.allows(self.clock.monotonic()):
            due.append(self.respawn.not_before)
        restart_due = self.generations.current.restart_due
        if restart_due is not None:
            due.append(restart_due)
        return due

    def tick(self, mono: float) -> None:
        """Kill deadlines, boot timeouts, hard limits, respawns."""
        settings = self.crew.settings
        boot_timeout = settings.pool.boot_timeout
        for worker in list(self.crew.workers.values()):
            if worker.kill_at is not None and mono >= worker.kill_at and worker.pid is not None:
                self.crew.signal(worker, signal.SIGKILL)
                worker.kill_at = None
            elif (
                not worker.booted
                and worker.kill_reason is None
                and mono - worker.spawned_mono > boot_timeout
            ):
                worker.boot_error = f"worker {worker.slot} did not boot within {boot_timeout:g}s"
                if worker.pid is not None:
                    self.crew.launcher.kill(worker.pid, signal.SIGKILL)
        workers = list(self.crew.workers.values())
        for worker, verdict, grace in self.limits.check(workers, mono, settings.limits):
            self.crew.terminate(worker, verdict.outcome, verdict.message, grace)
        if self.spawning:
            current = self.generations.current
            if current.restart_due is not None and mono >= current.restart_due:
                self.generations.start_template(current)
            self.spawn_workers()

    def close(self) -> None:
        self.generations.close()
