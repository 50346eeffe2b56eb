"""Benchmark adapter for jobd itself, in the same harness as the peers.

Run with jobd's venv: ``.venv/bin/python benchmarks/peers/jobd_bench.py
--system jobd-sqlite|jobd-sqlite-full|jobd-postgres [--n N] [--workloads ...]``.
The workloads and their JSON are described in ``harness.py``. The daemon
is started as ``jobd -c <config> run``: one master, 2 workers, one job at a
time each.
"""

# Settings (published with the figures):
#   jobd-sqlite: SQLite file, WAL, synchronous=NORMAL (jobd's default: every
#     committed job survives a crash of any process; an OS crash or power
#     loss may lose the last commits), 2 workers, default pipelining
#     (pipeline_budget 2 ms), wake-ups by datagram, 1 s backstop poll.
#   jobd-sqlite-full: the same with sqlite_synchronous = "full" (each commit
#     survives a power loss too).
#   jobd-postgres: PostgreSQL 15 on 127.0.0.1, database jobd_bench.

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import harness
from jobd_routines import noop

import jobd

VENV_BIN = Path(sys.executable).parent
PG_URL = "postgresql://postgres@127.0.0.1:5432/jobd_bench"


class JobdPeer(harness.Peer):
    name = "jobd-sqlite"
    settings = (
        "SQLite WAL, synchronous=NORMAL (jobd's default); 2 workers; pipelining "
        "budget 2 ms; datagram wake-ups"
    )
    distributions = ("jobd", "SQLAlchemy")
    synchronous = "normal"

    def __init__(self) -> None:
        self.client: jobd.Client | None = None
        self.config = ""

    def database(self, workdir: Path) -> str:
        return f"sqlite:///{workdir / 'jobd.db'}"

    def reset(self, workdir: Path) -> None:
        self.close()
        self.config = str(workdir / "jobd.toml")
        Path(self.config).write_text(
            "[jobd]\n"
            f'database = "{self.database(workdir)}"\n'
            'modules = ["jobd_routines"]\n'
            f'pythonpath = ["{harness.PEERS_DIR}"]\n'
            'log_level = "warning"\n'
            "[pool]\n"
            f"min_workers = {harness.WORKERS}\n"
            f"max_workers = {harness.WORKERS}\n"
            "[store]\n"
            f'sqlite_synchronous = "{self.synchronous}"\n'
        )
        self.client = jobd.Client(config=self.config)
        self.client.store.upgrade()

    def enqueue(self, arg: int) -> None:
        assert self.client is not None
        self.client.enqueue(noop, arg)

    def enqueue_bulk(self, args: Sequence[int]) -> None:
        assert self.client is not None
        self.client.enqueue_many([jobd.JobSpec(noop, (arg,)) for arg in args])

    def queued(self) -> int | None:
        assert self.client is not None
        return sum(q.counts.get("queued", 0) for q in self.client.stats())

    def worker_commands(self) -> list[list[str]]:
        return [[str(VENV_BIN / "jobd"), "-c", self.config, "run"]]

    def worker_env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(harness.PEERS_DIR)}

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


class JobdFullPeer(JobdPeer):
    name = "jobd-sqlite-full"
    settings = "as jobd-sqlite, with synchronous=FULL (power-loss durable commits)"
    synchronous = "full"


class JobdPostgresPeer(JobdPeer):
    name = "jobd-postgres"
    settings = "PostgreSQL 15 on 127.0.0.1 (defaults: synchronous_commit on); 2 workers"
    distributions = ("jobd", "SQLAlchemy", "psycopg")

    def database(self, workdir: Path) -> str:
        import psycopg

        with psycopg.connect(PG_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS jobd_bench")
            admin.execute("CREATE DATABASE jobd_bench")
        return PG_URL

    def settle(self) -> None:
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute("ANALYZE jobs")


SYSTEMS: dict[str, type[harness.Peer]] = {
    "jobd-sqlite": JobdPeer,
    "jobd-sqlite-full": JobdFullPeer,
    "jobd-postgres": JobdPostgresPeer,
}


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(SYSTEMS, argv)


if __name__ == "__main__":
    os.chdir(harness.PEERS_DIR)
    sys.exit(main())
