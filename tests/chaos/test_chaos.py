"""The chaos suite, short: benchmarks/chaos.py for about 30 s on each backend.

Real `jobd run` nodes in a restart loop, real signals (worker and master
SIGKILLs, SIGHUP with a broken config, SIGSTOP past the heartbeat window),
on SQLite a full disk (a tmpfs of the test's own, filled), on PostgreSQL
restarts and outages of a cluster of the test's own; half the jobs are
enqueued while the faults land, a failed call sent again. Each test fails
on a lost or stuck job, a job the producer was told was in but is not, a
second job of one key no failed call explains, a run no killed or lost
attempt explains, a traceback in a daemon's output or a process left
behind; the report's table is the failure message. JOBD_CHAOS_SEED picks
another seed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.pgcluster import OwnCluster

BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

from chaos import Options, Report, run_chaos  # noqa: E402

SEED = int(os.environ.get("JOBD_CHAOS_SEED", "21"))


def check(report: Report, kinds: set[str], enqueue_faults: bool = True) -> None:
    assert not report.failures, report.table()
    assert kinds <= set(report.faults), report.table()  # every kind was sent
    assert report.kills and all(k.ready_at is not None for k in report.kills), report.table()
    # Half the jobs came from the producer, some of its calls through a fault
    # (SQLite fails a call only on its full disk).
    assert report.enqueued_during == report.options.jobs // 2, report.table()
    if enqueue_faults:
        assert sum(report.produced.errors.values()) > 0, report.table()
    print(report.table())


def test_chaos_on_sqlite(tmp_path: Path) -> None:
    options = Options(
        backend="sqlite", jobs=1500, seconds=30, seed=SEED, nodes=1, fault_every=0.6,
        drain_timeout=60, root=tmp_path, enqueue_during=0.5, disk=os.geteuid() == 0,
    )  # fmt: skip
    report = run_chaos(options)
    kinds = {"worker_kill", "master_kill", "bad_reload"}
    if options.disk:
        kinds.add("disk_full")
    check(report, kinds, enqueue_faults=bool(options.disk))
    assert sum(report.extra_runs.values()) > 0, report.table()  # the kills hit jobs
    if options.disk:  # the masters met the full disk, and said so
        assert report.disk_full_lines > 0, report.table()
        assert report.produced.errors["disk full"] > 0, report.table()


@pytest.mark.postgres
def test_chaos_on_postgres_with_two_nodes(tmp_path: Path, own_pg: OwnCluster) -> None:
    options = Options(
        backend="postgres", jobs=1500, seconds=30, seed=SEED, nodes=2, fault_every=0.6,
        drain_timeout=60, root=tmp_path, pg_url=own_pg.url, pg_cluster=own_pg,
        enqueue_during=0.5,
    )  # fmt: skip
    report = run_chaos(options)
    check(report, {"worker_kill", "master_kill", "bad_reload", "freeze", "pg_restart",
                   "pg_outage"})  # fmt: skip
    assert report.extra_runs["lost"] > 0, report.table()  # a freeze or a kill was rescued
