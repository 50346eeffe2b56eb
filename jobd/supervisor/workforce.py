"""The master's children, from the template's fork request to the reaping.

The workforce owns the worker template, the workers and everything done to
them: spawning (with backoff after crashes), their messages, reaping and
classifying their deaths, the hard limits watched while a job runs, and
recycling. What it learns about jobs (a result, a death mid-job) it hands
to the master (`Supervisor`), which owns the store transaction.
"""

from __future__ import annotations

import contextlib
import logging
import random
import selectors
import signal
from dataclasses import dataclass, field
from typing import Any, Protocol

from jobd.policy import Policy, policy_from_json
from jobd.processes import Exit, classify
from jobd.records import Attempt, Claim
from jobd.settings import Settings
from jobd.supervisor.children import Launcher, Template
from jobd.supervisor.limits import Verdict, memory_verdict, time_verdict
from jobd.supervisor.outcomes import death_attempt
from jobd.supervisor.pool import InFlight, Runtimes, Worker, capacity, choose_worker
from jobd.units import format_size
from jobd.wire import STOP

log = logging.getLogger("jobd.master")

KILL_GRACE = 1.0  # stop-now and drain timeouts: SIGTERM, then SIGKILL this much later
CRASH_WINDOW = 60.0
QUOTA_JITTER = 0.1


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class Supervisor(Protocol):
    """What the workforce needs of the master."""

    node_id: int

    def settle(self, claim: Claim, attempt: Attempt, result_json: str | None = None) -> None: ...

    def requeue(self, claim: Claim) -> None: ...

    def worker_booted(self, booted: int) -> None: ...

    def fail_boot(self, reason: str) -> None: ...

    def catalog_ready(self, catalog: dict[str, dict[str, Any]]) -> None: ...

    def reload_committed(self, settings: Settings) -> None: ...

    def reload_failed(self, reason: str) -> None: ...


@dataclass(eq=False)
class Generation:
    """One version of the config and the code: a template and the workers it forks."""

    number: int
    settings: Settings
    template: Template | None = None
    ready: bool = False
    catalog: dict[str, dict[str, Any]] = field(default_factory=dict)
    restart_due: float | None = None  # monotonic: restart its template, which died


