"""Benchmark adapter for Dramatiq with its Redis broker.

Run with the dramatiq venv: ``benchmarks/.venvs/dramatiq/bin/python
dramatiq_bench.py [--n N] [--workloads ...]``; the workloads and the JSON
they print are described in ``harness.py``.
"""

# Settings (published with the figures): RedisBroker on 127.0.0.1:6379 db 4
# (flushed per run), default middleware (no results backend), actor defaults
# (retries on).  Worker: `dramatiq dramatiq_bench --processes 2 --threads 1`;
# other defaults kept (prefetch 2 per thread, idle polling backing off to the
# 1 s worker timeout).  No bulk enqueue API (group() sends one by one).
# Scale: skipped, the reason is in DramatiqPeer.scale_skip.

import sys
from collections.abc import Sequence
from pathlib import Path

import dramatiq
import harness
from dramatiq.brokers.redis import RedisBroker

SETTINGS = (
    "RedisBroker db 4, default middleware, no results; "
    "dramatiq --processes 2 --threads 1 (defaults otherwise: prefetch 2/thread, "
    "idle poll backoff up to 1 s)"
)
REDIS_URL = "redis://127.0.0.1:6379/4"
QUEUE = "bench"

broker = RedisBroker(url=REDIS_URL)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop", queue_name=QUEUE)
def noop(x: int) -> None:
    harness.record(x)


class DramatiqPeer(harness.Peer):
    name = "dramatiq"
    settings = SETTINGS
    distributions = ("dramatiq", "redis")
    bulk_note = "Dramatiq has no bulk enqueue API (group() sends one message at a time)"
    scale_skip = (
        "Redis-list broker: dequeue cost does not depend on queue depth (see huey-redis), "
        "and prefilling 1,000,000 messages one by one takes minutes per run"
    )

    def reset(self, workdir: Path) -> None:
        broker.client.flushdb()

    def enqueue(self, arg: int) -> None:
        noop.send(arg)

    def queued(self) -> int | None:
        return int(broker.client.llen(f"{broker.namespace}:{QUEUE}"))

    def worker_commands(self) -> list[list[str]]:
        return [
            [
                sys.executable,
                "-m",
                "dramatiq",
                "dramatiq_bench",
                "--processes",
                str(harness.WORKERS),
                "--threads",
                "1",
            ]
        ]

    def close(self) -> None:
        broker.close()


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main({"dramatiq": DramatiqPeer}, argv)


if __name__ == "__main__":
    # Run the copy imported as `dramatiq_bench`, the name the workers import.
    import dramatiq_bench

    sys.exit(dramatiq_bench.main())
