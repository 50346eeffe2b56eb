"""The retention cleanup (jobd/maintenance.py) on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from jobd.maintenance import cleanup, delete_old
from jobd.records import JobState, NewJob, Settle
from jobd.store import open_store
from jobd.store.sql import SQLStore
from tests.integration.jobs import NOW, attempt_for, claim, new_job

DAY = 86400.0


def finish(
    store: SQLStore, node: int, state: JobState, age_days: float, n: int = 1, now: float = NOW
) -> list[int]:
    """`n` jobs that ended in `state` `age_days` before `now`, each with one attempt."""
    store.enqueue([new_job() for _ in range(n)])
    settles = []
    for c in claim(store, node, limit=n):
        attempt = attempt_for(c, node, state.value)
        attempt = dataclasses.replace(attempt, finished_at=now - age_days * DAY)
        settles.append(Settle(c.id, state, attempt))
    claim(store, node, limit=0, settles=settles)
    return [s.job_id for s in settles]


class Recording:
    """The real store, recording each batch the cleanup asked for."""

    def __init__(self, inner: SQLStore) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self.batches: list[tuple[str, int, int]] = []

    def delete_finished(self, state: str, before: float, limit: int) -> tuple[int, int]:
        done = self.inner.delete_finished(state, before, limit)
        self.batches.append((state, limit, done[0]))
        return done

    def delete_fires(self, before: float, limit: int) -> int:
        return self.inner.delete_fires(before, limit)


def test_cleanup_deletes_old_finished_jobs_in_batches(store: SQLStore, node: int) -> None:
    old_succeeded = finish(store, node, JobState.SUCCEEDED, 8, 12)
    kept = finish(store, node, JobState.SUCCEEDED, 6, 2)
    kept += finish(store, node, JobState.FAILED, 8, 3)  # failed: kept for 30 days
    old_failed = finish(store, node, JobState.FAILED, 31, 2)
    cancelled = store.enqueue([new_job()])[0].job.id
    store.cancel(cancelled, NOW - 9 * DAY)
    queued = store.enqueue([new_job(run_at=NOW - 60 * DAY)])[0].job.id
    fired = store.fire_schedules(None, [_fire(NOW - 40 * DAY), _fire(NOW - DAY)], [], NOW)

    recording = Recording(store)
    pauses: list[float] = []
    counts = delete_old(recording, NOW, 7 * DAY, 30 * DAY, batch_size=5, pause=pauses.append)

    assert counts == {
        "succeeded": 12,
        "cancelled": 1,
        "failed": 2,
        "attempts": 14,
        "schedule_fires": 1,
    }
    assert recording.batches == [
        ("succeeded", 5, 5),
        ("succeeded", 5, 5),
        ("succeeded", 5, 2),
        ("cancelled", 5, 1),
        ("failed", 5, 2),
    ]
    # SQLite: a pause after each full batch lets the master's claims in.
    assert len(pauses) == (2 if store.dialect == "sqlite" else 0)
    left = sorted(job.id for job in store.list_jobs(limit=100))
    assert left == sorted([*kept, queued, *(f.job_id for f in fired)])  # fire jobs are queued
    assert all(store.job_attempts(job_id) == [] for job_id in old_succeeded + old_failed)
    assert len(store.job_attempts(kept[0])) == 1


def _fire(at: float) -> Any:
    from jobd.records import Fire

    return Fire("tick", at, NewJob("app.jobs:tick", "default", 0, "[]", "{}", at, at, 3))


def test_the_routine_reads_the_config_the_master_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "jobd.db"
    store = open_store(f"sqlite:///{database}")
    store.upgrade()
    node = store.register_node("test", "host-a", 1, NOW)
    finish(store, node, JobState.SUCCEEDED, 2, 3, now=time.time())
    store.close()
    config = tmp_path / "jobd.toml"
    config.write_text(
        '[jobd]\ndatabase = "sqlite:///jobd.db"\n'
        '[retention]\ncompleted_after = "1d"\nbatch_size = 2\n'
    )
    monkeypatch.setenv("JOBD_CONFIG", str(config))
    counts = cleanup()
    assert counts["succeeded"] == 3
    assert cleanup()["succeeded"] == 0


def test_importing_the_routine_does_not_import_sqlalchemy() -> None:
    """Workers import jobd.maintenance (a built-in module) and stay lean."""
    code = (
        "import sys, jobd.maintenance; "
        "print('sqlalchemy' in sys.modules, 'croniter' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]
