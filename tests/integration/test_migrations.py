"""Migrations of a real database: what revision 0003 changes, on SQLite files
made by an older jobd, and that ids are never reused on either backend."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from jobd.store import open_store
from jobd.store.engine import normalize_url
from jobd.store.migrate import alembic_config
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
    assert (before, after) == ("0002", "0003")
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
    assert indexes_after == indexes_before  # the partial indexes stay partial
    (job,) = store.enqueue([new_job()])
    # From the migration on, ids only grow; what an older jobd deleted before
    # it (id 3 here) it cannot know of.
    assert job.job.id == 3
    store.close()
