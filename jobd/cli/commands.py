"""One function per `jobd` command; each returns its exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobd import exitcodes
from jobd.cli.output import age, local_time, print_json, print_table, seconds, size
from jobd.client import Client, run_at
from jobd.records import Job
from jobd.settings import Settings, config_path, load
from jobd.units import parse_duration


class UsageError(Exception):
    """Bad input on the command line."""


def load_settings(args: argparse.Namespace) -> Settings:
    path, explicit = config_path(getattr(args, "config", None), os.environ)
    return load(path, required=explicit)


def open_client(args: argparse.Namespace) -> Client:
    """A client on a database whose schema is checked: a missing schema is exit 4, not 1."""
    client = Client(settings=load_settings(args))
    try:
        client.store.check_schema()
    except BaseException:
        client.close()
        raise
    return client


def _json_arg(text: str, name: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--{name} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        expected = "array" if kind is list else "object"
        raise UsageError(f"--{name} must be a JSON {expected}, not {type(value).__name__}")
    return value


# -- jobd run -----------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    return run_master(settings, reload=lambda: load_settings(args))


def run_master(settings: Settings, reload: Callable[[], Settings] | None = None) -> int:
    from jobd import logs
    from jobd.store import open_store
    from jobd.supervisor.master import Master

    logs.setup(settings.jobd.log_level, "master")
    if settings.source is not None:
        # jobd's own routines (the retention cleanup) read the config the master runs with.
        os.environ["JOBD_CONFIG"] = str(settings.source.resolve())

    def opened() -> Any:
        return open_store(
            settings.jobd.database,
            timeout=settings.store.timeout,
            sqlite_synchronous=settings.store.sqlite_synchronous,
        )

    return Master(settings, None, reload=reload, open_store=opened).run()


# -- enqueue and jobs ---------------------------------------------------------


def enqueue(args: argparse.Namespace) -> int:
    job_args = _json_arg(args.args, "args", list)
    job_kwargs = _json_arg(args.kwargs, "kwargs", dict)
    try:
        run_at(0.0, args.delay, args.at)  # validate before touching the store
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    with open_client(args) as client:
        _use_workers_import_path(client.settings)
        try:
            job = client.enqueue(
                args.routine,
                *job_args,
                queue=args.queue,
                priority=args.priority,
                delay=args.delay,
                at=args.at,
                unique_key=args.unique_key,
                max_attempts=args.max_attempts,
                **job_kwargs,
            )
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    if args.json:
        print_json(job.to_json())
    else:
        print(job.id)
    return exitcodes.OK


def _use_workers_import_path(settings: Settings) -> None:
    """Search modules where workers do (working directory, then `pythonpath`), so a
    routine no worker has registered yet can be found by importing its module."""
    for entry in reversed(("", *settings.jobd.pythonpath)):
        path = entry or os.getcwd()
        if path not in sys.path:
            sys.path.insert(0, path)


def jobs_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    with open_client(args) as client:
        found = client.list(
            state=args.state, queue=args.queue, routine=args.routine, limit=args.limit
        )
    if args.json:
        print_json([job.to_json() for job in found])
        return exitcodes.OK
    now = time.time()
    print_table(
        ["id", "state", "routine", "queue", "attempts", "enqueued", "finished", "error"],
        [
            [
                job.id,
                job.state,
                job.routine,
                job.queue,
                f"{job.attempts}/{job.max_attempts}",
                age(job.enqueued_at, now),
                age(job.finished_at, now),
                _short_error(job),
            ]
            for job in found
        ],
    )
    return exitcodes.OK


def _short_error(job: Job) -> str | None:
    if job.error_type is None:
        return None
    text = f"{job.error_type}: {job.error_message or ''}".strip()
    return text if len(text) <= 60 else text[:57] + "..."


def jobs_show(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        job = client.get(args.id)
        attempts = client.attempts(args.id)
    if args.json:
        print_json({**job.to_json(), "attempts_detail": [a.to_json() for a in attempts]})
        return exitcodes.OK
    fields = [
        ("id", job.id),
        ("routine", job.routine),
        ("queue", job.queue),
        ("state", job.state),
        ("priority", job.priority),
        ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("args", json.dumps(job.args)),
        ("kwargs", json.dumps(job.kwargs)),
        ("result", json.dumps(job.result) if job.result is not None else None),
        ("error", _short_error(job)),
        ("unique key", job.unique_key),
        ("enqueued", local_time(job.enqueued_at)),
        ("run at", local_time(job.run_at)),
        ("started", local_time(job.started_at)),
        ("finished", local_time(job.finished_at)),
        ("node", job.node_id),
        ("cancel requested", "yes" if job.cancel_requested else None),
    ]
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        if value is not None:
            print(f"{name.ljust(width)}  {value}")
    if attempts:
        print()
        print_table(
            ["attempt", "outcome", "started", "duration", "cpu", "peak rss", "worker pid", "error"],
            [
                [
                    a.attempt,
                    a.outcome,
                    local_time(a.started_at),
                    seconds(None if a.started_at is None else a.finished_at - a.started_at),
                    seconds(a.cpu_seconds),
                    size(a.peak_rss),
                    a.worker_pid,
                    None if a.error_type is None else f"{a.error_type}: {a.error_message}"[:80],
                ]
                for a in attempts
            ],
        )
    return exitcodes.OK


def jobs_retry(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        job = client.retry(args.id)
    _report(args, job, f"job {job.id} queued again")
    return exitcodes.OK


def jobs_cancel(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        job = client.cancel(args.id)
    if job.state == "cancelled":
        _report(args, job, f"job {job.id} cancelled")
    else:
        _report(args, job, f"job {job.id} is running: its master will stop it")
    return exitcodes.OK


def _report(args: argparse.Namespace, job: Job, text: str) -> None:
    if args.json:
        print_json(job.to_json())
    else:
        print(text)


# -- status and routines ------------------------------------------------------


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
    if args.json:
        print_json(catalog)
        return exitcodes.OK
    print_table(
        ["routine", "queue", "priority", "max attempts", "time limit", "memory limit"],
        [
            [
                name,
                p.get("queue"),
                p.get("priority"),
                p.get("max_attempts"),
                seconds(p.get("time_limit")),
                size(p.get("memory_limit")),
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


# -- db -----------------------------------------------------------------------


def db_upgrade(args: argparse.Namespace) -> int:
    from jobd.store import open_store

    settings = load_settings(args)
    store = open_store(settings.jobd.database, sqlite_synchronous=settings.store.sqlite_synchronous)
    try:
        if store.database_path:
            Path(store.database_path).parent.mkdir(parents=True, exist_ok=True)
        before, after = store.upgrade()
    finally:
        store.close()
    if before == after:
        print(f"{store.describe()}: schema already at revision {after}")
    else:
        print(f"{store.describe()}: schema upgraded from {before or 'nothing'} to revision {after}")
    return exitcodes.OK


# -- demo ---------------------------------------------------------------------


def demo(args: argparse.Namespace) -> int:
    from jobd.cli.demo import run_demo

    return run_demo(Path(args.dir), args.rate)
