"""jobd's own routine: the retention cleanup.

`cleanup` deletes succeeded and cancelled jobs 7 days after they finished
and failed ones after 30 (`[retention]`), with their attempts, and prunes
schedule fires that can no longer matter. The built-in schedule
`jobd.cleanup` enqueues it daily; `jobd cleanup` runs `delete_old` in the
CLI process.

It deletes in batches of `batch_size` jobs, one short transaction each,
and on SQLite pauses between batches for as long as the batch took. SQLite
has one writer, and a writer waiting on `busy_timeout` polls rather than
queues: without the pause the next batch would take the lock again before
the master's claim got it, and the claim would wait for the whole cleanup.
Measured (benchmarks/cleanup.py, docs/scheduling.md): while 100,000 old
jobs are deleted, the master's longest claim takes 27-85 ms with the pauses
and 0.2-1.2 s without; the cleanup takes 2.5 s instead of 1.

This module is imported by workers, which never import SQLAlchemy: the
store is opened (and SQLAlchemy imported, ~25 MB) only when the routine
runs. The database is the one the worker's master uses: `jobd run`
exports `JOBD_CONFIG` to its children, and the environment overrides
apply as they did for the master.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from jobd.routines import routine
from jobd.schedule import MAX_CATCH_UP
from jobd.settings import config_path, load

DAY = 86400.0
# Completed means succeeded or cancelled, as in `[retention] completed_after`.
COMPLETED = ("succeeded", "cancelled")


class RetentionStore(Protocol):
    """The part of `jobd.store.contract.Store` the cleanup uses."""

    dialect: str

    def delete_finished(self, state: str, before: float, limit: int) -> tuple[int, int]: ...

    def delete_fires(self, before: float, limit: int) -> int: ...


@routine(max_attempts=3, retry_delay="1m")
def cleanup() -> dict[str, int]:
    """Delete old finished jobs and their attempts, by `[retention]`; the counts.

    It takes no arguments: any producer may enqueue it, so what it deletes is
    the config's to say, never the job's (`cleanup(0, 0)` deleted every
    finished job). `jobd cleanup --completed-days` is the operator's way.
    """
    from jobd.store import open_store

    path, explicit = config_path(None, os.environ)
    settings = load(Path(path), required=explicit)
    retention = settings.retention
    store = open_store(
        settings.jobd.database,
        timeout=settings.store.timeout,
        sqlite_synchronous=settings.store.sqlite_synchronous,
    )
    try:
        store.check_schema()
        return delete_old(
            store, time.time(), retention.completed_after, retention.failed_after,
            retention.batch_size,
        )  # fmt: skip
    finally:
        store.close()


def delete_old(
    store: RetentionStore,
    now: float,
    completed_after: float,
    failed_after: float,
    batch_size: int = 500,
    pause: Callable[[float], None] = time.sleep,
) -> dict[str, int]:
    """Delete jobs finished before their retention, batch by batch; the counts.

    Keys: succeeded, cancelled, failed (jobs), attempts, schedule_fires.
    """
    counts = dict.fromkeys((*COMPLETED, "failed", "attempts", "schedule_fires"), 0)
    pauses = store.dialect == "sqlite"  # PostgreSQL has no database-wide write lock
    for state in (*COMPLETED, "failed"):
        before = now - (failed_after if state == "failed" else completed_after)
        while True:
            started = time.monotonic()
            jobs, attempts = store.delete_finished(state, before, batch_size)
            counts[state] += jobs
            counts["attempts"] += attempts
            if jobs < batch_size:
                break
            if pauses:
                pause(time.monotonic() - started)
    # A fire older than any catch-up window can never be inserted again; keep
    # it as long as its job may be kept, for `jobd schedules` and debugging.
    horizon = now - max(completed_after, failed_after, MAX_CATCH_UP + DAY)
    while True:
        deleted = store.delete_fires(horizon, batch_size)
        counts["schedule_fires"] += deleted
        if deleted < batch_size:
            break
    return counts
