"""Batches on PostgreSQL as one statement each, rows sent as one array per column.

Sent as one statement per row (SQLAlchemy's insertmanyvalues, or a
pipelined executemany), PostgreSQL plans and runs each row on its own:

- a bulk enqueue of 10,000 jobs went in at 10-15k jobs/s, now 33-55k;
- the master's settle and attempt record (15-20 rows per transaction at a
  drain's pace) were 65% of its time waiting; master CPU per drained job
  151-162 -> 122-139 us.

Row tuples for the master's statements are those of hotpath.settle_rows and
hotpath.attempt_rows, in SETTLE_NAMES and ATTEMPT_NAMES order.

The set-based UPDATE joins each job to its settle: it applies what the
per-row statements apply only while a job has one settle in the batch, so a
batch that names a job twice goes row by row instead (`distinct_jobs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobd.records import NewJob
from jobd.store.contract import StoreError

# The identity values are assigned in the ORDER BY's order, so the returned
# ids, sorted, are the jobs' in order: the PostgreSQL behaviour SQLAlchemy's
# insertmanyvalues relies on too (its "implicit sentinel").
INSERT_MANY = """
INSERT INTO jobs (routine, queue, state, priority, args, kwargs, max_attempts,
                  enqueued_at, run_at)
SELECT routine, queue, 'queued', priority, args, kwargs, max_attempts, enqueued_at, run_at
FROM unnest(%s::text[], %s::text[], %s::int[], %s::text[], %s::text[], %s::int[],
            %s::float8[], %s::float8[])
     WITH ORDINALITY AS new(routine, queue, priority, args, kwargs, max_attempts,
                            enqueued_at, run_at, n)
ORDER BY n
RETURNING id
"""

SETTLE_MANY = """
UPDATE jobs SET
    state = s.state,
    result = s.result,
    run_at = coalesce(s.run_at, jobs.run_at),
    finished_at = s.finished_at,
    error_type = s.error_type,
    error_message = s.error_message,
    attempts = jobs.attempts - s.uncount,
    cancel_requested = CASE WHEN s.state = 'queued' THEN jobs.cancel_requested ELSE false END
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::text[],
            %s::text[], %s::int[], %s::int[])
     AS s(id, state, result, run_at, finished_at, error_type, error_message, uncount, attempt)
WHERE jobs.id = s.id
  AND jobs.state = 'running'
  AND jobs.node_id = %s
  AND jobs.runs = coalesce(s.attempt, jobs.runs)
"""

RECORD_MANY = """
INSERT INTO attempts (job_id, attempt, routine, queue, node_id, worker_pid, started_at,
                      finished_at, outcome, error_type, error_message, traceback,
                      cpu_seconds, peak_rss)
SELECT * FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[], %s::bigint[], %s::int[],
                     %s::float8[], %s::float8[], %s::text[], %s::text[], %s::text[],
                     %s::text[], %s::float8[], %s::bigint[])
"""


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


def insert_many(driver: Any, jobs: Sequence[NewJob]) -> list[int]:
    """The new ids of `jobs` (none with a unique key), in order."""
    rows = [
        (j.routine, j.queue, j.priority, j.args_json, j.kwargs_json, j.max_attempts,
         j.enqueued_at, j.run_at)
        for j in jobs
    ]  # fmt: skip
    with driver.cursor() as cursor:
        ids = sorted(int(row[0]) for row in cursor.execute(INSERT_MANY, _columns(rows)))
    if len(ids) != len(jobs):
        raise StoreError(f"bulk insert: expected {len(jobs)} new ids, got {len(ids)}")
    return ids


def distinct_jobs(rows: Sequence[tuple[Any, ...]]) -> bool:
    return len({row[0] for row in rows}) == len(rows)


def settle_many(driver: Any, node_id: int, rows: Sequence[tuple[Any, ...]]) -> None:
    """`rows` from settle_rows: (id, node, state, result, run_at, finished_at,
    error_type, error_message, uncount, attempt); the node is `node_id`."""
    columns = _columns(rows)
    del columns[1]  # the node: one value for the batch
    with driver.cursor() as cursor:
        cursor.execute(SETTLE_MANY, (*columns, node_id))


def record_many(driver: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    with driver.cursor() as cursor:
        cursor.execute(RECORD_MANY, _columns(rows))
