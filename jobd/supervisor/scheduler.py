"""The scheduler the master runs: enqueue each due fire of each schedule, once.

    scheduler = Scheduler(store, settings, node_id)
    due = scheduler.tick(clock.time())   # None: nothing is scheduled

`tick(now)` is cheap until the next fire is due: it remembers that time
and returns at once before it, so the master may call it every step or
only when its timer for the returned time expires. When something is due
it reads the stored cursors (one read), computes the fires with the pure
functions of `jobd.schedule`, and inserts the fires and their jobs in one
write transaction. Any number of masters may do the same at once: the
store's unique (schedule, fire_at) key lets one insert each fire and the
others skip it.

The stored cursor (`fired_until`) is what makes missed fires visible:
after downtime, the fires between the cursor and now are enqueued if they
are within the schedule's `catch_up` window and skipped (logged) if older.

A store error never escapes `tick`: it is logged and the pass is retried
after a backoff (1 s doubling to 30 s), well within the default 10-minute
catch-up window, so a short outage delays fires without losing them.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from jobd.payload import encode_call, unique_key
from jobd.policy import Policy, policy_from_json
from jobd.records import Fire, FiredJob, NewJob, ScheduleProgress, ScheduleState
from jobd.records import iso as iso_time
from jobd.schedule import MISSED_COUNT_CAP, Schedule, due_fires, next_fire
from jobd.settings import Settings
from jobd.store.contract import StoreError

log = logging.getLogger("jobd.scheduler")

CLEANUP_SCHEDULE = "jobd.cleanup"
CLEANUP_ROUTINE = "jobd.maintenance:cleanup"
RETRY_FIRST, RETRY_MAX = 1.0, 30.0
MAX_FIRES = 1000  # per schedule and pass; the rest come in the next pass, at once


class SchedulerStore(Protocol):
    """The part of `jobd.store.contract.Store` the scheduler uses."""

    def sync_schedules(
        self,
        definitions: dict[str, dict[str, Any]],
        next_fires: dict[str, float | None],
        now: float,
    ) -> None: ...

    def schedule_states(self) -> list[ScheduleState]: ...

    def fire_schedules(
        self, node_id: int | None, fires: list[Fire], progress: list[ScheduleProgress], now: float
    ) -> list[FiredJob]: ...

    def routine_policies(self) -> dict[str, dict[str, Any]]: ...


def configured_schedules(settings: Settings) -> tuple[Schedule, ...]:
    """The `[[schedules]]` of the config, and jobd's own retention cleanup."""
    retention = settings.retention
    if retention.schedule == "off":
        return settings.schedules
    cleanup = Schedule(
        name=CLEANUP_SCHEDULE,
        routine=CLEANUP_ROUTINE,
        cron=retention.schedule,
        # no arguments: the routine reads [retention] where it runs
        queue=retention.queue,
        catch_up=6 * 3600.0,  # a daily cleanup missed by a restart still runs
    )
    return (*settings.schedules, cleanup)


