"""A running node whose SQLite disk fills up, then has room again (issue 21 D).

The database lives on a small tmpfs the test mounts (root only) and fills
to the last byte. Jobs that end meanwhile cannot be settled: the master must
say why, keep supervising, keep their outcomes until the store takes them,
and go on by itself once space is back, without a restart and without
taking itself for dead (the disk stays full for longer than the node's
heartbeat window).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.process.daemon import Daemon, open_gate
from tests.smalldisk import SmallDisk, needs_root, small_disk
from tests.waiting import wait_until

pytestmark = needs_root


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    with small_disk(tmp_path / "disk", 16 << 20) as mounted:
        yield mounted


R = "jobd_test_routines"


def count(text: str, words: str) -> int:
    return sum(words in line for line in text.splitlines())


def test_a_full_disk_pauses_the_master_and_loses_no_outcome(
    tmp_path: Path, disk: SmallDisk
) -> None:
    database = disk.mount / "jobd.db"
    daemon = Daemon(
        tmp_path,
        f"sqlite:///{database}",
        store={"heartbeat_interval": "200ms", "node_timeout": "2s"},
    )
    try:
        daemon.start()
        client = daemon.client()
        gate = daemon.gate()
        jobs = [client.enqueue(f"{R}:blocked", daemon.events, gate, tag=n) for n in range(2)]
        daemon.wait_event("started", count=2)
        disk.fill(database)
        open_gate(gate)  # both end while nothing can be written
        daemon.wait_event("finished", count=2)
        # The master says why, on each failed heartbeat, for longer than the
        # node's 2 s window; the jobs stay running in the store meanwhile.
        wait_until(
            lambda: count(daemon.stderr(), "heartbeat:") >= 15,
            timeout=30,
            what="3 s of failed heartbeats",
        )
        log = daemon.stderr()
        assert f"the disk holding {disk.mount} is full" in log
        assert "store unavailable (claims paused" in log
        assert daemon.process is not None and daemon.process.poll() is None  # still supervising
        assert [client.get(job.id).state for job in jobs] == ["running", "running"]

        disk.empty()  # space is back: the master goes on by itself
        for job in jobs:
            daemon.wait_state(job.id, "succeeded", timeout=20)
        for job in jobs:
            assert [a.outcome for a in client.attempts(job.id)] == ["succeeded"]
        assert "the store is reachable again" in daemon.stderr()
        assert "is dead" not in daemon.stderr()  # it did not take itself for dead
        after = client.enqueue(f"{R}:record", daemon.events, tag="after")
        daemon.wait_state(after.id, "succeeded")
        assert len(daemon.events_seen("started")) == 2  # each job ran once
        assert daemon.stop() == 0
        assert "Traceback" not in daemon.stderr()
    finally:
        daemon.kill_all()
