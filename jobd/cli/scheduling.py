"""`jobd schedules`, `jobd health` and `jobd cleanup`."""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from jobd import exitcodes
from jobd.cli.commands import UsageError, open_client
from jobd.cli.output import print_json, print_table
from jobd.health import evaluate, healthy
from jobd.maintenance import DAY, delete_old
from jobd.records import ScheduleState, iso
from jobd.schedule import Schedule

OVERDUE_AFTER = 60.0  # a next fire this far in the past means no master is firing it


def add_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the commands with `add(name, handler, help, json=...)` (jobd.cli)."""
    add("schedules", schedules, "schedules, their next fire and last outcome", json=True)
    add(
        "health",
        health,
        "check the master, ready jobs, running jobs and the failure rate; "
        "exit 0 healthy, 1 unhealthy",
        json=True,
    )
    command = add("cleanup", cleanup, "delete old finished jobs (the retention cleanup)", json=True)
    command.add_argument(
        "--completed-days",
        type=float,
        help="delete succeeded and cancelled jobs this many days old "
        "(default: retention.completed_after, 7 days)",
    )
    command.add_argument(
        "--failed-days",
        type=float,
        help="delete failed jobs this many days old (default: retention.failed_after, 30 days)",
    )


# -- jobd schedules -------------------------------------------------------------


def schedules(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        states = client.store.schedule_states()
    now = time.time()
    if args.json:
        print_json([_schedule_json(state) for state in states])
        return exitcodes.OK
    if not states:
        print("no schedules stored (a master stores its config's schedules when it starts)")
        return exitcodes.OK
    rows = []
    for state in states:
        schedule = Schedule.from_definition(state.name, state.definition)
        next_fire = _local(state.next_fire_at, schedule.timezone)
        if not schedule.enabled:
            next_fire = "disabled"
        elif state.next_fire_at is not None and state.next_fire_at < now - OVERDUE_AFTER:
            next_fire = f"{next_fire} (overdue)"
        rows.append(
            [
                state.name,
                schedule.routine,
                schedule.when,
                schedule.timezone,
                next_fire,
                _utc(state.next_fire_at) if schedule.enabled else None,
                _local(state.last_fire_at, schedule.timezone),
                _outcome(state),
            ]
        )
    print_table(
        ["name", "routine", "when", "timezone", "next fire", "next (UTC)", "last fire", "outcome"],
        rows,
    )
    return exitcodes.OK


def _schedule_json(state: ScheduleState) -> dict[str, Any]:
    schedule = Schedule.from_definition(state.name, state.definition)
    return {
        "name": state.name,
        "routine": schedule.routine,
        "cron": schedule.cron,
        "every": schedule.every,
        "timezone": schedule.timezone,
        "enabled": schedule.enabled,
        "args": list(schedule.args),
        "kwargs": dict(schedule.kwargs),
        "queue": schedule.queue,
        "priority": schedule.priority,
        "catch_up": schedule.catch_up,
        "next_fire_at": iso(state.next_fire_at),
        "next_fire_local": _local_iso(state.next_fire_at, schedule.timezone),
        "last_fire_at": iso(state.last_fire_at),
        "last_fire_local": _local_iso(state.last_fire_at, schedule.timezone),
        "last_job_id": state.last_job_id,
        "last_outcome": _outcome(state),
        "fired_until": iso(state.fired_until),
        "defined_at": iso(state.defined_at),
    }


def _outcome(state: ScheduleState) -> str | None:
    """The last fire's job state; "deleted" once retention removed it."""
    if state.last_job_id is None:
        return None
    return state.last_job_state or "deleted"


def _local(ts: float | None, timezone: str) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _local_iso(ts: float | None, timezone: str) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, ZoneInfo(timezone)).isoformat(timespec="seconds")


def _utc(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- jobd health ----------------------------------------------------------------


def health(args: argparse.Namespace) -> int:
    """Exit 0 when healthy, 1 when not (or when the database cannot be read)."""
    with open_client(args) as client:
        limits = client.settings.health
        now = time.time()
        facts = client.store.health_facts(
            now, now - limits.node_stale_after, now - limits.failure_window
        )
    checks = evaluate(facts, limits, now)
    ok = healthy(checks)
    if args.json:
        print_json({"healthy": ok, "checked_at": iso(now), "checks": [c.to_json() for c in checks]})
    else:
        failed = sum(not check.ok for check in checks)
        print("healthy" if ok else f"UNHEALTHY: {failed} of {len(checks)} checks failed")
        print_table(
            ["check", "status", "detail"],
            [[c.name, "ok" if c.ok else "FAIL", c.summary] for c in checks],
        )
    return exitcodes.OK if ok else exitcodes.FAILURE


# -- jobd cleanup ---------------------------------------------------------------


def cleanup(args: argparse.Namespace) -> int:
    completed, failed = (
        _days(args.completed_days, "--completed-days"),
        _days(args.failed_days, "--failed-days"),
    )  # checked before touching the store
    with open_client(args) as client:
        retention = client.settings.retention
        completed = retention.completed_after if completed is None else completed
        failed = retention.failed_after if failed is None else failed
        counts = delete_old(client.store, time.time(), completed, failed, retention.batch_size)
    if args.json:
        print_json(counts)
    else:
        jobs = counts["succeeded"] + counts["cancelled"] + counts["failed"]
        print(
            f"deleted {jobs} jobs ({counts['succeeded']} succeeded, {counts['cancelled']} "
            f"cancelled, {counts['failed']} failed), {counts['attempts']} attempts, "
            f"{counts['schedule_fires']} schedule fires"
        )
    return exitcodes.OK


def _days(given: float | None, option: str) -> float | None:
    if given is None:
        return None
    if not math.isfinite(given) or given < 0:
        raise UsageError(f"{option} must be a number of days >= 0, not {given!r}")
    return given * DAY
