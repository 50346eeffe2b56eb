"""Benchmark adapter for RQ (Redis Queue), run as `rq worker-pool -n 2`.

Run with the rq venv: ``benchmarks/.venvs/rq/bin/python rq_bench.py [--n N]
[--workloads ...]``; the workloads and the JSON they print are described in
``harness.py``.
"""

# Settings (published with the figures): Redis 127.0.0.1:6379 db 3 (flushed
# per run), queue "bench", RQ defaults: the standard Worker class, which forks
# a work horse per job for isolation, results kept 500 s.  Two workers in one
# `rq worker-pool -n 2`.  Bulk API: Queue.enqueue_many (one Redis pipeline).
# RQ also ships SimpleWorker (no fork per job), documented for tests and for
# platforms without fork, so it is not used here.
# Scale: skipped, the reason is in RqPeer.scale_skip.

import sys
from collections.abc import Sequence
from pathlib import Path

import harness
from redis import Redis
from rq import Queue

SETTINGS = (
    "Redis db 3; default Worker (forks a work horse per job), results kept 500 s "
    "(defaults); rq worker-pool -n 2; bulk: Queue.enqueue_many"
)
REDIS_URL = "redis://127.0.0.1:6379/3"
QUEUE = "bench"


def noop(x: int) -> None:
    harness.record(x)


class RqPeer(harness.Peer):
    name = "rq"
    settings = SETTINGS
    distributions = ("rq", "redis")
    scale_skip = (
        "Redis-list queue: dequeue cost does not depend on queue depth (see huey-redis), "
        "and 1,000,000 RQ job hashes need about a gigabyte of Redis memory"
    )

    def __init__(self) -> None:
        self.redis = Redis.from_url(REDIS_URL)
        self.queue = Queue(QUEUE, connection=self.redis)

    def reset(self, workdir: Path) -> None:
        self.redis.flushdb()

    def enqueue(self, arg: int) -> None:
        self.queue.enqueue(noop, arg)

    def enqueue_bulk(self, args: Sequence[int]) -> None:
        self.queue.enqueue_many([Queue.prepare_data(noop, (arg,)) for arg in args])

    def queued(self) -> int | None:
        return self.queue.count

    def worker_commands(self) -> list[list[str]]:
        return [
            [
                sys.executable,
                "-m",
                "rq.cli",
                "worker-pool",
                QUEUE,
                "-n",
                str(harness.WORKERS),
                "-u",
                REDIS_URL,
                "-l",
                "WARNING",
                "-c",
                "rq_bench",  # imported before forking: horses skip the import
            ]
        ]

    def identity(self, line: harness.Line) -> int:
        return line.ppid  # the job ran in a horse forked by the worker

    def close(self) -> None:
        self.redis.close()


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main({"rq": RqPeer}, argv)


if __name__ == "__main__":
    # Run the copy imported as `rq_bench`, so jobs name `rq_bench.noop`.
    import rq_bench

    sys.exit(rq_bench.main())
