"""Benchmark adapter for procrastinate (PostgreSQL job queue).

Run with the procrastinate venv: ``benchmarks/.venvs/procrastinate/bin/python
procrastinate_bench.py [--n N] [--workloads ...]``; the workloads and the JSON
they print are described in ``harness.py``.
"""

# Settings (published with the figures): database bench_procrastinate on
# 127.0.0.1:5432, dropped, recreated and given procrastinate's schema per run;
# PostgreSQL defaults (synchronous_commit=on).  PsycopgConnector; the producer
# uses the sync API (Task.defer, Task.batch_defer for bulk).  Workers: two
# `procrastinate worker --concurrency 1` processes (procrastinate has no
# supervisor process), defaults otherwise: LISTEN/NOTIFY wake-up with 5 s
# polling as a backstop, finished jobs kept (delete_jobs=never).  The task is
# an `async def` no-op, as procrastinate runs async tasks natively.

import sys
from collections.abc import Sequence
from pathlib import Path

import harness
import procrastinate
import psycopg

SETTINGS = (
    "PostgreSQL 15 (synchronous_commit=on), PsycopgConnector, sync producer "
    "(defer / batch_defer); 2 x `procrastinate worker --concurrency 1`, defaults "
    "(LISTEN/NOTIFY + 5 s polling, jobs kept); async no-op task"
)
SERVER_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "bench_procrastinate"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
QUEUE = "bench"

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=DSN))


@app.task(name="noop", queue=QUEUE)
async def noop(x: int) -> None:
    harness.record(x)


def recreate_database() -> None:
    with psycopg.connect(SERVER_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")


def analyze(dsn: str) -> None:
    """Refresh planner statistics after a bulk prefill, as autovacuum would soon."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")


class ProcrastinatePeer(harness.Peer):
    name = "procrastinate"
    settings = SETTINGS
    distributions = ("procrastinate", "psycopg", "psycopg-binary", "psycopg-pool")

    def __init__(self) -> None:
        self.opened = False

    def reset(self, workdir: Path) -> None:
        self.close()
        recreate_database()
        app.open()
        self.opened = True
        app.schema_manager.apply_schema()

    def enqueue(self, arg: int) -> None:
        noop.defer(x=arg)

    def enqueue_bulk(self, args: Sequence[int]) -> None:
        noop.batch_defer(*({"x": arg} for arg in args))

    def settle(self) -> None:
        analyze(DSN)

    def queued(self) -> int | None:
        with psycopg.connect(DSN) as conn:
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'"
            ).fetchone()
        return int(row[0]) if row else None

    def worker_commands(self) -> list[list[str]]:
        command = [
            sys.executable,
            "-m",
            "procrastinate",
            "--app",
            "procrastinate_bench.app",
            "worker",
            "--queues",
            QUEUE,
            "--concurrency",
            "1",
        ]
        return [command] * harness.WORKERS

    def close(self) -> None:
        if self.opened:
            app.close()
            self.opened = False


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main({"procrastinate": ProcrastinatePeer}, argv)


if __name__ == "__main__":
    # Run the copy imported as `procrastinate_bench`, the name the workers import.
    import procrastinate_bench

    sys.exit(procrastinate_bench.main())
