"""Claiming costs the same with 1,000,000 jobs queued as with 1,000.

    .venv/bin/python benchmarks/claim_scale.py [--backlogs 1000,1000000] [--claims 2000]
    .venv/bin/python benchmarks/claim_scale.py --postgres postgresql://postgres@127.0.0.1/test

For each backlog, a fresh database gets that many queued jobs (one
INSERT ... SELECT, not the producer's path), then the master's transaction
is timed `--claims` times: settle the job claimed last time with its
attempt row, and claim the next one (`exchange`, limit 1). Prints the median
and p99 per transaction, and the claim statement's query plan: an index
range read, never a scan or a sort, whatever the backlog. On PostgreSQL it
uses a scratch database `jobd_claim_scale` next to the one named.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from jobd.records import Attempt, JobState, Settle
from jobd.store import open_store
from jobd.store.rows import INSERT_NAMES
from jobd.store.sql import SQLStore

SCRATCH_PG = "jobd_claim_scale"


def fill(store: SQLStore, backlog: int, now: float) -> None:
    """`backlog` queued no-op jobs, ids 1..backlog, all ready."""
    values = {
        "routine": "'bench:noop'", "queue": "'default'", "state": "'queued'", "priority": "0",
        "args": "'[' || n || ']'", "kwargs": "'{}'", "attempts": "0", "max_attempts": "3",
        "unique_key": "NULL", "enqueued_at": str(now), "run_at": str(now),
        "cancel_requested": "false",
    }  # fmt: skip
    columns = ", ".join(INSERT_NAMES)
    select = ", ".join(values[name] for name in INSERT_NAMES)
    if store.dialect == "sqlite":
        source = (
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :n) "
            f"INSERT INTO jobs ({columns}) SELECT {select} FROM seq"
        )
    else:
        source = f"INSERT INTO jobs ({columns}) SELECT {select} FROM generate_series(1, :n) AS n"
    with store.db.engine.begin() as conn:
        conn.execute(text(source), {"n": backlog})
    if store.dialect == "postgresql":
        with store.db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE jobs"))


def plan(store: SQLStore, now: float) -> str:
    statement = store.claims.statement(("default",))
    if store.dialect == "sqlite":
        explain, params = f"EXPLAIN QUERY PLAN {statement.sql}", statement.bind((now, 1, 1))
        with store.db.engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            rows = raw.execute(explain, params).fetchall()
        return "\n".join(f"    {row[-1]}" for row in rows)
    # PostgreSQL: the plan of the candidate select inside the claim's CTE.
    candidates = (
        "SELECT id FROM jobs WHERE state = 'queued' AND queue = 'default' AND run_at <= :now "
        "ORDER BY priority DESC, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
    )
    with store.db.engine.connect() as conn:
        rows = conn.execute(text(f"EXPLAIN {candidates}"), {"now": now}).fetchall()
    return "\n".join(f"    {row[0]}" for row in rows)


def measure(store: SQLStore, claims: int, now: float) -> list[float]:
    node = store.register_node("bench", "localhost", 1, now)
    held = store.exchange(node, [], ("default",), 1, now)
    seconds = []
    for _ in range(claims):
        settles = [
            Settle(
                c.id,
                JobState.SUCCEEDED,
                Attempt(c.id, c.attempt, c.routine, c.queue, node, 1, now, now, "succeeded"),
            )
            for c in held
        ]
        began = time.perf_counter()
        held = store.exchange(node, settles, ("default",), 1, now)
        seconds.append(time.perf_counter() - began)
        assert held, "the backlog ran out"
    return seconds


def scratch_postgres(url: str) -> str:
    admin = open_store(url)
    with admin.db.engine.connect() as plain:
        conn = plain.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(f"DROP DATABASE IF EXISTS {SCRATCH_PG}"))
        conn.execute(text(f"CREATE DATABASE {SCRATCH_PG}"))
    admin.close()
    return make_url(url).set(database=SCRATCH_PG).render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlogs", default="1000,1000000")
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--postgres", metavar="URL", help="run on PostgreSQL instead of SQLite")
    opts = parser.parse_args()
    now = time.time()
    print(f"{'backlog':>10}  {'median':>9}  {'p99':>9}  (settle + claim, one job per transaction)")
    with tempfile.TemporaryDirectory() as tmp:
        for backlog in (int(b) for b in opts.backlogs.split(",")):
            if opts.postgres:
                store = open_store(scratch_postgres(opts.postgres))
            else:
                store = open_store(f"sqlite:///{Path(tmp) / f'claims-{backlog}.db'}", create=True)
            store.upgrade()
            fill(store, backlog + opts.claims + 1, now)
            seconds = sorted(measure(store, opts.claims, now))
            median = statistics.median(seconds) * 1e6
            p99 = seconds[int(len(seconds) * 0.99)] * 1e6
            print(f"{backlog:>10,}  {median:>7.0f}us  {p99:>7.0f}us")
            print(plan(store, now))
            store.close()


if __name__ == "__main__":
    main()
