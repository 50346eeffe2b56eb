"""Benchmark adapter for huey, as SqliteHuey and as RedisHuey.

Run with the huey venv: ``benchmarks/.venvs/huey/bin/python huey_bench.py
--system huey-sqlite|huey-redis [--n N] [--workloads ...]``; the workloads and
the JSON they print are described in ``harness.py``.  Workers are started as
``huey_consumer huey_bench.huey -k process -w 2``; the consumer finds the
backend through the BENCH_HUEY_* variables this adapter sets.
"""

# Settings (published with the figures):
#   huey-sqlite: SqliteHuey, fresh file per run, huey's defaults (WAL journal,
#     SQLite's default synchronous=FULL, results stored only for non-None
#     returns, so never here).  Consumer `-k process -w 2`, default polling
#     (-d 0.1 s initial, backing off x1.15 to -m 10 s when idle).
#   huey-redis: RedisHuey on 127.0.0.1:6379 db 1 (flushed per run), defaults
#     (blocking BRPOP dequeue, read_timeout 1 s).  Consumer `-k process -w 2`.
#   Neither has a bulk enqueue API (Task.map enqueues one by one).
#   Scale prefill writes huey's own serialised messages straight through its
#   storage layer in batches (setup only; the drain is measured as usual).

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import harness
from huey import RedisHuey, SqliteHuey

SQLITE_SETTINGS = (
    "SqliteHuey (WAL, synchronous=FULL: huey defaults); consumer -k process -w 2; "
    "default polling (0.1 s, backoff x1.15 up to 10 s)"
)
REDIS_SETTINGS = (
    "RedisHuey (defaults: blocking BRPOP, read_timeout 1 s), db 1; consumer -k process -w 2"
)
REDIS_URL = "redis://127.0.0.1:6379/1"
BACKEND_ENV = "BENCH_HUEY_BACKEND"  # "sqlite" or "redis"
DB_ENV = "BENCH_HUEY_DB"  # SQLite file


def make_huey() -> SqliteHuey | RedisHuey:
    """The huey instance described by the environment (":memory:" when unset)."""
    if os.environ.get(BACKEND_ENV) == "redis":
        return RedisHuey("bench", url=REDIS_URL)
    return SqliteHuey("bench", filename=os.environ.get(DB_ENV, ":memory:"))


def noop(x: int) -> None:
    harness.record(x)


# What `huey_consumer huey_bench.huey` loads in the workers.
huey = make_huey()
huey.task(name="noop")(noop)


class HueyPeer(harness.Peer):
    distributions = ("huey", "redis")
    bulk_note = "huey has no bulk enqueue API (Task.map enqueues one by one)"
    backend = "sqlite"

    def __init__(self) -> None:
        self.huey: SqliteHuey | RedisHuey | None = None
        self.db_path = ""

    def reset(self, workdir: Path) -> None:
        self.close()
        if self.backend == "sqlite":
            self.db_path = str(workdir / "huey.db")
            os.environ[DB_ENV] = self.db_path
        os.environ[BACKEND_ENV] = self.backend
        self.huey = make_huey()
        self.task = self.huey.task(name="noop")(noop)
        if self.backend == "redis":
            self.huey.storage.conn.flushdb()

    def enqueue(self, arg: int) -> None:
        self.task(arg)

    def queued(self) -> int | None:
        assert self.huey is not None
        return self.huey.pending_count()

    def prefill(self, count: int) -> None:
        """Queue through huey's storage in batches (serialised as huey does)."""
        assert self.huey is not None
        storage = self.huey.storage
        chunk = 10_000
        for start in range(0, count, chunk):
            blobs = [
                self.huey.serialize_task(self.task.s(i))
                for i in range(start, min(count, start + chunk))
            ]
            if self.backend == "redis":
                pipe = storage.conn.pipeline(transaction=False)
                for blob in blobs:
                    pipe.lpush(storage.queue_key, blob)
                pipe.execute()
            else:
                with storage.db(commit=True) as cursor:
                    cursor.executemany(
                        "insert into task (queue, data, priority) values (?, ?, 0)",
                        [(storage.name, blob) for blob in blobs],
                    )

    def worker_commands(self) -> list[list[str]]:
        consumer = os.path.join(os.path.dirname(sys.executable), "huey_consumer")
        return [[consumer, "huey_bench.huey", "-k", "process", "-w", str(harness.WORKERS)]]

    def worker_env(self) -> dict[str, str]:
        return {BACKEND_ENV: self.backend, DB_ENV: self.db_path}

    def close(self) -> None:
        if self.huey is not None:
            self.huey.storage.close()
            self.huey = None


class HueySqlitePeer(HueyPeer):
    name = "huey-sqlite"
    settings = SQLITE_SETTINGS
    backend = "sqlite"


class HueyRedisPeer(HueyPeer):
    name = "huey-redis"
    settings = REDIS_SETTINGS
    backend = "redis"


SYSTEMS: dict[str, type[harness.Peer]] = {
    "huey-sqlite": HueySqlitePeer,
    "huey-redis": HueyRedisPeer,
}


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(SYSTEMS, argv)


if __name__ == "__main__":
    # Run the copy imported as `huey_bench`, the name the workers import.
    import huey_bench

    sys.exit(huey_bench.main())
