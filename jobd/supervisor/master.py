"""The master: one thread, one selector loop, no sleeps.

Each `step()` waits on the selector (signal wakeup fd, the store's wake-up
socket, the template's control socket, one socket per worker) until the
next timer, then: handles signals, reads worker messages, reaps children,
runs due timers, and finally settles finished attempts and claims jobs for
free workers in one store transaction. Time comes from an injected clock
and processes from an injected launcher, so tests can step it with fakes.

The master owns the lifecycle, the store and the timers; its children are
the workforce's (workforce.py). It never imports user code (the template
does) and never waits on anything but the selector and store calls bounded
by `store.timeout`; a store that fails stops claims, never supervision.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import selectors
import signal
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from setproctitle import setproctitle

from jobd import exitcodes, logs
from jobd.policy import policy_from_json
from jobd.records import Attempt, Claim, ClaimRequest, Settle
from jobd.scheduling import Scheduler
from jobd.settings import ConfigError, Settings, keep_unreloadable
from jobd.store.contract import StoreError
from jobd.supervisor import node
from jobd.supervisor.autoscaler import autoscale
from jobd.supervisor.children import Launcher, ProcessLauncher
from jobd.supervisor.outcomes import after_attempt, never_started
from jobd.supervisor.phase import Phase
from jobd.supervisor.pool import Worker
from jobd.supervisor.signals import SignalWatch
from jobd.supervisor.workforce import Generation, Workforce
from jobd.systemd import Notifier
from jobd.units import format_duration

log = logging.getLogger("jobd.master")

RECHECK_AFTER_WAKE = 0.05  # a wake-up may precede its producer's commit


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


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
        reload: Callable[[], Settings] | None = None,
        open_store: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.open_store = open_store  # when `store` is None: opened by start(), closed by close()
        self.load_settings = reload  # re-reads the config file and environment (SIGHUP)
        self.store = store
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self.selector = selectors.DefaultSelector()
        self.signals = SignalWatch() if signals else None
        if self.signals is not None:
            self.selector.register(self.signals, selectors.EVENT_READ, "signals")
        self.workforce = Workforce(
            self, settings, launcher or ProcessLauncher(), self.clock, self.selector
        )
        self.phase = Phase.STARTING
        self.exit_code = exitcodes.OK
        self.hostname = socket.gethostname()
        self.node_id = 0
        self.settles: list[Settle] = []
        # claimed, waiting for a worker of its pool that may take them
        self.held: list[tuple[str, Claim]] = []
        # pools whose last claim found fewer ready jobs than asked: no claim until
        # a wake-up, a poll, a timer or a requeue says there may be more
        self.dry: set[str] = set()
        self.wake_at: float | None = None  # wall clock: a delayed job becomes ready
        self.recheck_at: float | None = None
        self.store_retry_at = 0.0
        self.store_failures = 0
        self.drain_deadline: float | None = None
        self.listener: Any = None  # jobd.store.contract.WakeSource
        self.listener_fd = -1
        self.counters = {"succeeded": 0, "failed": 0, "retried": 0, "exchanges": 0, "claimed": 0}
        self.queued_estimate: int | None = None
        self.queued_capped = False  # the count stopped at its cap: "10000+ queued"
        self.oldest_ready_age: float | None = None
        self.reload_error: str | None = None
        self.bounds = {p.name: (p.min_workers, p.max_workers) for p in settings.pool_specs()}
        self.last_change = {p.name: self.clock.monotonic() for p in settings.pool_specs()}
        self.next_scale = self.clock.monotonic()
        self.rates = node.Rates()
        self.title = ""
        now = self.clock.monotonic()
        self.next_heartbeat = now
        self.next_watchdog = now
        self.next_poll = now + settings.store.poll_interval
        self.boot_deadline = now + settings.pool.boot_timeout
        self.rand = random.Random()
        self.scheduler: Scheduler | None = None  # created once the node is registered
        self.schedule_due: float | None = None  # wall clock: the next fire

    @property
    def workers(self) -> dict[int, Worker]:
        return self.workforce.workers

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
        # The template first: its interpreter starts and imports the application
        # while this process imports SQLAlchemy (0.3 s) and opens the store.
        self.workforce.start()
        if self.store is None:
            assert self.open_store is not None
            self.store = self.open_store()
        self.store.check_schema()
        now = self.clock.time()
        name = self.settings.jobd.node_name or self.hostname
        self.node_id = self.store.register_node(name, self.hostname, os.getpid(), now)
        self.scheduler = Scheduler(self.store, self.settings, self.node_id)
        self.workforce.policies = {
            name: policy_from_json(p) for name, p in self.store.routine_policies().items()
        }
        node.rescue_dead_local_nodes(self, now)
        self._listen_for_wakeups()
        log.info(
            "node %s started: %s",
            self.node_id,
            "; ".join(
                f"pool {p.name} serves {','.join(p.queues)} with {p.min_workers}-{p.max_workers} "
                "workers"
                for p in self.settings.pool_specs()
            ),
        )

    def _listen_for_wakeups(self) -> None:
        """The store's wake-up source (None: the poll interval is the only backstop)."""
        self.listener = self.store.wake_listener()
        if self.listener is not None:
            self.listener_fd = self.listener.fileno()
            self.selector.register(self.listener_fd, selectors.EVENT_READ, "wake")

    def check_listener(self) -> None:
        """Heartbeat: is the wake-up source still there? It reconnects itself if not."""
        if self.listener is None:
            return
        if not self.listener.check():
            self.mark_ready()  # wake-ups may have been missed
        fd = self.listener.fileno()
        if fd != self.listener_fd:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(self.listener_fd)
            self.listener_fd = fd
            if fd >= 0:
                self.selector.register(fd, selectors.EVENT_READ, "wake")

    def close(self) -> None:
        self.workforce.close()
        if self.open_store is not None and self.store is not None:
            self.store.close()
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
        deadlines = [self.next_heartbeat, self.next_poll, self.next_scale]
        deadlines += self.workforce.deadlines()
        if self.notifier.watchdog_usec:
            deadlines.append(self.next_watchdog)
        wall_to_mono = now - self.clock.time()
        for wall in (self.wake_at, self.recheck_at, self.schedule_due):
            if wall is not None:
                deadlines.append(wall + wall_to_mono)
        if self.drain_deadline is not None:
            deadlines.append(self.drain_deadline)
        if self.phase is Phase.STARTING:
            deadlines.append(self.boot_deadline)
        return max(0.0, min(deadlines) - now)

    def step(self, timeout: float = 0.0) -> None:
        woken = signalled = False
        for key, mask in self.selector.select(timeout):
            kind = key.data
            if kind == "signals":
                assert self.signals is not None
                signalled = True
                for signum in self.signals.take():
                    self.handle_signal(signum)
            elif kind == "wake":
                woken = self._on_wakeups(at_most=1) > 0
            elif isinstance(kind, Generation):
                self.workforce.on_template_readable(kind)
            elif isinstance(kind, Worker):
                if mask & selectors.EVENT_WRITE:
                    self.workforce.flush(kind)
                if mask & selectors.EVENT_READ:
                    self.workforce.on_readable(kind)
        if woken:
            # A producer's wake-up goes to the claim first: reaping, the timers and
            # reading the socket until it is empty (the last read raises) come after.
            # 0.04-0.07 ms of an idle pool's enqueue-to-start (docs/performance.md). Not
            # in a step with a signal: a SIGCHLD's worker is reaped before claiming.
            if not signalled:
                self.exchange()
            self._on_wakeups()
        self.workforce.reap()
        self._run_timers()
        self.exchange()
        self._tick_scheduler()
        self._maybe_finish()
        self._refresh_title()
        self._pet_watchdog()

    def _pet_watchdog(self) -> None:
        """WATCHDOG=1 at half of WATCHDOG_USEC, sent only from a step that completed."""
        usec = self.notifier.watchdog_usec
        if usec and self.clock.monotonic() >= self.next_watchdog:
            self.notifier.watchdog()
            self.next_watchdog = self.clock.monotonic() + usec / 2_000_000

    # -- signals and phases --------------------------------------------------

    def handle_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self.phase in (Phase.STARTING, Phase.RUNNING):
                log.info("%s: draining (again to stop at once)", signal.Signals(signum).name)
                self.begin_drain()
            else:
                self.stop_now()
        elif signum == signal.SIGQUIT:
            self.stop_now()
        elif signum == signal.SIGHUP:
            self.begin_reload()
        elif signum in (signal.SIGTTIN, signal.SIGTTOU):
            self.adjust_bounds(1 if signum == signal.SIGTTIN else -1)
        elif signum == signal.SIGUSR2 and os.environ.get("JOBD_DEBUG_HANG") == "1":
            log.warning("SIGUSR2 with JOBD_DEBUG_HANG=1: the loop stops answering (debug)")
            while True:  # a hung loop, for testing the watchdog
                time.sleep(3600)

    def begin_reload(self) -> None:
        """SIGHUP: new config and code in a new generation of workers.

        The running generation keeps working until the new one has booted
        (workforce.py); a config that does not load, or a generation that
        does not boot, leaves everything as it was, and says why in STATUS=.
        """
        if self.phase is not Phase.RUNNING:
            log.warning("SIGHUP ignored while %s", self.phase.value)
            return
        self.notifier.reloading()
        if self.load_settings is None:
            self.reload_failed("no config to reload")
            return
        try:
            fresh = self.load_settings()
        except ConfigError as exc:
            self.reload_failed(str(exc))
            return
        fresh, fixed = keep_unreloadable(self.settings, fresh)
        for name in fixed:
            log.warning("reload: %s changed but needs a restart; keeping the running value", name)
        log.info("reload: booting generation %d", self.workforce.generations + 1)
        self.workforce.begin_reload(fresh)

    def reload_committed(self, settings: Settings) -> None:
        self.settings = settings
        if self.scheduler is not None:
            self.scheduler.reload(settings)
        self.reload_error = None
        logs.set_level(settings.jobd.log_level)
        self.bounds = {p.name: (p.min_workers, p.max_workers) for p in settings.pool_specs()}
        now = self.clock.monotonic()
        self.last_change = {p.name: now for p in settings.pool_specs()}
        self.mark_ready()
        self.notifier.ready(self.status_line())

    def reload_failed(self, reason: str) -> None:
        log.error("reload failed, still running the previous config and code: %s", reason)
        self.reload_error = reason
        self.notifier.ready(self.status_line())

    def adjust_bounds(self, delta: int) -> None:
        """SIGTTIN/SIGTTOU: raise or lower every pool's bounds by one (until a reload)."""
        for name, (old_low, old_high) in self.bounds.items():
            low, high = max(1, old_low + delta), max(1, old_high + delta)
            self.bounds[name] = (low, high)
            target = self.workforce.targets.get(name, low)
            self.workforce.targets[name] = min(max(target, low), high)
            log.info("pool %s: bounds now %d-%d workers", name, low, high)
            self.workforce.shrink(name)
        self.workforce.spawn_workers()

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
        self.workforce.retire_all()

    def stop_now(self) -> None:
        """Kill every worker; their jobs go back to the queue uncounted."""
        if self.phase in (Phase.STOPPING, Phase.DONE):
            return
        log.info("stopping now")
        self.phase = Phase.STOPPING
        self.notifier.stopping()
        self._return_held()
        self.workforce.terminate_all("interrupted", "jobd stopped at once", grace=0.0)

    def fail_boot(self, reason: str) -> None:
        """A worker could not boot: stop with exit code 3 rather than crash-loop."""
        if self.exit_code == exitcodes.BOOT_ERROR:
            return
        log.error("worker boot failed: %s", reason)
        if self.phase is Phase.STARTING:
            self.phase = Phase.RUNNING  # so that begin_drain applies
        self.begin_drain(exitcodes.BOOT_ERROR)

    # -- what the workforce reports ------------------------------------------

    def worker_booted(self, booted: int) -> None:
        wanted = sum(pool.min_workers for pool in self.settings.pool_specs())
        if self.phase is Phase.STARTING and booted >= wanted:
            self.phase = Phase.RUNNING
            self.notifier.ready(self.status_line())
            log.info("ready: %d workers", booted)

    def catalog_ready(self, catalog: dict[str, dict[str, Any]]) -> None:
        try:
            self.store.register_routines(catalog, self.clock.time())
        except StoreError as exc:
            log.warning("could not record the routine catalog: %s", exc)

    def settle(self, claim: Claim, attempt: Attempt, result_json: str | None = None) -> None:
        """Where the job of a finished attempt goes; recorded in the next exchange."""
        now = self.clock.time()
        settle = after_attempt(
            claim, attempt, self.workforce.policy(claim.routine), now, self.rand.random(),
            result_json, failed_hook=claim.routine in self.workforce.failed_hooks,
        )  # fmt: skip
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
                claim.id, claim.routine, claim.attempt, claim.max_attempts, attempt.outcome,
                f": {attempt.error_type}: {attempt.error_message}" if attempt.error_type else "",
            )  # fmt: skip

    def requeue(self, claim: Claim) -> None:
        """A job that never started (it waited in a dead worker's pipe)."""
        self.settles.append(never_started(claim))
        self.mark_ready([claim.queue])

    def mark_ready(self, queues: list[str] | None = None) -> None:
        """There may be ready jobs again (in `queues`, or anywhere): claim."""
        if queues is None:
            self.dry.clear()
            return
        for pool in self.workforce.pools.values():
            if not set(pool.queues).isdisjoint(queues):
                self.dry.discard(pool.name)

    # -- wake-ups, timers ----------------------------------------------------

    def _on_wakeups(self, at_most: int | None = None) -> int:
        """Read the wake-ups waiting (`at_most` of them); how many were read."""
        now = self.clock.time()
        wakeups = self.listener.drain(at_most)
        for run_at, queues in wakeups:
            if not self.settings.serves(queues):
                continue
            if run_at <= now:
                self.mark_ready(queues)
                if self.recheck_at is None:
                    self.recheck_at = now + RECHECK_AFTER_WAKE
            else:
                self.wake_at = run_at if self.wake_at is None else min(self.wake_at, run_at)
        return len(wakeups)

    def _run_timers(self) -> None:
        mono, now = self.clock.monotonic(), self.clock.time()
        if self.wake_at is not None and now >= self.wake_at:
            self.wake_at = None
            self.mark_ready()
        if self.recheck_at is not None and now >= self.recheck_at:
            self.recheck_at = None
            self.mark_ready()
        if mono >= self.next_poll:
            self.next_poll = mono + self.settings.store.poll_interval
            self.mark_ready()
        if mono >= self.next_scale:
            self.next_scale = mono + min(p.scale_interval for p in self.workforce.pools.values())
            autoscale(self, now)
        if mono >= self.next_heartbeat:
            self.next_heartbeat = mono + self.settings.store.heartbeat_interval
            node.heartbeat(self, now)
        if self.phase is Phase.STARTING and mono >= self.boot_deadline:
            self.fail_boot(f"workers did not boot within {self.settings.pool.boot_timeout:g}s")
        if self.drain_deadline is not None and mono >= self.drain_deadline:
            self.drain_deadline = None
            timeout = self.settings.pool.graceful_timeout
            self.workforce.terminate_all(
                "interrupted", f"still running after graceful_timeout ({timeout:g}s)"
            )
        self.workforce.tick(mono)

    def _tick_scheduler(self) -> None:
        """Recurring routines: a comparison until a fire is due, then one bounded
        transaction; what fired is claimed at once.

        After the step's exchange, and only once the pool is running: the first
        pass imports croniter and syncs every schedule (35-45 ms here, a `file`
        subprocess included), which in the timers ran before the first claim
        and held the first jobs back by that much (docs/performance.md).
        """
        if self.scheduler is None or self.phase is not Phase.RUNNING:
            return
        self.schedule_due = self.scheduler.tick(self.clock.time())
        if self.scheduler.fired:
            self.mark_ready()
            self.exchange()

    # -- the store transaction -----------------------------------------------

    def exchange(self) -> None:
        """Settle finished attempts and claim jobs for every pool's free workers, in one
        transaction."""
        self._dispatch_held()
        requests, pools = self._claim_requests()
        if not self.settles and not requests:
            return
        mono = self.clock.monotonic()
        if mono < self.store_retry_at:
            return
        settles, self.settles = self.settles, []
        try:
            claimed = self.store.exchange_many(self.node_id, settles, requests, self.clock.time())
        except StoreError as exc:
            self.settles = settles + self.settles
            self._store_failed(exc, mono)
            return
        if self.store_failures:
            log.info("the store is reachable again")
            self.store_failures = 0
        self.counters["exchanges"] += 1
        for pool, request, claims in zip(pools, requests, claimed, strict=True):
            self.counters["claimed"] += len(claims)
            if len(claims) < request.limit:
                self.dry.add(pool)
            for claim in claims:
                if not self.workforce.assign(claim, pool):
                    self.held.append((pool, claim))
        self.workforce.send_assigned()

    def _claim_requests(self) -> tuple[list[ClaimRequest], list[str]]:
        """One request per pool that has free workers and may have ready jobs."""
        if self.phase is not Phase.RUNNING:
            return [], []
        requests, pools = [], []
        for name, pool in self.workforce.pools.items():
            if name in self.dry:
                continue
            held = sum(1 for owner, _ in self.held if owner == name)
            limit = self.workforce.capacity(name) - held
            if limit > 0:
                requests.append(ClaimRequest(pool.queues, limit, pool.weights))
                pools.append(name)
        return requests, pools

    def _dispatch_held(self) -> None:
        waiting, self.held = self.held, []
        for pool, claim in waiting:
            if not (self.workforce.any_idle(pool) and self.workforce.assign(claim, pool)):
                self.held.append((pool, claim))
        self.workforce.send_assigned()

    def _return_held(self) -> None:
        self.settles.extend(never_started(claim) for _, claim in self.held)
        self.held = []

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
            if self.clock.monotonic() < self.store_retry_at or self.store_failures <= 10:
                return
            log.error(
                "%d attempt results could not be recorded; those jobs will be "
                "put back when this node is found dead",
                len(self.settles),
            )
            self.exit_code = max(self.exit_code, exitcodes.FAILURE)
            self.settles = []
        try:
            self.store.stop_node(self.node_id, self.clock.time())
        except StoreError as exc:
            log.warning("could not mark node %s stopped: %s", self.node_id, exc)
        c = self.counters
        log.info(
            "stopped: %d succeeded, %d failed, %d retried; %d claimed in %d transactions",
            c["succeeded"], c["failed"], c["retried"], c["claimed"], c["exchanges"],
        )  # fmt: skip
        self.phase = Phase.DONE

    # -- status --------------------------------------------------------------

    def _refresh_title(self) -> None:
        queued = "?" if self.queued_estimate is None else self.queued_estimate
        if self.queued_capped:
            queued = f"{queued}+"
        title = f"jobd: master [{len(self.workers)} workers, {queued} queued]"
        if title != self.title:
            setproctitle(title)
            self.title = title

    def status_line(self) -> str:
        """STATUS= and the heartbeat: `3/8 busy, 120 queued (oldest 35s), 1.2k done/min, ...`."""
        parts = []
        pools = self.workforce.pools
        for name in pools:
            workers = [w for w in self.workforce.pool_workers(name) if not w.standby]
            busy = sum(1 for w in workers if w.inflight)
            size = len(self.workforce.live(name))
            text = f"{busy}/{size} busy" if len(pools) == 1 else f"{name} {busy}/{size} busy"
            target = self.workforce.targets.get(name, size)
            if target != size:
                text += f" (target {target})"
            parts.append(text)
        if self.queued_estimate is not None:
            more = "+" if self.queued_capped else ""
            queued = f"{node.short(self.queued_estimate)}{more} queued"
            if self.oldest_ready_age is not None and self.queued_estimate:
                queued += f" (oldest {format_duration(self.oldest_ready_age)})"
            parts.append(queued)
        done, failed = self.rates.per_minute()
        if done is not None and failed is not None:
            parts.append(f"{node.short(done)} done/min, {node.short(failed)} failed/min")
        if self.store_failures:
            parts.append("store unavailable: claims paused")
        if self.reload_error is not None:
            parts.append(f"reload failed: {self.reload_error}")
        if self.phase in (Phase.DRAINING, Phase.STOPPING):
            parts.append(self.phase.value)
        return ", ".join(parts)
