"""Autoscaling and pools on the real daemon."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobd
from tests.process.daemon import JOBD, Daemon
from tests.waiting import wait_until

R = "jobd_test_routines"
FAST = {
    "scale_interval": "200ms",
    "scale_cooldown": "500ms",
    "idle_timeout": "500ms",
    "max_step": 2,
    "scale_up_threshold": 2,
}


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill_all()


def pool_sizes(daemon: Daemon) -> dict[str, int]:
    out = subprocess.run(
        [*JOBD, "-c", str(daemon.config), "status", "--json"], capture_output=True, check=True
    )
    (node,) = json.loads(out.stdout)["nodes"]
    return {pool["name"]: pool["workers"] for pool in node["pools"]}


def test_a_burst_grows_the_pool_to_its_bound_and_it_returns(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path, pool={"min_workers": 1, "max_workers": 4, **FAST})
    daemons.append(daemon)
    daemon.start()
    assert len(daemon.workers()) == 1  # starts at the minimum
    client = daemon.client()
    burst = client.enqueue_many([jobd.JobSpec(f"{R}:sleep_briefly", (0.3,)) for _ in range(40)])
    started = time.monotonic()
    wait_until(lambda: len(daemon.workers()) == 4, timeout=5, what="the pool at its bound")
    assert time.monotonic() - started < 2 * 0.2 + 1.0  # two intervals, plus the forks
    for job in burst:
        daemon.wait_state(job.id, "succeeded", timeout=30)
    wait_until(lambda: len(daemon.workers()) == 1, timeout=10, what="back to the minimum")
    attempts = [a for job in burst for a in client.attempts(job.id)]
    assert [a.outcome for a in attempts] == ["succeeded"] * 40  # none lost or interrupted
    assert "pool default: grow 1 -> 3" in daemon.stderr()
    assert "pool default: shrink" in daemon.stderr()


def test_the_pool_sizes_show_in_status_and_status_notices(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path, pool={"min_workers": 1, "max_workers": 3, **FAST})
    daemons.append(daemon)
    daemon.start()
    # the node's row is written each heartbeat: the first may predate READY
    wait_until(lambda: pool_sizes(daemon) == {"default": 1}, what="status showing 1 worker")
    daemon.client().enqueue_many([jobd.JobSpec(f"{R}:sleep_briefly", (0.5,)) for _ in range(30)])
    wait_until(lambda: pool_sizes(daemon) == {"default": 3}, what="status showing 3 workers")
    wait_until(
        lambda: any("busy" in n and "queued" in n for n in daemon.read_notices()),
        what="a STATUS= line",
    )


def test_a_flood_in_one_pool_leaves_the_others_latency(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path, pool={"min_workers": 1, "max_workers": 2, **FAST})
    daemon.config.write_text(
        daemon.config.read_text()
        + '\n[pools.bulk]\nqueues = ["bulk"]\nmin_workers = 1\nmax_workers = 2\n'
        + '\n[pools.emails]\nqueues = ["emails", "default"]\nmin_workers = 1\nmax_workers = 1\n'
    )
    daemons.append(daemon)
    daemon.start()
    client = daemon.client()
    wait_until(lambda: pool_sizes(daemon) == {"bulk": 1, "emails": 1}, what="both pools")

    def email_latencies(count: int) -> list[float]:
        seen = len(daemon.events_seen("email"))
        for i in range(count):
            client.enqueue(f"{R}:send_email", daemon.events, tag=i)
            daemon.wait_event("email", seen + i + 1)
        return [e["t"] - e["enqueued"] for e in daemon.events_seen("email")[seen:]]

    quiet = email_latencies(10)
    client.enqueue_many([jobd.JobSpec(f"{R}:bulk_work", (daemon.events, 0.2)) for _ in range(300)])
    wait_until(lambda: pool_sizes(daemon)["bulk"] == 2, what="bulk at its bound")
    flooded = email_latencies(10)
    # measured: 2.0 ms quiet, 2.7 ms with the flood; the bound leaves room for a busy CI
    assert statistics.median(flooded) < statistics.median(quiet) + 0.02, (quiet, flooded)
    assert pool_sizes(daemon)["emails"] == 1
