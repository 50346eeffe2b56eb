"""The master: one thread, one selector loop, no sleeps.

Each `step()` waits on the selector (signal wakeup fd, the store's wake-up
socket, the template's control socket, one socket per worker) until the
next timer, then: handles signals, reads worker and template messages,
reaps children, runs due timers, and settles finished attempts and claims
jobs for free workers in one store transaction. Time comes from an injected
clock and processes from an injected launcher, so tests step it with fakes.

The master owns the lifecycle (phases, signals, reload, drain), the store
and the timers; the parts it drives each take what they need and return
what the master applies: the workforce (its children, events.py), the pool
sizes, the dispatch bookkeeping, the autoscaler's plan, the node's duties
(node.py) and the scheduler. It never imports user code (the template
does) and never waits on anything but the selector and store calls bounded
by `store.timeout`; a store that fails stops claims, never supervision.
"""

from __future__ import annotations

import logging
import selectors
import signal
from collections.abc import Callable
from typing import Any

from setproctitle import setproctitle

from jobd import exitcodes, logs
from jobd.records import Attempt, Claim
from jobd.settings import Settings
from jobd.store.contract import Store, StoreError
from jobd.supervisor import autoscaler, events, reloads, status
from jobd.supervisor.catalog import Catalog
from jobd.supervisor.children import Launcher, ProcessLauncher
from jobd.supervisor.clock import Clock, Every, SystemClock
from jobd.supervisor.dispatch import Dispatch
from jobd.supervisor.generations import Generation
from jobd.supervisor.node import Node
from jobd.supervisor.phase import Lifecycle, Phase
from jobd.supervisor.scheduler import Scheduler
from jobd.supervisor.signals import SignalWatch, hang_if_debugging
from jobd.supervisor.sizes import PoolSizes
from jobd.supervisor.wakeups import Wakeups
from jobd.supervisor.workers import Worker
from jobd.supervisor.workforce import Workforce
from jobd.systemd import Notifier

log = logging.getLogger("jobd.master")


