"""The routine `benchmarks/chaos.py` runs (workers import this module by name).

Each run appends one line to the ledger before it does anything else:
`job attempt pid node time`, in one write to a file opened with O_APPEND, so
lines from concurrent workers on every node never mix and a run that is
killed an instant later is still counted.
"""

from __future__ import annotations

import os
import time

import jobd

LEDGER_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND


@jobd.routine(max_attempts=100, retry_delay=0)
def append(ledger: str, seconds: float = 0.0) -> None:
    job = jobd.current_job()
    assert job is not None
    node = os.environ.get("JOBD_CHAOS_NODE", "-")
    line = f"{job.id} {job.attempt} {os.getpid()} {node} {time.time():.6f}\n"
    fd = os.open(ledger, LEDGER_FLAGS, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    if seconds > 0:
        time.sleep(seconds)  # the job's work: a window for the faults to land in
