"""Migrations of a real database: what revisions 0003 and 0004 change, on
databases made by an older jobd, and that ids are never reused on either
backend."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from jobd.store import open_store
from jobd.store.engine import normalize_url
from jobd.store.migrate import alembic_config
from jobd.store.schema import SCHEMA_REVISION
from tests.integration.jobs import new_job


def test_ids_are_never_reused_after_the_newest_jobs_are_deleted(db_url: str) -> None:
    store = open_store(db_url, create=True)
    store.upgrade()
    try:
        ids = [store.enqueue([new_job()])[0].job.id for _ in range(3)]
        engine = create_engine(normalize_url(db_url))
        with engine.begin() as conn:  # what `jobd cleanup` does to finished jobs
            conn.execute(text("DELETE FROM jobs"))
        engine.dispose()
        (after,) = store.enqueue([new_job()])
        assert after.job.id > max(ids)
    finally:
        store.close()


def test_a_database_of_revision_0002_keeps_its_rows_and_indexes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(normalize_url(url))
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "0002")  # type: ignore[arg-type]
        conn.commit()
    engine.dispose()
    with sqlite3.connect(tmp_path / "old.db") as raw:
        raw.executemany(
            "INSERT INTO jobs (routine, queue, state, max_attempts, enqueued_at, run_at, "
            "unique_key) VALUES ('app:x', 'default', 'queued', 3, 1.0, 1.0, ?)",
            [("a",), ("b",), (None,)],
        )
        raw.execute("DELETE FROM jobs WHERE id = 3")
        indexes_before = sorted(
            raw.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql NOT NULL")
        )

    store = open_store(url)
    before, after = store.upgrade()
    assert (before, after) == ("0002", SCHEMA_REVISION)
    with sqlite3.connect(tmp_path / "old.db") as raw:
        assert raw.execute("SELECT id, unique_key FROM jobs ORDER BY id").fetchall() == [
            (1, "a"),
            (2, "b"),
        ]
        ddl = raw.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs'").fetchone()[0]
        assert "AUTOINCREMENT" in ddl
        indexes_after = sorted(
            raw.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql NOT NULL")
        )
    # The partial indexes stay partial (later revisions may add indexes of their own).
    assert set(indexes_before) <= set(indexes_after)
    (job,) = store.enqueue([new_job()])
    # From the migration on, ids only grow; what an older jobd deleted before
    # it (id 3 here) it cannot know of.
    assert job.job.id == 3
    store.close()


def test_revision_0004_starts_each_job_at_its_highest_attempt_number(db_url: str) -> None:
    engine = create_engine(normalize_url(db_url))
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "0003")  # type: ignore[arg-type]
        conn.commit()
    # (state, attempts, attempt numbers recorded): never run; failed after an
    # uncounted put-back that repeated its number; running its second counted
    # attempt; retried by hand after two.
    jobs = [("queued", 0, []), ("failed", 1, [1, 1]), ("running", 2, [1]), ("queued", 0, [1, 2])]
    with engine.begin() as conn:
        for state, count, recorded in jobs:
            job_id = conn.execute(
                text(
                    "INSERT INTO jobs (routine, queue, state, attempts, max_attempts, "
                    "enqueued_at, run_at) VALUES ('app:x', 'default', :s, :n, 3, 1.0, 1.0) "
                    "RETURNING id"
                ),
                {"s": state, "n": count},
            ).scalar_one()
            for number in recorded:
                conn.execute(
                    text(
                        "INSERT INTO attempts (job_id, attempt, routine, queue, finished_at, "
                        "outcome) VALUES (:j, :a, 'app:x', 'default', 2.0, 'error')"
                    ),
                    {"j": job_id, "a": number},
                )
    engine.dispose()
    store = open_store(db_url)
    assert store.upgrade()[1] == SCHEMA_REVISION
    found = [(j.state, j.attempts, j.runs) for j in sorted(store.list_jobs(), key=lambda j: j.id)]
    assert found == [("queued", 0, 0), ("failed", 1, 1), ("running", 2, 2), ("queued", 0, 2)]
    store.close()
