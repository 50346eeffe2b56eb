"""The master's settle and attempt record on PostgreSQL, one statement per batch.

A transaction settles and records every attempt that finished since the
last one (15-20 at a drain's pace). Sent as one UPDATE and one INSERT per
row (a pipelined executemany), PostgreSQL plans and runs each row as its
own statement: the master waited on them for 65% of a drain. Here each
batch is one statement whose rows arrive as one array per column (`unnest`),
as in the bulk enqueue (sql.py, _PG_INSERT_MANY). Row tuples are those of
hotpath.settle_rows and hotpath.attempt_rows, in SETTLE_NAMES and
ATTEMPT_NAMES order.

The set-based UPDATE joins each job to its settle: it applies what the
per-row statements apply only while a job has one settle in the batch, so a
batch that names a job twice goes row by row instead (`distinct_jobs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
  AND jobs.attempts = coalesce(s.attempt, jobs.attempts)
"""

RECORD_MANY = """
INSERT INTO attempts (job_id, attempt, routine, queue, node_id, worker_pid, started_at,
                      finished_at, outcome, error_type, error_message, traceback,
                      cpu_seconds, peak_rss)
SELECT * FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[], %s::bigint[], %s::int[],
                     %s::float8[], %s::float8[], %s::text[], %s::text[], %s::text[],
                     %s::text[], %s::float8[], %s::bigint[])
"""


def distinct_jobs(rows: Sequence[tuple[Any, ...]]) -> bool:
    return len({row[0] for row in rows}) == len(rows)


def settle_many(driver: Any, node_id: int, rows: Sequence[tuple[Any, ...]]) -> None:
    """`rows` from settle_rows: (id, node, state, result, run_at, finished_at,
    error_type, error_message, uncount, attempt); the node is `node_id`."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    del columns[1]  # the node: one value for the batch
    with driver.cursor() as cursor:
        cursor.execute(SETTLE_MANY, (*columns, node_id))


def record_many(driver: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    with driver.cursor() as cursor:
        cursor.execute(RECORD_MANY, [list(column) for column in zip(*rows, strict=True)])
