"""The master's children, from the template's fork request to the reaping.

The workforce owns the generations' templates (generations.py), the workers
and everything done to them: spawning to each pool's target (sizes.py) with
a backoff after crashes (respawn.py), their messages, handing them jobs
(pipelining.py), the hard limits watched while a job runs (hard_limits.py),
recycling, reaping and classifying their deaths. What it learns that
concerns jobs, the store or the master's phase (an attempt ended, a job
never started, the pool booted or cannot, a reload took over or failed) it
reports as events (events.py), which the master applies.
"""

from __future__ import annotations

import contextlib
import logging
import random
import selectors
import signal
from collections.abc import Iterable
from typing import Any, Protocol

from jobd.processes import Exit, classify
from jobd.records import Claim
from jobd.settings import Settings
from jobd.supervisor.autoscaler import Occupancy
from jobd.supervisor.catalog import Catalog
from jobd.supervisor.children import Launcher
from jobd.supervisor.deaths import failed_hooks_order, judge_unexpected, lost_attempt
from jobd.supervisor.events import (
    AttemptEnded,
    Booted,
    BootFailed,
    CatalogReady,
    Event,
    NeverStarted,
    ReloadCommitted,
    ReloadFailed,
)
from jobd.supervisor.generations import Generation, Generations
from jobd.supervisor.hard_limits import HardLimits
from jobd.supervisor.outcomes import attempt_from_done
from jobd.supervisor.pipelining import Runtimes, capacity, choose_worker
from jobd.supervisor.respawn import CrashBackoff
from jobd.supervisor.sizes import PoolSizes
from jobd.supervisor.workers import InFlight, Worker
from jobd.units import format_size
from jobd.wire import STOP, BootError, Done, FromWorker, Hello, Horse, Malformed, run_message

log = logging.getLogger("jobd.master")

