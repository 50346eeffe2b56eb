"""Drain throughput with one and with three masters on PostgreSQL, next to SQLite.

    .venv/bin/python benchmarks/multinode.py [--jobs 20000] [--runs 3] [--workers 2]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Each configuration starts its masters (real `jobd run` processes, `--workers`
each, one node_name each, as if on separate hosts) on an empty store, waits
for READY=1 from every one of them, enqueues `--jobs` no-op jobs in one bulk
insert (whose commit wakes the masters: a datagram on SQLite, NOTIFY on
PostgreSQL) and waits until all have succeeded. Figures come from the store,
not from polling: jobs/s from the enqueue's commit to the last attempt's
end, and from the first attempt's start to the last one's end ("steady").
PostgreSQL runs in a database of its own (`jobd_bench_multinode`, dropped
and created for every run). Medians of `--runs` runs, configurations
interleaved. Every master and worker shares this one machine, so three
masters compete with each other and with PostgreSQL for its cores: the
figures show the coordination's cost, not what three hosts would do.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATABASE = "jobd_bench_multinode"
ROUTINES = "multinode_routines"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="workers per master")
    parser.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin URL"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))  # the client resolves the routine by importing it
    configs = [("sqlite", 1), ("postgresql", 1), ("postgresql", 3)]
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {c: [] for c in configs}
    for run in range(args.runs):
        for dialect, masters in configs:
            with tempfile.TemporaryDirectory(prefix="jobd-multinode-") as tmp:
                url = _database(dialect, Path(tmp), args.postgres)
                figures = drain(url, Path(tmp), masters, args.jobs, args.workers)
                results[(dialect, masters)].append(figures)
                print(
                    f"run {run + 1}: {dialect}, {masters} master(s): "
                    f"{figures[0]:,.0f} jobs/s from commit, {figures[1]:,.0f} steady, "
                    f"enqueue {figures[2]:,.0f} jobs/s (load average {os.getloadavg()[0]:.2f})",
                    file=sys.stderr,
                )
    print(f"\n{args.jobs:,} no-op jobs, {args.workers} workers per master, medians of {args.runs}")
    print(
        "| store | masters | drain from commit (jobs/s) | drain, steady (jobs/s) "
        "| bulk enqueue (jobs/s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for (dialect, masters), runs in results.items():
        commit, steady, enqueue = (statistics.median(r[i] for r in runs) for i in range(3))
        name = "SQLite (WAL)" if dialect == "sqlite" else "PostgreSQL 15"
        print(f"| {name} | {masters} | {commit:,.0f} | {steady:,.0f} | {enqueue:,.0f} |")
    return 0


def _database(dialect: str, tmp: Path, admin_url: str) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{tmp / 'jobd.db'}"
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    return admin_url.rsplit("/", 1)[0] + f"/{DATABASE}"


def drain(url: str, tmp: Path, masters: int, jobs: int, workers: int) -> tuple[float, float, float]:
    """(jobs/s from the enqueue's commit, jobs/s steady, bulk enqueue jobs/s)."""
    import jobd
    from jobd.store import open_store

    store = open_store(url)
    store.upgrade()
    with _masters(url, tmp, masters, workers):
        client = jobd.Client(url)
        specs = [jobd.JobSpec(f"{ROUTINES}:noop") for _ in range(jobs)]
        started = time.time()
        client.enqueue_many(specs)
        committed = time.time()
        deadline = time.monotonic() + 600
        while _succeeded(store) < jobs:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url}: not drained within 600 s")
            time.sleep(0.05)  # progress polling only: the figures come from the store
        first, last = _span(store)
        client.close()
    store.close()
    return jobs / (last - committed), jobs / (last - first), jobs / (committed - started)


def _succeeded(store: object) -> int:
    stats = store.queue_stats()  # type: ignore[attr-defined]
    return sum(q.counts.get("succeeded", 0) for q in stats)


def _span(store: object) -> tuple[float, float]:
    from sqlalchemy import text

    with store.db.engine.connect() as conn:  # type: ignore[attr-defined]
        first, last = conn.execute(
            text("SELECT min(started_at), max(finished_at) FROM attempts")
        ).one()
    return float(first), float(last)


@contextlib.contextmanager
def _masters(url: str, tmp: Path, count: int, workers: int) -> Iterator[None]:
    processes: list[subprocess.Popen[bytes]] = []
    sockets: list[socket.socket] = []
    try:
        for n in range(count):
            home = tmp / f"node-{n}"
            home.mkdir()
            config = home / "jobd.toml"
            config.write_text(
                "[jobd]\n"
                f'database = "{url}"\n'
                f'modules = ["{ROUTINES}"]\n'
                f'pythonpath = ["{HERE}"]\n'
                f'node_name = "node-{n}"\n'
                'log_level = "warning"\n'
                f"[pool]\nmin_workers = {workers}\nmax_workers = {workers}\n"
            )
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            notify.bind(str(home / "notify.sock"))
            sockets.append(notify)
            env = {**os.environ, "NOTIFY_SOCKET": str(home / "notify.sock")}
            env.pop("JOBD_CONFIG", None)
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "from jobd.cli import run; run()",
                        "-c",
                        str(config),
                        "run",
                    ],
                    env=env,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=(home / "stderr").open("wb"),
                )
            )
        for notify in sockets:
            _wait_ready(notify)
        yield
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for notify in sockets:
            notify.close()


def _wait_ready(notify: socket.socket, timeout: float = 60.0) -> None:
    notify.settimeout(timeout)
    while b"READY=1" not in notify.recv(65536):
        pass


if __name__ == "__main__":
    sys.exit(main())
