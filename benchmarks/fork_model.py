"""Fork model: workers forked from the master vs from a preloaded template.

    .venv/bin/python benchmarks/fork_model.py [--workers 8]

Model A, "fork the master": a parent that holds what jobd's master holds
(SQLAlchemy, the SQL store) forks each worker; the worker then imports the
application. Model B, "fork the template": a fresh interpreter imports the
worker runtime and the application once, then forks each worker ready-made.

For each: time from fork to the worker being ready (application imported),
and the worker's RSS (what `ps` and peers' figures show) and USS (memory
only it holds). The application stands in as a set of stdlib modules that a
web application typically pulls in (about 40 ms of imports).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

APP_MODULES = (
    "jobd.examples", "asyncio", "decimal", "email.mime.multipart", "http.client",
    "xml.etree.ElementTree", "logging.handlers", "urllib.request", "csv", "uuid",
    "zipfile", "tarfile", "sqlite3", "ssl", "argparse", "unittest.mock",
)  # fmt: skip

CHILD = r"""
import importlib, json, os, sys, time
import psutil

def ready_worker(write_fd, app_imported):
    t0 = time.perf_counter()
    if not app_imported:
        for name in MODULES:
            importlib.import_module(name)
    ready = time.perf_counter() - t0
    info = psutil.Process().memory_full_info()
    os.write(write_fd, json.dumps({"ready_s": ready, "rss": info.rss, "uss": info.uss}).encode())
    os._exit(0)

def spawn(count, app_imported):
    results = []
    for _ in range(count):
        r, w = os.pipe()
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            ready_worker(w, app_imported)
        os.close(w)
        data = json.loads(os.read(r, 4096))
        data["fork_to_ready_s"] = time.perf_counter() - t0
        os.close(r)
        os.waitpid(pid, 0)
        results.append(data)
    return results

MODEL, COUNT = sys.argv[1], int(sys.argv[2])
if MODEL == "master":
    import sqlalchemy, jobd.store.sql  # what the master holds
    print(json.dumps(spawn(COUNT, app_imported=False)))
else:
    import jobd.worker.template  # the worker runtime
    for name in MODULES:
        importlib.import_module(name)
    print(json.dumps(spawn(COUNT, app_imported=True)))
"""


def measure(model: str, count: int) -> dict[str, float]:
    code = f"MODULES = {APP_MODULES!r}\n{CHILD}"
    out = subprocess.run(
        [sys.executable, "-c", code, model, str(count)], check=True, capture_output=True, text=True
    ).stdout
    workers = json.loads(out)
    return {
        "fork_to_ready_ms": statistics.median(w["fork_to_ready_s"] for w in workers) * 1000,
        "worker_rss_mib": statistics.median(w["rss"] for w in workers) / 2**20,
        "worker_uss_mib": statistics.median(w["uss"] for w in workers) / 2**20,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = {
        "A: fork the master, import after fork": measure("master", args.workers),
        "B: fork the preloaded template": measure("template", args.workers),
    }
    print(f"{'model':42s} {'fork->ready':>12s} {'worker RSS':>11s} {'worker USS':>11s}")
    for name, row in rows.items():
        print(
            f"{name:42s} {row['fork_to_ready_ms']:9.1f} ms {row['worker_rss_mib']:7.1f} MiB "
            f"{row['worker_uss_mib']:7.1f} MiB"
        )
    print(f"({args.workers} workers each, medians; {time.perf_counter() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