KILL_GRACE = 1.0  # stop-now and drain timeouts: SIGTERM, then SIGKILL this much later
QUOTA_JITTER = 0.1


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class Workforce:
    def __init__(
        self,
        settings: Settings,
        sizes: PoolSizes,
        catalog: Catalog,
        launcher: Launcher,
        clock: Clock,
        selector: selectors.BaseSelector,
        node_id: int = 0,
    ) -> None:
        self.settings = settings
        self.sizes = sizes  # read here; the master changes them
        self.catalog = catalog  # set here from each generation's template
        self.launcher = launcher
        self.clock = clock
        self.selector = selector
        self.node_id = node_id  # recorded on attempts; set once the node is registered
        self.generations = Generations(launcher, selector)
        self.workers: dict[int, Worker] = {}  # by slot
        self.by_pid: dict[int, Worker] = {}
        self.unmatched_exits: dict[int, Exit] = {}
        self.runtimes = Runtimes()
        self.pools = {pool.name: pool for pool in settings.pool_specs()}
        self.spawning = True  # false once draining or stopping
        self.respawn = CrashBackoff()
        self.limits = HardLimits(launcher, catalog.policy)
        self.outgoing: dict[Worker, list[bytes]] = {}
        self.rand = random.Random()
        self.events: list[Event] = []

    def take_events(self) -> list[Event]:
        """What happened since the last call, for the master to apply, in order."""
        events, self.events = self.events, []
        return events

    @property
    def generation(self) -> int:
        return self.generations.current.number

    # -- generations and their templates ---------------------------------------

    def start(self) -> None:
        self.generations.start(self.settings)

    def begin_reload(self, settings: Settings) -> None:
        """Boot a new generation beside the current one (see `_maybe_commit`)."""
        if self.generations.pending is not None:
            self._abort("superseded by a newer reload", quiet=True)
        self.generations.begin(settings)

    def on_template_readable(self, generation: Generation) -> None:
        assert generation.template is not None
        messages = generation.template.receive()
        if messages is None:
            self._template_gone(generation)
            return
        for message in messages:
            op = message.get("op")
            if op == "ready":
                self._template_ready(generation, message["catalog"])
            elif op == "boot_error":
                self._boot_failed(generation.number, str(message.get("error")))
            elif op == "forked":
                self._on_forked(int(message["slot"]), int(message["pid"]))

    def _template_gone(self, generation: Generation) -> None:
        was_ready = generation.ready
        self.generations.stop_template(generation)
        generation.ready = False
        if not was_ready:
            self._boot_failed(generation.number, "the worker template exited while importing")
        elif generation is self.generations.current and self.spawning:
            log.warning("the worker template died; starting a new one")
            self._crash_loop_death()
            generation.restart_due = self.respawn.not_before

    def _template_ready(self, generation: Generation, catalog: dict[str, dict[str, Any]]) -> None:
        generation.ready = True
        generation.catalog = catalog
        log.info(
            "worker template ready: generation %d, %d routines", generation.number, len(catalog)
        )
        if generation is self.generations.current:
            self._use_catalog(catalog)
        self.spawn_workers()

    def _use_catalog(self, catalog: dict[str, dict[str, Any]]) -> None:
        self.catalog.use(catalog)
        self.events.append(CatalogReady(catalog))

    def _boot_failed(self, generation: int, reason: str) -> None:
        pending = self.generations.pending
        if pending is not None and generation == pending.number:
            self._abort(reason)
        else:
            self.events.append(BootFailed(reason))

    def _maybe_commit(self) -> None:
        """The new generation has booted enough workers: it takes over."""
        pending = self.generations.pending
        if pending is None:
            return
        booted = [w for w in self.workers.values() if w.generation == pending.number and w.booted]
        if len(booted) < pending.min_workers():
            return
        old = self.generations.promote()
        self.settings = pending.settings
        self.pools = {pool.name: pool for pool in self.settings.pool_specs()}
        for worker in list(self.workers.values()):
            if worker.generation == pending.number:
                worker.standby = False
            else:
                self.retire(worker)
        self._use_catalog(pending.catalog)
        log.info("reloaded: generation %d took over from %d", pending.number, old.number)
        self.events.append(ReloadCommitted(pending.settings))

    def _abort(self, reason: str, quiet: bool = False) -> None:
        """A reload that cannot boot: its workers go, the running generation stays."""
        pending = self.generations.drop_pending()
        for worker in list(self.workers.values()):
            if worker.generation == pending.number:
                self.terminate(worker, "interrupted", "reload aborted", grace=0.0)
        if not quiet:
            self.events.append(ReloadFailed(reason))

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
            for _ in range(count - len(self.live(pool, generation.number))):
                slot = next(n for n in range(1, len(self.workers) + 2) if n not in self.workers)
                channel = generation.template.fork_worker(slot, pool)
                worker = Worker(slot, generation.number, channel, now, standby=standby, pool=pool)
                worker.job_quota = self._job_quota()
                self.workers[slot] = worker
                self.selector.register(worker.channel, selectors.EVENT_READ, worker)

    def live(self, pool: str, generation: int | None = None) -> list[Worker]:
        """A pool's workers that count towards its size (not leaving, not killed)."""
        number = self.generation if generation is None else generation
        return [
            w for w in self.workers.values()
            if w.pool == pool and w.generation == number and not w.retiring
            and w.kill_reason is None
        ]  # fmt: skip

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
            self.retire(worker)
        return len(retired)

    def _job_quota(self) -> int | None:
        quota = self.settings.pool.max_jobs_per_worker
        if not quota:
            return None
        return max(1, round(quota * (1 + QUOTA_JITTER * (2 * self.rand.random() - 1))))

    def _on_forked(self, slot: int, pid: int) -> None:
        worker = self.workers.get(slot)
        if worker is None or worker.pid is not None:
            return
        worker.pid = pid
        self.by_pid[pid] = worker
        exited = self.unmatched_exits.pop(pid, None)
        if exited is not None:
            self._on_exit(worker, exited)
        elif worker.kill_reason is not None:
            self.terminate(worker, *worker.kill_reason, grace=0.0)

    # -- messages --------------------------------------------------------------

    def on_readable(self, worker: Worker) -> None:
        messages = worker.channel.receive()
        if messages is None:  # EOF: the worker is gone; the reaper settles its jobs
            self._unregister(worker)
            if worker.pid is None:  # never forked (the template died first): nothing to reap
                worker.channel.close()
                self.workers.pop(worker.slot, None)
                self.spawn_workers()
            return
        self._on_messages(worker, messages)

    def _on_messages(self, worker: Worker, messages: list[FromWorker | Malformed]) -> None:
        for message in messages:
            if worker.untrusted:
                return  # after a malformed line nothing it says counts
            if type(message) is Done:
                self._on_done(worker, message)
            elif isinstance(message, Horse):
                if worker.inflight and worker.inflight[0].claim.id == message.id:
                    worker.inflight[0].horse = message.pid
            elif isinstance(message, Hello):
                self._on_hello(worker, message.pid)
            elif isinstance(message, BootError):
                worker.boot_error = message.error
            elif isinstance(message, Malformed):
                self._on_malformed(worker, message)

    def _on_malformed(self, worker: Worker, reason: Malformed) -> None:
        """A line the master cannot trust: the worker is killed, its attempt recorded
        (`_lost_jobs`, once it is reaped), its job retried or failed by its policy."""
        log.error("worker %s (pid %s) sent a malformed message, killing it: %s",
                  worker.slot, worker.pid, reason)  # fmt: skip
        worker.untrusted = True
        self.terminate(worker, "killed", f"malformed message: {reason}", grace=0.0)

    def _on_hello(self, worker: Worker, pid: int) -> None:
        worker.booted = True
        self._generation(worker.generation).proven = True
        worker.idle_since = self.clock.monotonic()
        if worker.pid is None:
            worker.pid = pid
            self.by_pid[pid] = worker
        log.debug("worker %s (pid %s) booted", worker.slot, pid)
        pending = self.generations.pending
        if pending is not None and worker.generation == pending.number:
            self._maybe_commit()
            return
        current = self.generation
        booted = sum(1 for w in self.workers.values() if w.booted and w.generation == current)
        self.events.append(Booted(booted))
        self.shrink(worker.pool, idle_only=True)  # a target lowered while it booted

    def _on_done(self, worker: Worker, done: Done) -> None:
        if not worker.inflight or worker.inflight[0].claim.id != done.id:
            log.error("worker %s finished job %s it was not running", worker.slot, done.id)
            return
        flight = worker.inflight.popleft()
        attempt = attempt_from_done(flight.claim, done, self.node_id, worker.pid)
        if flight.verdict is not None:  # the master killed its horse: say why
            flight.verdict.apply(attempt)
        self.events.append(AttemptEnded(flight.claim, attempt, done.result))
        worker.jobs_done += 1
        elapsed = attempt.finished_at - (attempt.started_at or attempt.finished_at)
        self.runtimes.observe(flight.claim.routine, worker.pool, elapsed)
        if worker.inflight:
            head = worker.inflight[0]
            head.started, head.started_mono = attempt.finished_at, self.clock.monotonic()
        else:
            worker.idle_since = self.clock.monotonic()
        self._maybe_recycle(worker, done.rss_now)

    def _maybe_recycle(self, worker: Worker, rss_now: int | None) -> None:
        """Retire a worker gracefully after enough jobs or too much memory."""
        if worker.retiring:
            return
        reason = None
        if worker.job_quota is not None and worker.jobs_done >= worker.job_quota:
            reason = f"served {worker.jobs_done} jobs (max_jobs_per_worker)"
        limit = self.settings.pool.max_worker_rss
        if limit and rss_now is not None and rss_now > limit:
            reason = f"RSS {format_size(rss_now)} over max_worker_rss {format_size(limit)}"
        if reason is not None:
            log.info("recycling worker %s (pid %s): %s", worker.slot, worker.pid, reason)
            self.retire(worker)
            self.spawn_workers()

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

    def retire_all(self) -> None:
        self.spawning = False
        for worker in list(self.workers.values()):
            self.retire(worker)

    def terminate(
        self, worker: Worker, outcome: str, message: str, grace: float = KILL_GRACE
    ) -> None:
        """Kill a worker (SIGTERM, then SIGKILL after `grace`); record why."""
        if worker.kill_reason is None:
            worker.kill_reason = (outcome, message)
        if worker.pid is None:
            return  # not forked yet; killed as soon as its pid is known (_on_forked)
        if grace <= 0:
            self._signal(worker, signal.SIGKILL)
            worker.kill_at = None
        else:
            self._signal(worker, signal.SIGTERM)
            worker.kill_at = self.clock.monotonic() + grace

    def _signal(self, worker: Worker, signum: int) -> None:
        assert worker.pid is not None
        if signum == signal.SIGKILL:
            # The worker's process group: what an inline job started dies with it.
            self.launcher.kill_group(worker.pid, signum)
        self.launcher.kill(worker.pid, signum)
        worker.signalled = signum

    def terminate_all(self, outcome: str, message: str, grace: float = KILL_GRACE) -> None:
        self.spawning = False
        for worker in list(self.workers.values()):
            self.terminate(worker, outcome, message, grace)

    def cancel(self, job_ids: Iterable[int]) -> None:
        """Stop the workers running these jobs (cancelled while they ran)."""
        wanted = set(job_ids)
        for worker in list(self.workers.values()):
            current = worker.current
            if current is not None and current.id in wanted and worker.kill_reason is None:
                log.info(
                    "job %s cancelled while running: stopping worker %s", current.id, worker.slot
                )
                self.terminate(worker, "cancelled", "cancelled while running")

    # -- handing out jobs ------------------------------------------------------

    def pool_workers(self, pool: str) -> list[Worker]:
        return [w for w in self.workers.values() if w.pool == pool]

    def capacity(self, pool: str) -> int:
        budget = self.settings.pool.pipeline_budget
        return capacity(self.pool_workers(pool), self.runtimes, budget)

    def assign(self, claim: Claim, pool: str) -> bool:
        """Give `claim` to a worker of `pool` (sent by `send_assigned`); False if none may now."""
        budget = self.settings.pool.pipeline_budget
        worker = choose_worker(self.pool_workers(pool), claim, self.runtimes, budget)
        if worker is None:
            return False
        flight = InFlight(claim)
        if not worker.inflight:
            flight.started, flight.started_mono = self.clock.time(), self.clock.monotonic()
        worker.inflight.append(flight)
        worker.idle_since = None
        # Sent once per worker per exchange (send_assigned): one syscall, one wake-up.
        self.outgoing.setdefault(worker, []).append(run_message(claim))
        return True

    def send_assigned(self) -> None:
        for worker, messages in self.outgoing.items():
            self.send(worker, b"".join(messages))
        self.outgoing.clear()

    def any_idle(self, pool: str) -> bool:
        return any(worker.idle for worker in self.pool_workers(pool))

    def occupancy(self, pool: str) -> Occupancy:
        """What the autoscaler needs to know of a pool's workers."""
        workers = self.live(pool)
        busy = sum(1 for w in workers if w.inflight)
        now, timeout = self.clock.monotonic(), self.pools[pool].idle_timeout
        expired = sum(
            1 for w in workers
            if w.idle and w.idle_since is not None and now - w.idle_since >= timeout
        )  # fmt: skip
        return Occupancy(busy, len(workers) - busy, expired, self.runtimes.pool_mean(pool))

    # -- reaping ---------------------------------------------------------------

    def reap(self) -> None:
        for pid, status in self.launcher.reap():
            exited = classify(pid, status)
            worker = self.by_pid.get(pid)
            if worker is not None:
                self._on_exit(worker, exited)
            elif pid in self.generations.template_pids():
                log.debug("worker template (pid %s) exited: %s", pid, exited.describe())
            else:
                self.unmatched_exits[pid] = exited
                while len(self.unmatched_exits) > 1000:  # orphans adopted from jobs
                    self.unmatched_exits.pop(next(iter(self.unmatched_exits)))

    def _on_exit(self, worker: Worker, exited: Exit) -> None:
        while True:  # what it wrote before it died counts
            messages = worker.channel.receive()
            if not messages:
                break
            self._on_messages(worker, messages)
        incomplete = worker.channel.leftover()
        if incomplete is not None and not worker.untrusted:
            log.warning("worker %s (pid %s) died in the middle of a message: %s",
                        worker.slot, exited.pid, incomplete)  # fmt: skip
        self._unregister(worker)
        worker.channel.close()
        worker.exited = True
        # Whatever its jobs started and left in its process group goes with it
        # (a detached daemon, in a session of its own, is the job's choice).
        self.launcher.kill_group(exited.pid, signal.SIGKILL)
        self.workers.pop(worker.slot, None)
        self.by_pid.pop(exited.pid, None)
        serving = worker.jobs_done > 0 or bool(worker.inflight)
        self._lost_jobs(worker, exited)
        if worker.kill_reason is None and not worker.retiring:
            self._unexpected_death(worker, exited, serving)
        self.spawn_workers()

    def _unexpected_death(self, worker: Worker, exited: Exit, serving: bool) -> None:
        """A worker died without the master asking it to (deaths.py judges)."""
        proven = self._generation(worker.generation).proven
        verdict = judge_unexpected(worker, exited, serving, proven)
        if verdict.boot_failure:
            self._boot_failed(worker.generation, verdict.reason)
            return
        log.warning("%s; replacing it" if not worker.booted else "%s", verdict.reason)
        if verdict.crash:
            self._crash_loop_death()

    def _crash_loop_death(self) -> None:
        pool = self.settings.pool
        self.respawn.crashed(self.clock.monotonic(), pool.crash_window, pool.crash_backoff_max)

    def _generation(self, number: int) -> Generation:
        pending = self.generations.pending
        if pending is not None and pending.number == number:
            return pending
        return self.generations.current

    def _lost_jobs(self, worker: Worker, exited: Exit) -> None:
        """The attempt a dead worker was running, and the jobs that waited behind it;
        the job_failed hooks it could not run go to its generation's template."""
        attempt = lost_attempt(worker, exited, self.node_id, self.clock.time())
        if attempt is None:
            return
        claim = worker.inflight.popleft().claim
        self.events.append(AttemptEnded(claim, attempt))
        template = self._generation(worker.generation).template
        if template is not None:
            template.run_failed_hooks(failed_hooks_order(worker, claim, attempt))
        while worker.inflight:
            self.events.append(NeverStarted(worker.inflight.popleft().claim))

    def _unregister(self, worker: Worker) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(worker.channel)

    # -- timers ----------------------------------------------------------------

    def deadlines(self) -> list[float]:
        """When something here is next due (monotonic)."""
        due = self.limits.deadlines(self.workers.values())
        boot_timeout = self.settings.pool.boot_timeout
        for worker in self.workers.values():
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
        boot_timeout = self.settings.pool.boot_timeout
        for worker in list(self.workers.values()):
            if worker.kill_at is not None and mono >= worker.kill_at and worker.pid is not None:
                self._signal(worker, signal.SIGKILL)
                worker.kill_at = None
            elif (
                not worker.booted
                and worker.kill_reason is None
                and mono - worker.spawned_mono > boot_timeout
            ):
                worker.boot_error = f"worker {worker.slot} did not boot within {boot_timeout:g}s"
                if worker.pid is not None:
                    self.launcher.kill(worker.pid, signal.SIGKILL)
        for worker, verdict, grace in self.limits.check(
            list(self.workers.values()), mono, self.settings.limits
        ):
            self.terminate(worker, verdict.outcome, verdict.message, grace)
        if self.spawning:
            current = self.generations.current
            if current.restart_due is not None and mono >= current.restart_due:
                self.generations.start_template(current)
            self.spawn_workers()

    def close(self) -> None:
        self.generations.close()
