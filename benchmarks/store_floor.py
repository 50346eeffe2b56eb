"""The store's own cost per job on the master's path, by jobs per transaction.

    .venv/bin/python benchmarks/store_floor.py [--jobs 60000] [--batches 1,15,32,100]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

What the master's `exchange` costs without the master: one process settles
the jobs it claimed last time (with their attempt rows) and claims as many
again, in one transaction, until the queue is empty; on a fresh SQLite file
per batch size (with `--postgres`, in a fresh schema of that database per
batch size, dropped afterwards). The master's real cost per job is this plus its own Python
work and the CPU it shares with the workers (docs/performance.md).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from jobd.records import Attempt, JobState, NewJob, Settle
from jobd.store import open_store


def run(url: str, jobs: int, batch: int) -> float:
    """Seconds per job for settle + record + claim in transactions of `batch` jobs."""
    store = open_store(url, create=True)
    store.upgrade()
    now = time.time()
    for start in range(0, jobs, 5000):
        store.enqueue(
            [
                NewJob("bench:noop", "default", 0, f"[{i}]", "{}", now, now, 3)
                for i in range(start, min(start + 5000, jobs))
            ]
        )
    node = store.register_node("bench", "localhost", 1, now)
    claims = store.exchange(node, [], ("default",), batch, now)
    done = 0
    began = time.perf_counter()
    while claims:
        settles = [
            Settle(
                c.id,
                JobState.SUCCEEDED,
                Attempt(c.id, c.attempt, c.routine, c.queue, node, 1, now, now, "succeeded"),
            )
            for c in claims
        ]
        claims = store.exchange(node, settles, ("default",), batch, now)
        done += len(settles)
    elapsed = time.perf_counter() - began
    store.close()
    return elapsed / done


@contextlib.contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    """A URL of `base` whose search_path is a fresh schema, dropped on exit."""
    import psycopg

    schema = f"jobd_floor_{uuid.uuid4().hex[:12]}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60_000)
    parser.add_argument("--batches", default="1,15,32,100")
    parser.add_argument("--postgres", metavar="URL", help="measure this PostgreSQL database")
    opts = parser.parse_args()
    print("jobs/txn  us/job  jobs/s")
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (int(b) for b in opts.batches.split(",")):
            with contextlib.ExitStack() as stack:
                if opts.postgres:
                    url = stack.enter_context(postgres_schema(opts.postgres))
                else:
                    url = f"sqlite:///{Path(tmp) / f'floor-{batch}.db'}"
                per_job = run(url, opts.jobs, batch)
            print(f"{batch:8d}  {per_job * 1e6:6.1f}  {1 / per_job:6.0f}")


if __name__ == "__main__":
    main()