class Master:
    def __init__(
        self,
        settings: Settings,
        store: Store | None,
        *,
        launcher: Launcher | None = None,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        signals: bool = True,
        reload: Callable[[], Settings] | None = None,
        open_store: Callable[[], Store] | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self.open_store = open_store  # when `store` is None: opened by start(), closed by close()
        self.load_settings = reload  # re-reads the config file and environment (SIGHUP)
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self.selector = selectors.DefaultSelector()
        self.signals = SignalWatch() if signals else None
        if self.signals is not None:
            self.selector.register(self.signals, selectors.EVENT_READ, "signals")
        now = self.clock.monotonic()
        self.sizes = PoolSizes(settings.pool_specs(), now)
        self.catalog = Catalog()
        self.workforce = Workforce(
            settings, self.sizes, self.catalog, launcher or ProcessLauncher(), self.clock,
            self.selector,
        )  # fmt: skip
        self.dispatch = Dispatch()
        self.life = Lifecycle(boot_deadline=now + settings.pool.boot_timeout)
        self.node = Node(settings.jobd.node_name)
        self.wakeups = Wakeups(self.selector)
        self.schedule_due: float | None = None  # wall clock: the next fire
        self.queues = autoscaler.QueueFigures()
        self.reload_error: str | None = None
        self.rates = status.Rates()
        self.title = ""
        self.heartbeat, self.scale, self.watchdog = Every(now), Every(now), Every(now)
        self.poll = Every(now + settings.store.poll_interval)
        self.scheduler: Scheduler | None = None  # created once the node is registered

    @property
    def store(self) -> Store:
        assert self._store is not None, "the store is opened by start()"
        return self._store

    @store.setter
    def store(self, store: Store) -> None:
        self._store = store

    @property
    def phase(self) -> Phase:
        return self.life.phase

    @property
    def exit_code(self) -> int:
        return self.life.exit_code

    @property
    def workers(self) -> dict[int, Worker]:
        return self.workforce.workers

    @property
    def counters(self) -> dict[str, int]:
        return self.dispatch.counters

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
        # while this process imports SQLAlchemy and opens the store.
        self.workforce.start()
        if self._store is None:
            assert self.open_store is not None
            self._store = self.open_store()
        self.store.check_schema()
        now, window = self.clock.time(), self.settings.store.node_window()
        self.catalog.use(self.store.routine_policies())  # until the template reports
        decider = self.catalog.for_dead_node(now)
        rescued = self.node.join(self.store, window, now, decider, self._run_failed_hooks)
        node_id = self.workforce.node_id = self.node.id
        self.scheduler = Scheduler(self.store, self.settings, node_id)
        if rescued:
            self.mark_ready()
        self.wakeups.listen(self.store.wake_listener())
        log.info("node %s started: %s", node_id, status.pools(self.settings.pool_specs()))

    def close(self) -> None:
        self.workforce.close()
        if self.open_store is not None and self._store is not None:
            self._store.close()
        self.wakeups.close()
        if self.signals is not None:
            self.signals.close()
        self.selector.close()

    # -- the loop ------------------------------------------------------------

    def timeout(self) -> float:
        """Seconds until the next timer is due (0 if work is waiting)."""
        now = self.clock.monotonic()
        if self.dispatch.settles and not self.dispatch.backing_off(now):
            return 0.0
        deadlines = [self.heartbeat.at, self.poll.at, self.scale.at, *self.workforce.deadlines()]
        if self.notifier.watchdog_usec:
            deadlines.append(self.watchdog.at)
        walls = self.wakeups.timers() + ([] if self.schedule_due is None else [self.schedule_due])
        deadlines += [wall + now - self.clock.time() for wall in walls]
        deadlines += self.life.deadlines()
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
        self._apply_events()
        if woken:
            # A producer's wake-up goes to the claim first: reaping, the timers and
            # reading the socket until it is empty (the last read raises) come after.
            # 0.04-0.07 ms of an idle pool's enqueue-to-start (docs/performance.md). Not
            # in a step with a signal: a SIGCHLD's worker is reaped before claiming.
            if not signalled:
                self.exchange()
            self._on_wakeups()
        self.workforce.reap()
        self._apply_events()
        self._run_timers()
        self._apply_events()
        self.exchange()
        self._tick_scheduler()
        self._maybe_finish()
        self._refresh_title()
        self._pet_watchdog()

    def _apply_events(self) -> None:
        """What the workforce reported: attempts to settle, the pool's boot, reloads."""
        for event in self.workforce.take_events():
            if isinstance(event, events.AttemptEnded):
                self.settle(event.claim, event.attempt, event.result_json)
            elif isinstance(event, events.NeverStarted):
                self.dispatch.never_started(event.claim)
                self.mark_ready([event.claim.queue])
            elif isinstance(event, events.Booted):
                self._booted(event.count)
            elif isinstance(event, events.BootFailed):
                self.fail_boot(event.reason)
            elif isinstance(event, events.CatalogReady):
                self._record_catalog(event.catalog)
            elif isinstance(event, events.ReloadCommitted):
                self._reload_committed(event.settings)
            else:
                self._reload_failed(event.reason)

    def _pet_watchdog(self) -> None:
        """WATCHDOG=1 at half of WATCHDOG_USEC, sent only from a step that completed."""
        usec = self.notifier.watchdog_usec
        if usec and self.watchdog.due(self.clock.monotonic(), usec / 2_000_000):
            self.notifier.watchdog()

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
        elif signum == signal.SIGUSR2:
            hang_if_debugging()

    def begin_reload(self) -> None:
        """SIGHUP: new config and code in a new generation of workers.

        The running generation keeps working until the new one has booted
        (reloads.py); a config that does not load, or a generation that
        does not boot, leaves everything as it was, and says why in STATUS=.
        """
        if self.phase is Phase.STARTING:
            # The config may have changed after this master read it: apply it as
            # soon as the pool is up rather than drop the request.
            log.info("SIGHUP while starting: reloading once the pool is up")
            self.life.reload_deferred = True
            return
        if self.phase is not Phase.RUNNING:
            log.warning("SIGHUP ignored while %s", self.phase.value)
            return
        self.notifier.reloading()
        fresh = reloads.fresh_settings(self.settings, self.load_settings)
        if isinstance(fresh, str):
            self._reload_failed(fresh)
            return
        log.info("reload: booting generation %d", self.workforce.generations.count + 1)
        self.workforce.begin_reload(fresh)

    def _reload_committed(self, settings: Settings) -> None:
        self.settings = settings
        if self.scheduler is not None:
            self.scheduler.reload(settings)
        self.reload_error = None
        logs.set_level(settings.jobd.log_level)
        self.mark_ready()
        self.notifier.ready(self.status_line())

    def _reload_failed(self, reason: str) -> None:
        log.error("reload failed, still running the previous config and code: %s", reason)
        self.reload_error = reason
        self.notifier.ready(self.status_line())

    def adjust_bounds(self, delta: int) -> None:
        """SIGTTIN/SIGTTOU: raise or lower every pool's bounds by one (until a reload)."""
        for name in self.sizes.nudge(delta):
            low, high = self.sizes.bounds(name)
            log.info("pool %s: bounds now %d-%d workers", name, low, high)
            self.workforce.shrink(name)
        self.workforce.spawn_workers()

    def begin_drain(self, exit_code: int = exitcodes.OK) -> None:
        """Stop claiming; let running jobs finish up to graceful_timeout."""
        deadline = self.clock.monotonic() + self.settings.pool.graceful_timeout
        if not self.life.drain(exit_code, deadline):
            return
        self.notifier.stopping()
        self.notifier.extend_timeout(self.settings.pool.graceful_timeout + 5)
        self.dispatch.return_held()
        self.workforce.retire_all()

    def stop_now(self) -> None:
        """Kill every worker; their jobs go back to the queue uncounted."""
        if not self.life.stop():
            return
        log.info("stopping now")
        self.notifier.stopping()
        self.dispatch.return_held()
        self.workforce.terminate_all("interrupted", "jobd stopped at once", grace=0.0)

    def fail_boot(self, reason: str) -> None:
        """A worker could not boot: stop with exit code 3 rather than crash-loop."""
        if not self.life.boot_failed():
            return
        log.error("worker boot failed: %s", reason)
        self.begin_drain(exitcodes.BOOT_ERROR)

    def _booted(self, booted: int) -> None:
        wanted = self.workforce.generations.current.min_workers()
        if booted >= wanted and self.life.ready():
            self.notifier.ready(self.status_line())
            log.info("ready: %d workers", booted)
            if self.life.reload_deferred:
                self.life.reload_deferred = False
                self.begin_reload()

    def _record_catalog(self, catalog: dict[str, dict[str, object]]) -> None:
        try:
            self.store.register_routines(catalog, self.clock.time(), self.node.id)
        except StoreError as exc:
            log.warning("could not record the routine catalog: %s", exc)

    # -- attempts and their jobs ---------------------------------------------

    def settle(self, claim: Claim, attempt: Attempt, result_json: str | None = None) -> None:
        """Where the job of a finished attempt goes; recorded in the next exchange."""
        settle = self.catalog.after(claim, attempt, self.clock.time(), result_json)
        self.dispatch.settle(claim, attempt, settle)
        if settle.run_at is not None and not settle.uncount:
            self.wakeups.at(settle.run_at)  # a retry: claimable then

    def mark_ready(self, queues: list[str] | None = None) -> None:
        """There may be ready jobs again (in `queues`, or anywhere): claim."""
        self.dispatch.mark_ready(self.sizes.pools.values(), queues)

    # -- wake-ups and timers -------------------------------------------------

    def _on_wakeups(self, at_most: int | None = None) -> int:
        """Read the wake-ups waiting (`at_most` of them); how many were read."""
        return self.wakeups.read(self.clock.time(), self.settings.serves, self.mark_ready, at_most)

    def _run_timers(self) -> None:
        mono, now, pools = self.clock.monotonic(), self.clock.time(), self.sizes.pools.values()
        delayed_ready = self.wakeups.expired(now)
        if self.poll.due(mono, self.settings.store.poll_interval) or delayed_ready:
            self.mark_ready()
        if self.scale.due(mono, min(pool.scale_interval for pool in pools)):
            self._autoscale(now, mono)
        if self.heartbeat.due(mono, self.settings.store.heartbeat_interval):
            self._heartbeat(now)
        if self.life.boot_overdue(mono):
            self.fail_boot(f"workers did not boot within {self.settings.pool.boot_timeout:g}s")
        if self.life.drain_overdue(mono):
            timeout = self.settings.pool.graceful_timeout
            self.workforce.terminate_all(
                "interrupted", f"still running after graceful_timeout ({timeout:g}s)"
            )
        self.workforce.tick(mono)

    def _autoscale(self, now: float, mono: float) -> None:
        """Each pool's size from its queues' load (autoscaler.py plans, scaling.py decides)."""
        pools = self.sizes.pools.values()
        loads = autoscaler.measure(self.store, self.settings.served_queues(), pools, now)
        if loads is None:
            return
        self.queues = autoscaler.figures(loads, now)
        if self.phase is not Phase.RUNNING:
            return
        for resize in autoscaler.plan(
            pools, loads, self.sizes, self.workforce.occupancy, now, mono
        ):
            log.info("pool %s: %s", resize.pool, resize.reason)
            self.sizes.resize(resize.pool, resize.target, mono)
            if resize.grow:
                self.workforce.spawn_workers()
            else:
                self.workforce.shrink(resize.pool, idle_only=True)

    def _heartbeat(self, now: float) -> None:
        """Record liveness and what runs here; stop cancelled jobs; rescue dead nodes."""
        self.rates.sample(self.clock.monotonic(), self.counters)
        info = status.node_info(
            self.phase.value, self.settings, self.workforce, self.sizes, self.counters
        )
        window, decider = self.settings.store.node_window(), self.catalog.for_dead_node(now)
        beat = self.node.beat(self.store, window, now, info, decider, self._run_failed_hooks)
        if beat is not None:
            self.workforce.jobs.cancel(beat.cancels)
            if beat.rescued:
                self.mark_ready()
        if not self.wakeups.check():  # its own connection: checked even when the store is not
            self.mark_ready()  # wake-ups may have been missed
        self.notifier.status(self.status_line())

    def _run_failed_hooks(self, order: dict[str, Any]) -> None:
        """The job_failed hooks of an attempt a rescue lost (duties.rescue), run by
        the current generation's template; none while it has no template."""
        template = self.workforce.generations.current.template
        if template is not None:
            template.run_failed_hooks(order)

    def _tick_scheduler(self) -> None:
        """Recurring routines (scheduler.py); what fired is claimed at once. After the
        exchange, once running: the first pass (croniter, every schedule synced, 35-45
        ms) held the first claims back when it ran with the timers (docs/performance.md)."""
        if self.scheduler is None or self.phase is not Phase.RUNNING:
            return
        self.schedule_due = self.scheduler.tick(self.clock.time())
        if self.scheduler.fired:
            self.mark_ready()
            self.exchange()

    # -- the store transaction -----------------------------------------------

    def exchange(self) -> None:
        """Settle finished attempts and claim jobs for every pool's free workers, in one
        transaction (dispatch.py)."""
        claiming = self.phase is Phase.RUNNING
        now, mono = self.clock.time(), self.clock.monotonic()
        self.dispatch.exchange(self.store, self.node.id, self.workforce.jobs, claiming, now, mono)

    def _maybe_finish(self) -> None:
        if not self.life.winding_down or self.workers:
            return
        dropped = self.dispatch.give_up(self.clock.monotonic())
        if dropped is None:
            return  # the store may come back for the results still to record
        self.node.leave(self.store, self.clock.time())
        log.info("stopped: %s", self.dispatch.summary())
        self.life.finish(bool(dropped))

    # -- status --------------------------------------------------------------

    def _refresh_title(self) -> None:
        title = status.title(self.workforce, self.queues)
        if title != self.title:
            setproctitle(title)
            self.title = title

    def status_line(self) -> str:
        """STATUS= and the heartbeat: `3/8 busy, 120 queued (oldest 35s), 1.2k done/min, ...`."""
        notes = ["store unavailable: claims paused"] if self.dispatch.failures else []
        notes += [] if self.reload_error is None else [f"reload failed: {self.reload_error}"]
        notes += [self.phase.value] if self.life.winding_down else []
        return status.status_line(self.workforce, self.sizes, self.queues, self.rates, notes)