class Workforce:
    def __init__(
        self,
        supervisor: Supervisor,
        settings: Settings,
        launcher: Launcher,
        clock: Clock,
        selector: selectors.BaseSelector,
    ) -> None:
        self.supervisor = supervisor
        self.settings = settings
        self.launcher = launcher
        self.clock = clock
        self.selector = selector
        self.generations = 0
        self.current = Generation(0, settings)
        self.pending: Generation | None = None  # a reload being booted
        self.workers: dict[int, Worker] = {}  # by slot
        self.by_pid: dict[int, Worker] = {}
        self.unmatched_exits: dict[int, Exit] = {}
        self.policies: dict[str, Policy] = {}
        self.failed_hooks: set[str] = set()
        self.runtimes = Runtimes()
        self.pools = {pool.name: pool for pool in settings.pool_specs()}
        self.targets = {name: pool.min_workers for name, pool in self.pools.items()}
        self.pool_runtime: dict[str, float] = {}  # recent mean runtime per pool
        self.spawning = True  # false once draining or stopping
        self.crashes: list[float] = []
        self.spawn_not_before = 0.0
        self.next_memory_check = 0.0
        self.outgoing: dict[Worker, list[bytes]] = {}
        self.rand = random.Random()

    # -- generations and their templates ---------------------------------------

    @property
    def generation(self) -> int:
        return self.current.number

    def start(self) -> None:
        """The first generation, from the settings the master started with."""
        self.current = self._new_generation(self.settings)

    def begin_reload(self, settings: Settings) -> None:
        """Boot a new generation beside the current one (see `_commit`)."""
        if self.pending is not None:
            self._abort("superseded by a newer reload", quiet=True)
        self.pending = self._new_generation(settings)

    def _new_generation(self, settings: Settings) -> Generation:
        self.generations += 1
        generation = Generation(self.generations, settings)
        self._start_template(generation)
        return generation

    def _start_template(self, generation: Generation) -> None:
        generation.restart_due, generation.ready = None, False
        template = self.launcher.start_template(generation.settings, generation.number)
        generation.template = template
        self.selector.register(template, selectors.EVENT_READ, generation)

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

    def _stop_template(self, generation: Generation) -> None:
        if generation.template is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(generation.template)
            generation.template.stop()
            generation.template = None

    def _template_gone(self, generation: Generation) -> None:
        was_ready = generation.ready
        self._stop_template(generation)
        generation.ready = False
        if not was_ready:
            self._boot_failed(generation.number, "the worker template exited while importing")
        elif generation is self.current and self.spawning:
            log.warning("the worker template died; starting a new one")
            self._note_crash()
            generation.restart_due = self.spawn_not_before

    def _template_ready(self, generation: Generation, catalog: dict[str, dict[str, Any]]) -> None:
        generation.ready = True
        generation.catalog = catalog
        log.info(
            "worker template ready: generation %d, %d routines", generation.number, len(catalog)
        )
        if generation is self.current:
            self._use_catalog(catalog)
        self.spawn_workers()

    def _use_catalog(self, catalog: dict[str, dict[str, Any]]) -> None:
        self.policies = {name: policy_from_json(p) for name, p in catalog.items()}
        self.failed_hooks = {name for name, p in catalog.items() if p.get("failed_hook")}
        self.supervisor.catalog_ready(catalog)

    def _boot_failed(self, generation: int, reason: str) -> None:
        if self.pending is not None and generation == self.pending.number:
            self._abort(reason)
        else:
            self.supervisor.fail_boot(reason)

    def _maybe_commit(self) -> None:
        """The new generation has booted enough workers: it takes over."""
        pending = self.pending
        if pending is None:
            return
        booted = [w for w in self.workers.values() if w.generation == pending.number and w.booted]
        if len(booted) < sum(pool.min_workers for pool in pending.settings.pool_specs()):
            return
        old = self.current
        self.current, self.pending = pending, None
        self.settings = pending.settings
        self.pools = {pool.name: pool for pool in self.settings.pool_specs()}
        self.targets = {name: pool.min_workers for name, pool in self.pools.items()}
        for worker in list(self.workers.values()):
            if worker.generation == pending.number:
                worker.standby = False
            else:
                self.retire(worker)
        self._stop_template(old)
        self._use_catalog(pending.catalog)
        log.info("reloaded: generation %d took over from %d", pending.number, old.number)
        self.supervisor.reload_committed(pending.settings)

    def _abort(self, reason: str, quiet: bool = False) -> None:
        """A reload that cannot boot: its workers go, the running generation stays."""
        pending = self.pending
        assert pending is not None
        self.pending = None
        self._stop_template(pending)
        for worker in list(self.workers.values()):
            if worker.generation == pending.number:
                self.terminate(worker, "interrupted", "reload aborted", grace=0.0)
        if not quiet:
            self.supervisor.reload_failed(reason)

    def policy(self, routine: str) -> Policy:
        return self.policies.get(routine) or Policy()

    # -- spawning --------------------------------------------------------------

    def spawn_workers(self) -> None:
        if not self.spawning:
            return
        if self.clock.monotonic() >= self.spawn_not_before:
            self._spawn(self.current, self.targets)
        if self.pending is not None:
            wanted = {p.name: p.min_workers for p in self.pending.settings.pool_specs()}
            self._spawn(self.pending, wanted, standby=True)

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
        number = self.current.number if generation is None else generation
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
        retired = order[: max(len(live) - self.targets.get(pool, 0), 0)]
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

    def _note_crash(self) -> None:
        now = self.clock.monotonic()
        self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW] + [now]
        backoff = min(0.1 * 2 ** (len(self.crashes) - 1), 10.0) if len(self.crashes) > 1 else 0.0
        self.spawn_not_before = now + backoff

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
        for message in messages:
            self._on_message(worker, message)

    def _on_message(self, worker: Worker, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "done":
            self._on_done(worker, message)
        elif op == "horse":
            if worker.inflight and worker.inflight[0].claim.id == message.get("id"):
                worker.inflight[0].horse = int(message["pid"])
        elif op == "hello":
            self._on_hello(worker, int(message["pid"]))
        elif op == "boot_error":
            worker.boot_error = str(message.get("error"))
        else:
            log.error("worker %s sent an unexpected message: %r", worker.slot, message)

    def _on_hello(self, worker: Worker, pid: int) -> None:
        worker.booted = True
        worker.idle_since = self.clock.monotonic()
        if worker.pid is None:
            worker.pid = pid
            self.by_pid[pid] = worker
        log.debug("worker %s (pid %s) booted", worker.slot, pid)
        if self.pending is not None and worker.generation == self.pending.number:
            self._maybe_commit()
            return
        current = self.current.number
        booted = sum(1 for w in self.workers.values() if w.booted and w.generation == current)
        self.supervisor.worker_booted(booted)
        self.shrink(worker.pool, idle_only=True)  # a target lowered while it booted

    def _on_done(self, worker: Worker, message: dict[str, Any]) -> None:
        if not worker.inflight or worker.inflight[0].claim.id != message.get("id"):
            log.error(
                "worker %s finished job %s it was not running", worker.slot, message.get("id")
            )
            return
        flight = worker.inflight.popleft()
        claim = flight.claim
        started, finished = float(message["started"]), float(message["finished"])
        self.runtimes.observe(claim.routine, finished - started)
        error = message.get("error") or {}
        outcome = "succeeded" if message.get("ok") else str(message.get("outcome", "error"))
        attempt = Attempt(
            job_id=claim.id, attempt=claim.attempt, routine=claim.routine, queue=claim.queue,
            node_id=self.supervisor.node_id, worker_pid=worker.pid, started_at=started,
            finished_at=finished, outcome=outcome, error_type=error.get("type"),
            error_message=error.get("message"), traceback=error.get("traceback"),
            cpu_seconds=message.get("cpu"), peak_rss=message.get("rss"),
        )  # fmt: skip
        if flight.verdict is not None:  # the master killed its horse: say why
            _apply_verdict(attempt, flight.verdict)
        self.supervisor.settle(claim, attempt, message.get("result"))
        worker.jobs_done += 1
        mean = self.pool_runtime.get(worker.pool)
        elapsed = max(finished - started, 0.0)
        self.pool_runtime[worker.pool] = elapsed if mean is None else mean + 0.2 * (elapsed - mean)
        if worker.inflight:
            head = worker.inflight[0]
            head.started, head.started_mono = finished, self.clock.monotonic()
        else:
            worker.idle_since = self.clock.monotonic()
        self._maybe_recycle(worker, message.get("rss_now"))

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

    # -- control ---------------------------------------------------------------

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
        self.launcher.kill(worker.pid, signum)
        worker.signalled = signum

    def terminate_all(self, outcome: str, message: str, grace: float = KILL_GRACE) -> None:
        self.spawning = False
        for worker in list(self.workers.values()):
            self.terminate(worker, outcome, message, grace)

    # -- dispatch --------------------------------------------------------------

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
        from jobd.wire import run_message

        # Sent once per worker per exchange (send_assigned): one syscall, one wake-up.
        self.outgoing.setdefault(worker, []).append(run_message(claim))
        return True

    def any_idle(self, pool: str) -> bool:
        return any(worker.idle for worker in self.pool_workers(pool))

    def idle_longer_than(self, pool: str, seconds: float) -> int:
        now = self.clock.monotonic()
        return sum(
            1 for w in self.live(pool)
            if w.idle and w.idle_since is not None and now - w.idle_since >= seconds
        )  # fmt: skip

    def send_assigned(self) -> None:
        for worker, messages in self.outgoing.items():
            self.send(worker, b"".join(messages))
        self.outgoing.clear()

    # -- reaping ---------------------------------------------------------------

    def reap(self) -> None:
        for pid, status in self.launcher.reap():
            exited = classify(pid, status)
            worker = self.by_pid.get(pid)
            if worker is not None:
                self._on_exit(worker, exited)
            elif pid in self._template_pids():
                log.debug("worker template (pid %s) exited: %s", pid, exited.describe())
            else:
                self.unmatched_exits[pid] = exited
                while len(self.unmatched_exits) > 1000:  # orphans adopted from jobs
                    self.unmatched_exits.pop(next(iter(self.unmatched_exits)))

    def _template_pids(self) -> set[int]:
        return {
            g.template.pid for g in (self.current, self.pending) if g is not None and g.template
        }

    def _on_exit(self, worker: Worker, exited: Exit) -> None:
        while True:  # what it wrote before it died counts
            messages = worker.channel.receive()
            if not messages:
                break
            for message in messages:
                self._on_message(worker, message)
        self._unregister(worker)
        worker.channel.close()
        worker.exited = True
        self.workers.pop(worker.slot, None)
        self.by_pid.pop(exited.pid, None)
        self._settle_lost_jobs(worker, exited)
        if not worker.booted and worker.kill_reason is None and not worker.retiring:
            self._boot_failed(
                worker.generation,
                worker.boot_error
                or f"worker {worker.slot} exited during boot: {exited.describe()}",
            )
        elif worker.kill_reason is None and not worker.retiring:
            log.warning("worker %s (pid %s) died: %s", worker.slot, exited.pid, exited.describe())
            self._note_crash()
        self.spawn_workers()

    def _settle_lost_jobs(self, worker: Worker, exited: Exit) -> None:
        if not worker.inflight:
            return
        head = worker.inflight.popleft()
        outcome, message = worker.kill_reason or (
            "killed",
            f"worker {worker.slot} (pid {exited.pid}) died: {exited.describe()}",
        )
        if exited.signal:
            error_type = exited.describe()
        elif worker.signalled is not None:  # it handled our SIGTERM and exited
            error_type = signal.Signals(worker.signalled).name
        else:
            error_type = "WorkerExit"
        attempt = death_attempt(
            head.claim, self.supervisor.node_id, exited.pid, head.started, self.clock.time(),
            outcome, message, error_type, worker.kill_rss,
        )  # fmt: skip
        self.supervisor.settle(head.claim, attempt)
        while worker.inflight:
            self.supervisor.requeue(worker.inflight.popleft().claim)

    def _unregister(self, worker: Worker) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(worker.channel)

    # -- timers ----------------------------------------------------------------

    def deadlines(self) -> list[float]:
        """When something here is next due (monotonic)."""
        due = []
        boot_timeout = self.settings.pool.boot_timeout
        watching_memory = False
        for worker in self.workers.values():
            if worker.kill_at is not None:
                due.append(worker.kill_at)
            elif not worker.booted:
                due.append(worker.spawned_mono + boot_timeout)
            head = worker.inflight[0] if worker.inflight else None
            if head is None or head.started_mono is None:
                continue
            if head.kill_at is not None:
                due.append(head.kill_at)
            policy = self.policy(head.claim.routine)
            if policy.time_limit is not None and head.verdict is None:
                due.append(head.started_mono + policy.time_limit)
            watching_memory = watching_memory or policy.memory_limit is not None
        if watching_memory:
            due.append(self.next_memory_check)
        if self.spawning and self.spawn_not_before > self.clock.monotonic():
            due.append(self.spawn_not_before)
        if self.current.restart_due is not None:
            due.append(self.current.restart_due)
        return due

    def tick(self, mono: float) -> None:
        """Kill deadlines, boot timeouts, hard limits, respawns."""
        boot_timeout = self.settings.pool.boot_timeout
        sample_memory = mono >= self.next_memory_check
        if sample_memory:
            self.next_memory_check = mono + self.settings.limits.memory_check_interval
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
            self._watch_limits(worker, mono, sample_memory)
        if self.spawning:
            due = self.current.restart_due
            if due is not None and mono >= due:
                self._start_template(self.current)
            self.spawn_workers()

    def _watch_limits(self, worker: Worker, mono: float, sample_memory: bool) -> None:
        head = worker.inflight[0] if worker.inflight else None
        if head is None or head.started_mono is None or worker.kill_reason is not None:
            return
        if head.kill_at is not None and mono >= head.kill_at and head.horse is not None:
            self.launcher.kill_group(head.horse, signal.SIGKILL)
            head.kill_at = None
        if head.verdict is not None:
            return
        policy = self.policy(head.claim.routine)
        verdict = time_verdict(mono - head.started_mono, policy)
        if verdict is None and sample_memory and policy.memory_limit is not None:
            watched = head.horse or worker.pid
            if watched is not None:
                rss = self.launcher.rss(watched, with_children=head.horse is not None)
                verdict = memory_verdict(rss, policy)
        if verdict is not None:
            self._enforce(worker, head, verdict, mono)

    def _enforce(self, worker: Worker, head: InFlight, verdict: Verdict, mono: float) -> None:
        claim = head.claim
        log.warning("job %s (%s): %s; killing it", claim.id, claim.routine, verdict.message)
        grace = self.settings.limits.kill_grace if verdict.signal == signal.SIGTERM else 0.0
        if head.horse is not None:  # isolated: the job's process group, not the worker
            head.verdict = verdict
            self.launcher.kill_group(head.horse, verdict.signal)
            if grace > 0:
                head.kill_at = mono + grace
            return
        worker.kill_rss = verdict.rss
        self.terminate(worker, verdict.outcome, verdict.message, grace)

    def close(self) -> None:
        for generation in (self.current, self.pending):
            if generation is not None:
                self._stop_template(generation)


def _apply_verdict(attempt: Attempt, verdict: Verdict) -> None:
    attempt.outcome = verdict.outcome  # error_type keeps how the horse ended (its signal)
    attempt.error_message = verdict.message
    if verdict.rss is not None:
        attempt.peak_rss = max(attempt.peak_rss or 0, verdict.rss)
