"""The master: one thread, one selector loop, no sleeps.

Each `step()` waits on the selector (signal wakeup fd, the store's wake-up
socket, the template's control socket, one socket per worker) until the
next timer, then: handles signals, reads worker messages, reaps children,
runs due timers, and finally settles finished attempts and claims jobs for
free workers in one store transaction. Time comes from an injected clock
and processes from an injected launcher, so tests can step it with fakes.

The master never imports user code (the template does) and never waits on
anything but the selector and store calls bounded by `store.timeout`; a
store that fails stops claims, never supervision.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import random
import selectors
import socket
import time
from typing import Any, Protocol

from setproctitle import setproctitle

from jobd import exitcodes
from jobd.policy import Policy, policy_from_json
from jobd.settings import Settings
from jobd.store.base import Attempt, Claim, Settle, StoreError
from jobd.supervisor import node
from jobd.supervisor.children import Launcher, ProcessLauncher, Template
from jobd.supervisor.outcomes import Exit, after_attempt, classify, death_attempt, never_started
from jobd.supervisor.pool import InFlight, Runtimes, Worker, capacity, choose_worker
from jobd.supervisor.signals import SignalWatch
from jobd.systemd import Notifier
from jobd.wire import STOP, run_message

log = logging.getLogger("jobd.master")

KILL_GRACE = 1.0  # SIGTERM, then SIGKILL this much later
RECHECK_AFTER_WAKE = 0.05  # a wake-up may precede its producer's commit
CRASH_WINDOW = 60.0


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


class Phase(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPING = "stopping"
    DONE = "done"


class MasterStore(Protocol):
    """The part of `jobd.store.base.Store` the master uses."""

    def check_schema(self) -> None: ...
    def register_node(self, name: str, hostname: str, pid: int, now: float) -> int: ...
    def heartbeat(self, node_id: int, now: float, info: dict[str, Any]) -> None: ...
    def stop_node(self, node_id: int, now: float) -> None: ...
    def exchange(
        self, node_id: int, settles: list[Settle], queues: tuple[str, ...], limit: int, now: float
    ) -> list[Claim]: ...
    def register_routines(self, catalog: dict[str, dict[str, Any]], now: float) -> None: ...
    def routine_policies(self) -> dict[str, dict[str, Any]]: ...
    def cancel_requests(self, node_id: int) -> list[int]: ...


class Master:
    def __init__(
        self,
        settings: Settings,
        store: Any,
        *,
        launcher: Launcher | None = None,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        signals: bool = True,
    ) -> None:
        self.settings = settings
        self.store = store
        self.launcher = launcher or ProcessLauncher()
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self.selector = selectors.DefaultSelector()
        self.signals = SignalWatch() if signals else None
        if self.signals is not None:
            self.selector.register(self.signals, selectors.EVENT_READ, "signals")
        self.phase = Phase.STARTING
        self.exit_code = exitcodes.OK
        self.hostname = socket.gethostname()
        self.node_id = 0
        self.generation = 0
        self.template: Template | None = None
        self.template_ready = False
        self.workers: dict[int, Worker] = {}  # by slot
        self.by_pid: dict[int, Worker] = {}
        self.unmatched_exits: dict[int, Exit] = {}
        self.policies: dict[str, Policy] = {}
        self.failed_hooks: set[str] = set()
        self.runtimes = Runtimes()
        self.settles: list[Settle] = []
        self.held: list[Claim] = []
        self.outgoing: dict[Worker, list[bytes]] = {}
        self.target = settings.pool.min_workers
        self.dry = False  # the last claim found fewer ready jobs than it asked for
        self.wake_at: float | None = None  # wall clock: a delayed job becomes ready
        self.recheck_at: float | None = None
        self.store_retry_at = 0.0
        self.store_failures = 0
        self.crashes: list[float] = []
        self.spawn_not_before = 0.0
        self.template_due: float | None = None  # monotonic: restart a template that died
        self.drain_deadline: float | None = None
        self.listener: Any = None
        self.counters = {"succeeded": 0, "failed": 0, "retried": 0, "exchanges": 0, "claimed": 0}
        self.queued_estimate: int | None = None
        self.title = ""
        now = self.clock.monotonic()
        self.next_heartbeat = now
        self.next_poll = now + settings.store.poll_interval
        self.boot_deadline = now + settings.pool.boot_timeout
        self.rand = random.Random()

    # -- lifecycle -----------------------------------------------------------

    def run(self) -> int:
        """Start, loop until stopped, return the exit code."""
        try:
            self.start()
            while self.phase is not Phase.DONE:
                self.step(self.timeout())
        finally:
            self.close()
        return self.exit_code

    def start(self) -> None:
        self.store.check_schema()
        now = self.clock.time()
        name = self.settings.jobd.node_name or self.hostname
        self.node_id = self.store.register_node(name, self.hostname, os.getpid(), now)
        self.policies = _policies(self.store.routine_policies())
        node.rescue_dead_local_nodes(self, now)
        self._listen_for_wakeups()
        self._start_template()
        log.info(
            "node %s started: serving %s with %s-%s workers",
            self.node_id,
            ",".join(self.settings.pool.queues),
            self.settings.pool.min_workers,
            self.settings.pool.max_workers,
        )

    def _listen_for_wakeups(self) -> None:
        path = getattr(self.store, "database_path", None)
        if path:
            from jobd.store.wake import WakeListener

            self.listener = WakeListener(path)
            self.selector.register(self.listener, selectors.EVENT_READ, "wake")

    def close(self) -> None:
        if self.template is not None:
            self.template.stop()
        if self.listener is not None:
            self.listener.close()
        if self.signals is not None:
            self.signals.close()
        self.selector.close()

    # -- the loop ------------------------------------------------------------

    def timeout(self) -> float:
        """Seconds until the next timer is due (0 if work is waiting)."""
        now = self.clock.monotonic()
        if self.settles and now >= self.store_retry_at:
            return 0.0
        deadlines = [self.next_heartbeat, self.next_poll]
        wall_to_mono = now - self.clock.time()
        for wall in (self.wake_at, self.recheck_at):
            if wall is not None:
                deadlines.append(wall + wall_to_mono)
        if self.drain_deadline is not None:
            deadlines.append(self.drain_deadline)
        if self.phase is Phase.STARTING:
            deadlines.append(self.boot_deadline)
        for worker in self.workers.values():
            if worker.kill_at is not None:
                deadlines.append(worker.kill_at)
            elif not worker.booted:
                deadlines.append(worker.spawned_mono + self.settings.pool.boot_timeout)
        if self.spawn_not_before > now:
            deadlines.append(self.spawn_not_before)
        if self.template_due is not None:
            deadlines.append(self.template_due)
        return max(0.0, min(deadlines) - now)

    def step(self, timeout: float = 0.0) -> None:
        for key, mask in self.selector.select(timeout):
            kind = key.data
            if kind == "signals":
                assert self.signals is not None
                for signum in self.signals.take():
                    self.handle_signal(signum)
            elif kind == "wake":
                self._on_wakeups()
            elif kind == "template":
                self._on_template_readable()
            elif isinstance(kind, Worker):
                if mask & selectors.EVENT_WRITE:
                    self._flush(kind)
                if mask & selectors.EVENT_READ:
                    self._on_worker_readable(kind)
        self.reap()
        self._run_timers()
        self.exchange()
        self._maybe_finish()
        self._refresh_title()

    # -- signals -------------------------------------------------------------

    def handle_signal(self, signum: int) -> None:
        import signal

        if signum in (signal.SIGTERM, signal.SIGINT):
            if self.phase in (Phase.STARTING, Phase.RUNNING):
                log.info("%s: draining (again to stop at once)", signal.Signals(signum).name)
                self.begin_drain()
            else:
                self.stop_now()
        elif signum == signal.SIGQUIT:
            self.stop_now()

    def begin_drain(self, exit_code: int = exitcodes.OK) -> None:
        """Stop claiming; let running jobs finish up to graceful_timeout."""
        if self.phase in (Phase.DRAINING, Phase.STOPPING, Phase.DONE):
            return
        self.phase = Phase.DRAINING
        self.exit_code = max(self.exit_code, exit_code)
        self.notifier.stopping()
        self.drain_deadline = self.clock.monotonic() + self.settings.pool.graceful_timeout
        self.notifier.extend_timeout(self.settings.pool.graceful_timeout + 5)
        self._return_held()
        for worker in list(self.workers.values()):
            self._retire(worker)

    def stop_now(self) -> None:
        """Kill every worker; their jobs go back to the queue uncounted."""
        if self.phase in (Phase.STOPPING, Phase.DONE):
            return
        log.info("stopping now")
        self.phase = Phase.STOPPING
        self.notifier.stopping()
        self._return_held()
        for worker in list(self.workers.values()):
            self.terminate(worker, "interrupted", "jobd stopped at once", grace=0.0)

    # -- the template and spawning -------------------------------------------

    def _start_template(self) -> None:
        self.template_due = None
        self.generation += 1
        self.template_ready = False
        self.template = self.launcher.start_template(self.settings, self.generation)
        self.selector.register(self.template, selectors.EVENT_READ, "template")

    def _on_template_readable(self) -> None:
        assert self.template is not None
        messages = self.template.receive()
        if messages is None:
            self._on_template_gone()
            return
        for message in messages:
            op = message.get("op")
            if op == "ready":
                self._on_template_ready(message["catalog"])
            elif op == "boot_error":
                self.fail_boot(str(message.get("error")))
            elif op == "forked":
                self._on_forked(int(message["slot"]), int(message["pid"]))

    def _on_template_gone(self) -> None:
        assert self.template is not None
        self.selector.unregister(self.template)
        self.template.stop()
        if not self.template_ready:
            self.template = None
            self.fail_boot("the worker template exited while importing modules")
            return
        self.template, self.template_ready = None, False
        if self.phase in (Phase.STARTING, Phase.RUNNING):
            log.warning("the worker template died; starting a new one")
            self._note_crash()
            self.template_due = self.spawn_not_before

    def _on_template_ready(self, catalog: dict[str, dict[str, Any]]) -> None:
        self.template_ready = True
        self.policies.update(_policies(catalog))
        self.failed_hooks = {name for name, policy in catalog.items() if policy.get("failed_hook")}
        try:
            self.store.register_routines(catalog, self.clock.time())
        except StoreError as exc:
            log.warning("could not record the routine catalog: %s", exc)
        log.info("worker template ready: %d routines", len(catalog))
        self.spawn_workers()

    def spawn_workers(self) -> None:
        if self.phase not in (Phase.STARTING, Phase.RUNNING) or not self.template_ready:
            return
        now = self.clock.monotonic()
        if now < self.spawn_not_before:
            return
        assert self.template is not None
        live = [w for w in self.workers.values() if not w.retiring and w.kill_reason is None]
        for _ in range(self.target - len(live)):
            slot = next(n for n in range(1, len(self.workers) + 2) if n not in self.workers)
            worker = Worker(slot, self.generation, self.template.fork_worker(slot), now)
            self.workers[slot] = worker
            self.selector.register(worker.channel, selectors.EVENT_READ, worker)

    def _on_forked(self, slot: int, pid: int) -> None:
        worker = self.workers.get(slot)
        if worker is None or worker.pid is not None:
            return
        worker.pid = pid
        self.by_pid[pid] = worker
        exited = self.unmatched_exits.pop(pid, None)
        if exited is not None:
            self._on_worker_exit(worker, exited)
        elif worker.kill_reason is not None:
            self.terminate(worker, *worker.kill_reason, grace=0.0)

    def fail_boot(self, reason: str) -> None:
        """A worker could not boot: stop with exit code 3 rather than crash-loop."""
        if self.exit_code == exitcodes.BOOT_ERROR:
            return
        log.error("worker boot failed: %s", reason)
        self.boot_error = reason
        if self.phase is Phase.STARTING:
            self.phase = Phase.RUNNING  # so that begin_drain applies
        self.begin_drain(exitcodes.BOOT_ERROR)

    # -- workers -------------------------------------------------------------

    def _on_worker_readable(self, worker: Worker) -> None:
        messages = worker.channel.receive()
        if messages is None:  # EOF: the worker is gone; the reaper settles its jobs
            self._unregister(worker)
            if worker.pid is None:  # never forked (the template died first): nothing to reap
                worker.channel.close()
                self.workers.pop(worker.slot, None)
                self.spawn_workers()
            return
        for message in messages:
            self._on_worker_message(worker, message)

    def _on_worker_message(self, worker: Worker, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "done":
            self._on_done(worker, message)
        elif op == "hello":
            self._on_hello(worker, int(message["pid"]))
        elif op == "boot_error":
            worker.boot_error = str(message.get("error"))
        else:
            log.error("worker %s sent an unexpected message: %r", worker.slot, message)

    def _on_hello(self, worker: Worker, pid: int) -> None:
        worker.booted = True
        if worker.pid is None:
            worker.pid = pid
            self.by_pid[pid] = worker
        log.debug("worker %s (pid %s) booted", worker.slot, pid)
        if self.phase is Phase.STARTING:
            booted = sum(1 for w in self.workers.values() if w.booted)
            if booted >= self.settings.pool.min_workers:
                self.phase = Phase.RUNNING
                self.notifier.ready(self.status_line())
                log.info("ready: %d workers", booted)

    def _on_done(self, worker: Worker, message: dict[str, Any]) -> None:
        if not worker.inflight or worker.inflight[0].claim.id != message.get("id"):
            log.error(
                "worker %s finished job %s it was not running", worker.slot, message.get("id")
            )
            return
        claim = worker.inflight.popleft().claim
        started, finished = float(message["started"]), float(message["finished"])
        self.runtimes.observe(claim.routine, finished - started)
        if message.get("ok"):
            attempt = self._attempt(claim, worker, message, "succeeded")
        else:
            error = message.get("error") or {}
            attempt = self._attempt(
                claim,
                worker,
                message,
                str(message.get("outcome", "error")),
                error.get("type"),
                error.get("message"),
                error.get("traceback"),
            )
        self._settle(claim, attempt, message.get("result"))
        worker.jobs_done += 1
        if worker.inflight:
            head = worker.inflight[0]
            head.started, head.started_mono = finished, self.clock.monotonic()

    def _attempt(
        self,
        claim: Claim,
        worker: Worker,
        message: dict[str, Any],
        outcome: str,
        error_type: str | None = None,
        error_message: str | None = None,
        traceback: str | None = None,
    ) -> Attempt:
        return Attempt(
            job_id=claim.id,
            attempt=claim.attempt,
            routine=claim.routine,
            queue=claim.queue,
            node_id=self.node_id,
            worker_pid=worker.pid,
            started_at=message["started"],
            finished_at=message["finished"],
            outcome=outcome,
            error_type=error_type,
            error_message=error_message,
            traceback=traceback,
            cpu_seconds=message.get("cpu"),
            peak_rss=message.get("rss"),
        )

    def _settle(self, claim: Claim, attempt: Attempt, result_json: str | None = None) -> None:
        now = self.clock.time()
        policy = self.policies.get(claim.routine) or Policy()
        settle = after_attempt(
            claim,
            attempt,
            policy,
            now,
            self.rand.random(),
            result_json,
            failed_hook=claim.routine in self.failed_hooks,
        )
        self.settles.append(settle)
        state = settle.state.value
        if state == "queued" and not settle.uncount:
            self.counters["retried"] += 1
            assert settle.run_at is not None
            self.wake_at = (
                settle.run_at if self.wake_at is None else min(self.wake_at, settle.run_at)
            )
        elif state in self.counters:
            self.counters[state] += 1
        if state in ("failed", "queued") and attempt.outcome not in ("succeeded", "interrupted"):
            log.warning(
                "job %s (%s) attempt %s/%s: %s%s",
                claim.id,
                claim.routine,
                claim.attempt,
                claim.max_attempts,
                attempt.outcome,
                f": {attempt.error_type}: {attempt.error_message}" if attempt.error_type else "",
            )

    def _flush(self, worker: Worker) -> None:
        worker.channel.flush()
        if not worker.channel.wants_write:
            self.selector.modify(worker.channel, selectors.EVENT_READ, worker)

    def _retire(self, worker: Worker) -> None:
        """Ask a worker to exit after the jobs it holds."""
        if worker.retiring:
            return
        worker.retiring = True
        self._send(worker, STOP)

    def terminate(
        self, worker: Worker, outcome: str, message: str, grace: float = KILL_GRACE
    ) -> None:
        """Kill a worker (SIGTERM, then SIGKILL after `grace`); record why."""
        import signal

        if worker.kill_reason is None:
            worker.kill_reason = (outcome, message)
        if worker.pid is None:
            return  # not forked yet; killed as soon as its pid is known (_on_forked)
        if grace <= 0:
            self.launcher.kill(worker.pid, signal.SIGKILL)
            worker.kill_at = None
        else:
            self.launcher.kill(worker.pid, signal.SIGTERM)
            worker.kill_at = self.clock.monotonic() + grace

    def reap(self) -> None:
        for pid, status in self.launcher.reap():
            exited = classify(pid, status)
            worker = self.by_pid.get(pid)
            if worker is not None:
                self._on_worker_exit(worker, exited)
            elif self.template is not None and pid == self.template.pid:
                log.debug("worker template (pid %s) exited: %s", pid, exited.describe())
            else:
                self.unmatched_exits[pid] = exited

    def _on_worker_exit(self, worker: Worker, exited: Exit) -> None:
        while True:  # what it wrote before it died counts
            messages = worker.channel.receive()
            if not messages:
                break
            for message in messages:
                self._on_worker_message(worker, message)
        self._unregister(worker)
        worker.channel.close()
        worker.exited = True
        self.workers.pop(worker.slot, None)
        self.by_pid.pop(exited.pid, None)
        self._settle_lost_jobs(worker, exited)
        if not worker.booted and worker.kill_reason is None and not worker.retiring:
            self.fail_boot(
                worker.boot_error or f"worker {worker.slot} exited during boot: {exited.describe()}"
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
        error_type = exited.describe() if exited.signal else "WorkerExit"
        attempt = death_attempt(
            head.claim,
            self.node_id,
            exited.pid,
            head.started,
            self.clock.time(),
            outcome,
            message,
            error_type,
        )
        self._settle(head.claim, attempt)
        while worker.inflight:
            self.settles.append(never_started(worker.inflight.popleft().claim))
        self.dry = False

    def _note_crash(self) -> None:
        now = self.clock.monotonic()
        self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW] + [now]
        backoff = min(0.1 * 2 ** (len(self.crashes) - 1), 10.0) if len(self.crashes) > 1 else 0.0
        self.spawn_not_before = now + backoff

    def _unregister(self, worker: Worker) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(worker.channel)

    # -- wake-ups, timers ----------------------------------------------------

    def _on_wakeups(self) -> None:
        served = set(self.settings.pool.queues)
        now = self.clock.time()
        for run_at, queues in self.listener.drain():
            if served.isdisjoint(queues):
                continue
            if run_at <= now:
                self.dry = False
                if self.recheck_at is None:
                    self.recheck_at = now + RECHECK_AFTER_WAKE
            else:
                self.wake_at = run_at if self.wake_at is None else min(self.wake_at, run_at)

    def _run_timers(self) -> None:
        mono, now = self.clock.monotonic(), self.clock.time()
        if self.wake_at is not None and now >= self.wake_at:
            self.wake_at, self.dry = None, False
        if self.recheck_at is not None and now >= self.recheck_at:
            self.recheck_at, self.dry = None, False
        if mono >= self.next_poll:
            self.next_poll, self.dry = mono + self.settings.store.poll_interval, False
        if mono >= self.next_heartbeat:
            self.next_heartbeat = mono + self.settings.store.heartbeat_interval
            node.heartbeat(self, now)
        if self.phase is Phase.STARTING and mono >= self.boot_deadline:
            self.fail_boot(f"workers did not boot within {self.settings.pool.boot_timeout:g}s")
        if self.drain_deadline is not None and mono >= self.drain_deadline:
            self.drain_deadline = None
            for worker in list(self.workers.values()):
                self.terminate(
                    worker,
                    "interrupted",
                    "still running after graceful_timeout "
                    f"({self.settings.pool.graceful_timeout:g}s)",
                )
        self._enforce_deadlines(mono)
        if self.phase in (Phase.STARTING, Phase.RUNNING):
            if self.template_due is not None and mono >= self.template_due:
                self._start_template()
            self.spawn_workers()

    def _enforce_deadlines(self, mono: float) -> None:
        import signal

        boot_timeout = self.settings.pool.boot_timeout
        for worker in list(self.workers.values()):
            if worker.kill_at is not None and mono >= worker.kill_at and worker.pid is not None:
                self.launcher.kill(worker.pid, signal.SIGKILL)
                worker.kill_at = None
            elif (
                not worker.booted
                and worker.kill_reason is None
                and mono - worker.spawned_mono > boot_timeout
            ):
                worker.boot_error = f"worker {worker.slot} did not boot within {boot_timeout:g}s"
                if worker.pid is not None:
                    self.launcher.kill(worker.pid, signal.SIGKILL)

    # -- the store transaction -----------------------------------------------

    def exchange(self) -> None:
        """Settle finished attempts and claim jobs for free workers, in one transaction."""
        self._dispatch_held()
        limit = self._claim_limit()
        if not self.settles and (limit == 0 or self.dry):
            return
        mono = self.clock.monotonic()
        if mono < self.store_retry_at:
            return
        settles, self.settles = self.settles, []
        try:
            claims = self.store.exchange(
                self.node_id, settles, self.settings.pool.queues, limit, self.clock.time()
            )
        except StoreError as exc:
            self.settles = settles + self.settles
            self._store_failed(exc, mono)
            return
        if self.store_failures:
            log.info("the store is reachable again")
            self.store_failures = 0
        self.counters["exchanges"] += 1
        self.counters["claimed"] += len(claims)
        self.dry = len(claims) < limit
        for claim in claims:
            self._assign(claim)
        self._send_assigned()

    def _claim_limit(self) -> int:
        if self.phase is not Phase.RUNNING:
            return 0
        free = capacity(
            list(self.workers.values()), self.runtimes, self.settings.pool.pipeline_budget
        )
        return max(0, free - len(self.held))

    def _assign(self, claim: Claim) -> None:
        worker = choose_worker(
            list(self.workers.values()), claim, self.runtimes, self.settings.pool.pipeline_budget
        )
        if worker is None:
            self.held.append(claim)
            return
        flight = InFlight(claim)
        if not worker.inflight:
            flight.started, flight.started_mono = self.clock.time(), self.clock.monotonic()
        worker.inflight.append(flight)
        # Sent once per worker per exchange (_send_assigned): one syscall, one wake-up.
        self.outgoing.setdefault(worker, []).append(run_message(claim))

    def _send_assigned(self) -> None:
        for worker, messages in self.outgoing.items():
            self._send(worker, b"".join(messages))
        self.outgoing.clear()

    def _dispatch_held(self) -> None:
        while self.held:
            idle = next((w for w in self.workers.values() if w.idle), None)
            if idle is None:
                break
            self._assign(self.held.pop(0))
        self._send_assigned()

    def _return_held(self) -> None:
        self.settles.extend(never_started(claim) for claim in self.held)
        self.held = []

    def _send(self, worker: Worker, data: bytes) -> None:
        worker.channel.send(data)
        if worker.channel.wants_write:
            self.selector.modify(
                worker.channel, selectors.EVENT_READ | selectors.EVENT_WRITE, worker
            )

    def _store_failed(self, exc: StoreError, mono: float) -> None:
        self.store_failures += 1
        backoff = min(0.1 * 2 ** (self.store_failures - 1), 5.0)
        self.store_retry_at = mono + backoff
        if self.store_failures == 1 or self.store_failures % 20 == 0:
            log.warning("store unavailable (claims paused, retry in %.1fs): %s", backoff, exc)

    def _maybe_finish(self) -> None:
        if self.phase not in (Phase.DRAINING, Phase.STOPPING) or self.workers:
            return
        if self.settles:
            if self.clock.monotonic() < self.store_retry_at:
                return
            if self.store_failures > 10:
                log.error(
                    "%d attempt results could not be recorded; those jobs will be "
                    "put back when this node is found dead",
                    len(self.settles),
                )
                self.exit_code = max(self.exit_code, exitcodes.FAILURE)
                self.settles = []
            else:
                return
        try:
            self.store.stop_node(self.node_id, self.clock.time())
        except StoreError as exc:
            log.warning("could not mark node %s stopped: %s", self.node_id, exc)
        counters = self.counters
        log.info(
            "stopped: %d succeeded, %d failed, %d retried; %d claimed in %d transactions",
            counters["succeeded"],
            counters["failed"],
            counters["retried"],
            counters["claimed"],
            counters["exchanges"],
        )
        self.phase = Phase.DONE

    # -- status --------------------------------------------------------------

    def _refresh_title(self) -> None:
        queued = "?" if self.queued_estimate is None else self.queued_estimate
        title = f"jobd: master [{len(self.workers)} workers, {queued} queued]"
        if title != self.title:
            setproctitle(title)
            self.title = title

    def status_line(self) -> str:
        workers = list(self.workers.values())
        busy = sum(1 for w in workers if w.inflight)
        queued = "?" if self.queued_estimate is None else str(self.queued_estimate)
        return f"{busy}/{len(workers)} busy, {queued} queued"


def _policies(catalog: dict[str, dict[str, Any]]) -> dict[str, Policy]:
    return {name: policy_from_json(policy) for name, policy in catalog.items()}
