"""A global PostgreSQL outage, on a cluster of the test's own: every node is cut
off at once, and the first to reconnect must not take the others for dead."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import jobd
from tests.pgcluster import OwnCluster
from tests.process.test_multinode import Cluster, R
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres


def test_after_a_global_outage_the_first_node_back_does_not_take_the_others_for_dead(
    tmp_path: Path, own_pg: OwnCluster
) -> None:
    nodes = Cluster(tmp_path, own_pg.url)
    try:
        # `quick` is back on its feet 0.2 s after the server; `slow` heartbeats only
        # every 2 s, so for up to 2 s its heartbeat is older than quick's window (4 s
        # below the outage). Judged then, slow's running jobs would run twice.
        quick = nodes.add("quick", store={"heartbeat_interval": "200ms", "node_timeout": "4s"})
        slow = nodes.add("slow", store={"heartbeat_interval": "2s", "node_timeout": "4s"})
        quick.upgrade()
        nodes.start(quick, slow)
        client = nodes.client()
        client.enqueue_many(
            [jobd.JobSpec(f"{R}:record_slowly", (nodes.runs, 1.0), {"tag": i}) for i in range(24)]
        )
        # Both nodes busy: slow's jobs are the ones at stake.
        running = "SELECT count(DISTINCT node_id) AS n FROM jobs WHERE state = 'running'"
        wait_until(lambda: nodes.sql(running)[0].n == 2, timeout=15, what="both nodes running")
        own_pg.stop()
        time.sleep(6.0)  # the outage itself: longer than the 4 s window
        own_pg.start()
        nodes.wait_all_succeeded(24, timeout=60)

        runs = nodes.executions()
        assert len(runs) == 24 and set(runs.values()) == {1}, f"jobs ran twice: {runs}"
        assert not nodes.lost_attempts()
        for name in ("quick", "slow"):
            assert "is dead" not in nodes.masters[name].stderr()
            assert "has not heartbeated" not in nodes.masters[name].stderr()
        assert "cut off from the store" in quick.stderr()
    finally:
        nodes.close()
