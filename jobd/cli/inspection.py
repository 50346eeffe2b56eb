"""Looking at a running jobd: `status`, `stats`, `routines`, `logs`, `schedules`, `health`."""

from __future__ import annotations

import argparse
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from jobd import exitcodes
from jobd.cli.common import UsageError, open_client
from jobd.cli.output import age, print_json, print_table, seconds, size
from jobd.health import evaluate, gone_here, healthy
from jobd.records import ScheduleState, iso
from jobd.schedule import Schedule
from jobd.units import parse_duration

OVERDUE_AFTER = 60.0  # a next fire this far in the past means no master is firing it


# -- jobd status, routines, stats, logs ------------------------------------------


def status(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        now = time.time()
        queues = client.stats()
        nodes = client.store.nodes()
    if args.json:
        print_json(
            {
                "queues": [q.to_json(now) for q in queues],
                "nodes": [n.to_json(now) for n in nodes],
            }
        )
        return exitcodes.OK
    states = ["queued", "running", "succeeded", "failed", "cancelled"]
    print_table(
        ["queue", *states, "oldest ready"],
        [
            [
                q.queue,
                *(q.counts.get(s, 0) for s in states),
                None if q.oldest_queued_at is None else seconds(max(now - q.oldest_queued_at, 0)),
            ]
            for q in queues
        ]
        or [["(no jobs)", *([""] * len(states)), ""]],
    )
    print()
    if not nodes:
        print("no live nodes (is `jobd run` running?)")
        return exitcodes.OK
    print_table(
        ["node", "name", "pid", "heartbeat", "phase", "workers", "queues"],
        [
            [
                n.id,
                n.name,
                n.pid,
                age(n.heartbeat_at, now),
                n.info.get("phase"),
                len(n.info.get("workers", [])),
                ",".join(n.info.get("queues", [])),
            ]
            for n in nodes
        ],
    )
    rows = [
        [
            n.id,
            w.get("slot"),
            w.get("pid"),
            w.get("state"),
            None if w.get("job") is None else f"#{w['job']} {w.get('routine')}",
            size(w.get("rss")),
            w.get("jobs_done"),
        ]
        for n in nodes
        for w in n.info.get("workers", [])
    ]
    if rows:
        print()
        print_table(["node", "worker", "pid", "state", "job", "rss", "done"], rows)
    return exitcodes.OK


def routines(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        catalog = client.store.routine_policies()
        registered = {} if args.json else client.store.routine_registrations()
    if args.json:
        print_json(catalog)
        return exitcodes.OK
    print_table(
        ["routine", "queue", "priority", "max attempts", "time limit", "memory limit", "nodes"],
        [
            [
                name,
                p.get("queue"),
                p.get("priority"),
                p.get("max_attempts"),
                seconds(p.get("time_limit")),
                size(p.get("memory_limit")),
                ",".join(str(n) for n in registered.get(name, [])) or None,
            ]
            for name, p in sorted(catalog.items())
        ],
    )
    return exitcodes.OK


def stats(args: argparse.Namespace) -> int:
    try:
        window = parse_duration(args.since)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    with open_client(args) as client:
        found = client.store.routine_stats(time.time() - window, routine=args.routine)
    if args.json:
        print_json({"since_seconds": window, "routines": [s.to_json() for s in found]})
        return exitcodes.OK
    if not found:
        print(f"no attempts finished in the last {seconds(window)}")
        return exitcodes.OK
    print_table(
        ["routine", "runs", "success", "p50", "p95", "max", "peak rss", "cpu", "limits hit"],
        [
            [
                s.routine,
                s.runs,
                f"{s.success_rate:.1%}",
                seconds(s.p50),
                seconds(s.p95),
                seconds(s.max_duration),
                size(s.peak_rss),
                seconds(s.cpu_seconds),
                s.limit_violations,
            ]
            for s in found
        ],
    )
    return exitcodes.OK


def logs(args: argparse.Namespace) -> int:
    """journalctl with jobd's fields as matches; replaces this process."""
    import shutil

    journalctl = shutil.which("journalctl")
    if journalctl is None:
        raise UsageError("journalctl not found: `jobd logs` reads the systemd journal")
    argv = journal_command(journalctl, args.unit, args.worker, args.job, args.follow, args.lines)
    os.execv(journalctl, argv)
    return exitcodes.FAILURE  # not reached


def journal_command(
    journalctl: str, unit: str, worker: int | None, job: int | None, follow: bool, lines: int | None
) -> list[str]:
    argv = [journalctl, "--unit", unit]
    if worker is not None:
        argv.append(f"JOBD_WORKER={worker}")
    if job is not None:
        argv.append(f"JOBD_JOB_ID={job}")
    if follow:
        argv.append("--follow")
    if lines is not None:
        argv += ["--lines", str(lines)]
    return argv


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
    checks = evaluate(facts, limits, now, gone_here(facts, socket.gethostname()))
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
