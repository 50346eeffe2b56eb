"""Autoscaling under a burst: queue depth and worker count over time.

    .venv/bin/python benchmarks/autoscale.py [--jobs 400] [--runtime 0.2] [--png FILE]

Starts `jobd run` on a fresh SQLite file with one pool (1 to 8 workers,
default scaling settings but a 0.5 s scale interval and 3 s idle timeout so
the picture is short), lets it idle, enqueues a burst of jobs that each
sleep `--runtime`, and samples every 100 ms the queued jobs (the store) and
the worker processes (the master's children). Prints when the pool reached
its bound, when the queue drained and when the pool was back at its
minimum, and draws both series in one PNG.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

import jobd
from jobd.store import open_store

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE = 0.1

CONFIG = """\
[jobd]
database = "sqlite:///{db}"
modules = ["jobd.examples"]
log_level = "info"

[pool]
min_workers = 1
max_workers = 8
scale_interval = "500ms"
scale_cooldown = "3s"
idle_timeout = "3s"
"""


def workers(master: psutil.Process) -> int:
    count = 0
    for child in master.children():
        with contextlib.suppress(psutil.Error):
            if "jobd: worker" in " ".join(child.cmdline()) and child.status() != "zombie":
                count += 1
    return count


def run(jobs: int, runtime: float, workdir: Path) -> list[tuple[float, int, int]]:
    config = workdir / "jobd.toml"
    config.write_text(CONFIG.format(db=workdir / "jobd.db"))
    store = open_store(f"sqlite:///{workdir / 'jobd.db'}")
    store.upgrade()
    log = (workdir / "jobd.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", "from jobd.cli import run; run()", "-c", str(config), "run"],
        start_new_session=True, stdout=log, stderr=log,
    )  # fmt: skip
    samples: list[tuple[float, int, int]] = []
    try:
        master = psutil.Process(process.pid)
        deadline = time.monotonic() + 30
        while workers(master) < 1:
            if time.monotonic() > deadline:
                raise SystemExit("jobd did not start")
            time.sleep(SAMPLE)
        client = jobd.Client(config=str(config))
        started = time.monotonic()
        burst_at, burst_done = 2.0, False
        while True:
            now = time.monotonic() - started
            if not burst_done and now >= burst_at:
                client.enqueue_many(
                    [jobd.JobSpec("jobd.examples:sleep", (runtime,)) for _ in range(jobs)]
                )
                burst_done = True
            queued = store.count_queued(("default",))
            size = workers(master)
            samples.append((now, queued, size))
            drained = burst_done and queued == 0
            if drained and size == 1 and now > burst_at + 5:
                samples.append((now + 2, 0, 1))
                return samples
            if now > 300:
                raise SystemExit("the burst did not drain within 300 s")
            time.sleep(SAMPLE)  # a sampling period, not synchronisation
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        store.close()


def report(samples: list[tuple[float, int, int]], jobs: int, runtime: float) -> dict[str, float]:
    burst = next(t for t, queued, _ in samples if queued)
    at_max = next((t for t, _, size in samples if size >= 8), float("nan"))
    drained = next(t for t, queued, _ in samples if t > burst and queued == 0)
    back = next(t for t, _, size in samples if t > drained and size == 1)
    figures = {
        "burst_jobs": jobs,
        "job_runtime_s": runtime,
        "to_max_workers_s": round(at_max - burst, 2),
        "drain_s": round(drained - burst, 2),
        "ideal_drain_s": round(jobs * runtime / 8, 2),
        "back_to_min_after_drain_s": round(back - drained, 2),
    }
    for key, value in figures.items():
        print(f"{key:28s} {value}")
    return figures


def draw(samples: list[tuple[float, int, int]], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [s[0] for s in samples]
    fig, left = plt.subplots(figsize=(8, 4))
    left.plot(times, [s[1] for s in samples], color="tab:blue", label="queued jobs")
    left.set_xlabel("seconds")
    left.set_ylabel("queued jobs", color="tab:blue")
    right = left.twinx()
    right.step(times, [s[2] for s in samples], where="post", color="tab:red", label="workers")
    right.set_ylabel("workers", color="tab:red")
    right.set_ylim(0, 9)
    left.set_title(title)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--runtime", type=float, default=0.2)
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "autoscaling.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        samples = run(args.jobs, args.runtime, Path(tmp))
    report(samples, args.jobs, args.runtime)
    draw(
        samples, args.png, f"a burst of {args.jobs} jobs of {args.runtime:g}s, pool of 1-8 workers"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
