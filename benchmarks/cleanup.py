"""Retention cleanup: how long it takes, and what it does to the master's claims.

    .venv/bin/python benchmarks/cleanup.py [--jobs 100000] [--batch 500] [--no-pause]
    .venv/bin/python benchmarks/cleanup.py --postgres postgresql://postgres@127.0.0.1/test

Fills a fresh database with `--jobs` succeeded jobs finished ten days ago
(one attempt each), then runs `jobd.maintenance.delete_old` while, in other
threads, a "master" runs claim transactions (`exchange`) every millisecond
and a producer enqueues a job every 2 ms. Prints the cleanup's time, its
batches (median and longest, waits for the lock included) and how long the
master's claim transactions took meanwhile. `--no-pause` shows what the
pause between batches buys on SQLite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from typing import Any

from jobd.maintenance import delete_old
from jobd.records import NewJob
from jobd.store import open_store

JOB = (
    "INSERT INTO jobs (id, routine, queue, state, priority, args, kwargs, attempts, "
    "max_attempts, enqueued_at, run_at, started_at, finished_at, cancel_requested) "
    "VALUES (?, 'app:x', 'default', 'succeeded', 0, '[]', '{}', 1, 3, ?, ?, ?, ?, 0)"
)
ATTEMPT = (
    "INSERT INTO attempts (job_id, attempt, routine, queue, node_id, worker_pid, started_at, "
    "finished_at, outcome) VALUES (?, 1, 'app:x', 'default', 1, 1, ?, ?, 'succeeded')"
)


class Timed:
    """The store, timing each cleanup batch."""

    def __init__(self, store: Any) -> None:
        self.store, self.dialect, self.batches = store, store.dialect, []  # type: list[float]

    def delete_finished(self, state: str, before: float, limit: int) -> tuple[int, int]:
        started = time.perf_counter()
        done: tuple[int, int] = self.store.delete_finished(state, before, limit)
        self.batches.append(time.perf_counter() - started)
        return done

    def delete_fires(self, before: float, limit: int) -> int:
        return int(self.store.delete_fires(before, limit))


def fill_sqlite(path: str, jobs: int, old: float) -> None:
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.executemany(JOB, [(i, old, old, old, old + i / 1000) for i in range(1, jobs + 1)])
        conn.executemany(ATTEMPT, [(i, old, old) for i in range(1, jobs + 1)])


def fill_postgres(url: str, schema: str, jobs: int, old: float) -> None:
    import psycopg

    with psycopg.connect(url, options=f"-csearch_path={schema}") as conn, conn.cursor() as cur:
        columns = JOB.split("(", 1)[1].split(")", 1)[0]
        with cur.copy(f"COPY jobs ({columns}) FROM STDIN") as copy:
            for i in range(1, jobs + 1):
                row = (i, "app:x", "default", "succeeded", 0, "[]", "{}", 1, 3)
                copy.write_row((*row, old, old, old, old + i / 1000, False))
        columns = ATTEMPT.split("(", 1)[1].split(")", 1)[0]
        with cur.copy(f"COPY attempts ({columns}) FROM STDIN") as copy:
            for i in range(1, jobs + 1):
                copy.write_row((i, 1, "app:x", "default", 1, 1, old, old, "succeeded"))
        cur.execute("SELECT setval(pg_get_serial_sequence('jobs', 'id'), %s)", (jobs,))
        conn.commit()
        cur.execute("ANALYZE jobs")
        cur.execute("ANALYZE attempts")


def load(url: str, now: float, stop: threading.Event, claims: list[float]) -> None:
    def master() -> None:
        store = open_store(url, timeout=10)
        node = store.register_node("bench", "host", 1, now)
        while not stop.is_set():
            started = time.perf_counter()
            store.exchange(node, [], ("default",), 10, time.time())
            claims.append(time.perf_counter() - started)
            time.sleep(0.001)
        store.close()

    def producer() -> None:
        store = open_store(url, timeout=10)
        while not stop.is_set():
            at = time.time()
            store.enqueue([NewJob("app:y", "default", 0, "[]", "{}", at, at, 3)])
            time.sleep(0.002)
        store.close()

    for target in (master, producer):
        threading.Thread(target=target, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--no-pause", action="store_true")
    parser.add_argument("--postgres", help="a PostgreSQL URL (a scratch schema is used)")
    args = parser.parse_args()
    now = time.time()
    old = now - 10 * 86400
    admin: Any = None
    if args.postgres:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = psycopg.connect(args.postgres, autocommit=True)
        admin.execute(f"CREATE SCHEMA {schema}")
        url = f"{args.postgres}?options=-csearch_path%3D{schema}"
    else:
        path = os.path.join(tempfile.mkdtemp(prefix="jobd-cleanup-"), "jobd.db")
        url = f"sqlite:///{path}"
    try:
        store = open_store(url, timeout=10, create=True)
        store.upgrade()
        if args.postgres:
            fill_postgres(args.postgres, schema, args.jobs, old)
        else:
            fill_sqlite(path, args.jobs, old)
        stop, claims = threading.Event(), []  # type: threading.Event, list[float]
        load(url, now, stop, claims)
        time.sleep(0.3)
        before = len(claims)
        timed = Timed(store)
        started = time.perf_counter()
        pause = (lambda _seconds: None) if args.no_pause else time.sleep
        counts = delete_old(timed, now, 7 * 86400, 30 * 86400, args.batch, pause=pause)
        took = time.perf_counter() - started
        stop.set()
        during = sorted(claims[before:]) or [0.0]
        batches = sorted(timed.batches)
        print(
            f"{store.dialect}, {args.jobs} jobs, batch {args.batch}, "
            f"{'no pauses' if args.no_pause else 'pauses'}: deleted {counts} in {took:.2f} s\n"
            f"  {len(batches)} batches: median {statistics.median(batches) * 1000:.1f} ms, "
            f"longest {batches[-1] * 1000:.1f} ms\n"
            f"  master's claims meanwhile: {len(during)}, median "
            f"{statistics.median(during) * 1000:.2f} ms, longest {during[-1] * 1000:.1f} ms"
        )
        store.close()
    finally:
        if admin is not None:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