class Scheduler:
    """Fires the configured schedules into the store; see the module docstring."""

    def __init__(
        self,
        store: SchedulerStore,
        settings: Settings,
        node_id: int | None = None,
        *,
        max_fires: int = MAX_FIRES,
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.max_fires = max_fires
        self.failures = 0
        self.fired: list[FiredJob] = []  # what the last tick inserted: new jobs to claim
        self._cursors: dict[str, float] = {}  # fires handled by this scheduler, by name
        self.reload(settings)

    def reload(self, settings: Settings) -> None:
        """Use new settings (SIGHUP): the next tick stores the schedules and runs a pass."""
        self.settings = settings
        old = getattr(self, "schedules", {})
        self.schedules = {s.name: s for s in configured_schedules(settings)}
        self.active = [s for s in self.schedules.values() if s.enabled]
        # A changed schedule starts afresh, as its stored cursor does.
        self._cursors = {
            name: cursor
            for name, cursor in self._cursors.items()
            if old.get(name) == self.schedules.get(name)
        }
        self._policies: dict[str, Policy] = {}
        self._catalog: dict[str, dict[str, Any]] | None = None
        self._synced = False
        self.due_at: float | None = None  # wall clock of the next pass; None: now

    def tick(self, now: float) -> float | None:
        """Insert whatever is due at `now` (wall clock, epoch seconds).

        Returns when to call again: the next fire time, an earlier retry
        after a store error, or None when no schedule is enabled.
        """
        self.fired = []
        if self._synced and not self.active:
            return None
        if self.due_at is not None and now < self.due_at:
            return self.due_at
        try:
            if not self._synced:
                self._sync(now)
            self.due_at = self._run_pass(now) if self.active else None
        except StoreError as exc:
            self.failures += 1
            backoff = min(RETRY_FIRST * 2 ** (self.failures - 1), RETRY_MAX)
            if self.failures == 1 or self.failures % 10 == 0:
                log.warning("scheduler: store unavailable, retry in %.0fs: %s", backoff, exc)
            self.due_at = now + backoff
            return self.due_at
        except Exception:
            # A bug here must not stop the master's loop (supervision, claims
            # and signals go on); it is logged with its traceback and retried.
            log.exception("scheduler: pass failed, retry in %.0fs", RETRY_MAX)
            self.due_at = now + RETRY_MAX
            return self.due_at
        if self.failures:
            log.info("scheduler: the store is reachable again")
            self.failures = 0
        return self.due_at if self.active else None

    # -- a pass ---------------------------------------------------------------

    def _sync(self, now: float) -> None:
        definitions = {name: s.definition() for name, s in self.schedules.items()}
        next_fires = {
            name: next_fire(s, now) if s.enabled else None for name, s in self.schedules.items()
        }
        self.store.sync_schedules(definitions, next_fires, now)
        self._synced = True

    def _run_pass(self, now: float) -> float | None:
        states = {state.name: state for state in self.store.schedule_states()}
        self._catalog = None
        fires: list[Fire] = []
        progress: list[ScheduleProgress] = []
        for schedule in self.active:
            since = self._since(schedule.name, states.get(schedule.name), now)
            due = due_fires(schedule, since, now, self.max_fires)
            if due.missed:
                _log_missed(schedule, due.missed, due.first_missed)
            progress.append(
                ScheduleProgress(schedule.name, due.until, next_fire(schedule, due.until))
            )
            fires += [Fire(schedule.name, at, self._job(schedule, at, now)) for at in due.fires]
        self.fired = self.store.fire_schedules(self.node_id, fires, progress, now)
        for fired in self.fired:
            log.info(
                "schedule %s: fired %s as job %s",
                fired.schedule,
                iso_time(fired.fire_at),
                fired.job_id,
            )
        for step in progress:
            self._cursors[step.name] = max(
                step.fired_until, self._cursors.get(step.name, step.fired_until)
            )
        nexts = [step.next_fire_at for step in progress if step.next_fire_at is not None]
        return min(nexts) if nexts else None

    def _since(self, name: str, state: ScheduleState | None, now: float) -> float:
        """Fires up to this instant are handled: the stored cursor, or ours if further."""
        stored = None if state is None else state.fired_until
        known = [c for c in (stored, self._cursors.get(name)) if c is not None]
        if not known:
            # No stored row: another node's config removed it. This node still
            # fires it (its config says so), from now on, never catching up.
            log.warning("schedule %s is not stored (another node's config lacks it)", name)
            self._cursors[name] = now
            return now
        return max(known)

    def _job(self, schedule: Schedule, fire_at: float, now: float) -> NewJob:
        policy = self._policy(schedule.routine)
        args_json, kwargs_json = encode_call(schedule.args, dict(schedule.kwargs))
        return NewJob(
            routine=schedule.routine,
            queue=schedule.queue or policy.queue,
            priority=policy.priority if schedule.priority is None else schedule.priority,
            args_json=args_json,
            kwargs_json=kwargs_json,
            run_at=fire_at,  # ready at once; ordered among jobs by when it was due
            enqueued_at=now,
            max_attempts=policy.max_attempts,
            unique_key=unique_key(schedule.routine, args_json, kwargs_json)
            if policy.unique
            else None,
        )

    def _policy(self, routine: str) -> Policy:
        """The routine's policy from the catalog the workers registered (the master
        never imports routines); the defaults and config overrides if it is not there yet."""
        policy = self._policies.get(routine)
        if policy is None:
            if self._catalog is None:  # read once per pass, and only when needed
                self._catalog = self.store.routine_policies()
            catalog = self._catalog
            overrides = self.settings.routines.get(routine, {})
            if routine in catalog:
                policy = policy_from_json(catalog[routine]).with_overrides(overrides)
                self._policies[routine] = policy
            else:
                defaults = Policy().with_overrides(self.settings.limit_defaults())
                policy = defaults.with_overrides(overrides)  # not cached: look again next time
        return policy


def _log_missed(schedule: Schedule, missed: int, first: float | None) -> None:
    count = f"{missed}+" if missed >= MISSED_COUNT_CAP else str(missed)
    log.warning(
        "schedule %s: %s fires from %s on are older than its catch-up window (%ss): skipped",
        schedule.name,
        count,
        iso_time(first),
        f"{schedule.catch_up:g}",
    )
