"""Benchmark adapter for PgQueuer (PostgreSQL job queue, asyncpg driver).

Run with the pgqueuer venv: ``benchmarks/.venvs/pgqueuer/bin/python
pgqueuer_bench.py [--n N] [--workloads ...]``; the workloads and the JSON they
print are described in ``harness.py``.
"""

# Settings (published with the figures): database bench_pgqueuer on
# 127.0.0.1:5432, dropped, recreated and `install`ed per run; PgQueuer's
# default "durable" tables (all logged), PostgreSQL defaults
# (synchronous_commit=on).  asyncpg driver; the producer awaits
# Queries.enqueue once per job (lists of entrypoints/payloads for bulk) on a
# uvloop loop.  Workers: two `pgq run` processes with the defaults (batch size
# 10, LISTEN/NOTIFY wake-up, completions logged in batches).  PgQueuer has no
# per-process "one job at a time" switch (its lowest cap, max_concurrent_tasks,
# must be at least twice the batch size); the no-op job is an `async def` that
# never awaits, so two jobs never overlap inside a process anyway.

import contextlib
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

import asyncpg
import harness
import uvloop
from pgqueuer import AsyncpgDriver, Job, PgQueuer, Queries

SETTINGS = (
    "PostgreSQL 15 (synchronous_commit=on), durable (logged) tables, asyncpg; "
    "2 x `pgq run` with defaults (batch 10, LISTEN/NOTIFY, batched completion log); "
    "async no-op entrypoint"
)
SERVER_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "bench_pgqueuer"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
ENTRYPOINT = "noop"


@contextlib.asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    """The factory `pgq run pgqueuer_bench:create_pgqueuer` starts a worker with."""
    conn = await asyncpg.connect(DSN)
    try:
        pgq = PgQueuer(AsyncpgDriver(conn))

        @pgq.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            harness.record(int(job.payload or b"0"))

        yield pgq
    finally:
        await conn.close()


class PgQueuerPeer(harness.Peer):
    name = "pgqueuer"
    settings = SETTINGS
    distributions = ("pgqueuer", "asyncpg", "uvloop")

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.conn: asyncpg.Connection | None = None
        self.queries: Queries | None = None

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def reset(self, workdir: Path) -> None:
        self.close_connection()
        self.run(self._recreate())

    async def _recreate(self) -> None:
        server = await asyncpg.connect(SERVER_DSN)
        try:
            await server.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            await server.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            await server.close()
        self.conn = await asyncpg.connect(DSN)
        self.queries = Queries(AsyncpgDriver(self.conn))
        await self.queries.install()

    def enqueue(self, arg: int) -> None:
        assert self.queries is not None
        self.run(self.queries.enqueue(ENTRYPOINT, str(arg).encode()))

    def enqueue_each(self, args: Iterable[int]) -> None:
        async def each() -> None:
            assert self.queries is not None
            for arg in args:
                await self.queries.enqueue(ENTRYPOINT, str(arg).encode())

        self.run(each())

    def enqueue_bulk(self, args: Sequence[int]) -> None:
        assert self.queries is not None
        self.run(
            self.queries.enqueue(
                [ENTRYPOINT] * len(args),
                [str(a).encode() for a in args],
                [0] * len(args),
            )
        )

    def settle(self) -> None:
        assert self.conn is not None
        self.run(self.conn.execute("ANALYZE"))

    def queued(self) -> int | None:
        assert self.conn is not None
        return int(
            self.run(self.conn.fetchval("SELECT count(*) FROM pgqueuer WHERE status = 'queued'"))
        )

    def worker_commands(self) -> list[list[str]]:
        command = [
            sys.executable,
            "-m",
            "pgqueuer",
            "run",
            "pgqueuer_bench:create_pgqueuer",
            "--log-level",
            "WARNING",
        ]
        return [command] * harness.WORKERS

    def close_connection(self) -> None:
        if self.conn is not None:
            self.run(self.conn.close())
            self.conn = self.queries = None

    def close(self) -> None:
        self.close_connection()
        self.loop.close()


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main({"pgqueuer": PgQueuerPeer}, argv)


if __name__ == "__main__":
    # Run the copy imported as `pgqueuer_bench`, the name the workers import.
    import pgqueuer_bench

    sys.exit(pgqueuer_bench.main())
