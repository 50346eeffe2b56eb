"""Benchmark adapter for Celery (prefork pool, Redis broker, no result backend).

Run with the celery venv: ``benchmarks/.venvs/celery/bin/python
celery_bench.py [--n N] [--workloads ...]``; the workloads and the JSON they
print are described in ``harness.py``.
"""

# Settings (published with the figures): broker redis://127.0.0.1:6379/2
# (flushed per run), no result backend, task_ignore_result=True; otherwise
# Celery's defaults (acks on receipt, prefetch multiplier 4).  Worker:
# `celery -A celery_bench worker -P prefork -c 2 --without-gossip
# --without-mingle --without-heartbeat` (the three flags are Celery's
# documented way to skip cluster chatter a single worker does not need).
# No bulk enqueue API: group() still publishes one message per task.
# Scale: skipped, the reason is in CeleryPeer.scale_skip.

import sys
from collections.abc import Sequence
from pathlib import Path

import harness
import redis
from celery import Celery

SETTINGS = (
    "Redis broker db 2, no result backend (task_ignore_result); defaults otherwise "
    "(ack on receipt, prefetch x4); worker -P prefork -c 2 --without-gossip "
    "--without-mingle --without-heartbeat"
)
BROKER_URL = "redis://127.0.0.1:6379/2"
QUEUE = "celery"  # Celery's default queue: a Redis list of that name

app = Celery("celery_bench", broker=BROKER_URL)
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False)


@app.task(name="noop")
def noop(x: int) -> None:
    harness.record(x)


class CeleryPeer(harness.Peer):
    name = "celery"
    settings = SETTINGS
    distributions = ("celery", "kombu", "billiard", "redis")
    bulk_note = "Celery has no bulk enqueue API (group() publishes one message per task)"
    scale_skip = (
        "Redis-list broker: dequeue cost does not depend on queue depth (see huey-redis), "
        "and prefilling 1,000,000 messages one by one takes minutes per run"
    )

    def __init__(self) -> None:
        self.redis = redis.Redis.from_url(BROKER_URL)

    def reset(self, workdir: Path) -> None:
        self.redis.flushdb()

    def enqueue(self, arg: int) -> None:
        noop.delay(arg)

    def queued(self) -> int | None:
        return int(self.redis.llen(QUEUE))

    def worker_commands(self) -> list[list[str]]:
        return [
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "celery_bench",
                "worker",
                "-P",
                "prefork",
                "-c",
                str(harness.WORKERS),
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        ]

    def close(self) -> None:
        self.redis.close()


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main({"celery": CeleryPeer}, argv)


if __name__ == "__main__":
    # Run the copy imported as `celery_bench`, the name the workers import.
    import celery_bench

    sys.exit(celery_bench.main())
