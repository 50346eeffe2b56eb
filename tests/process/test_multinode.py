"""Several "hosts" on one PostgreSQL database: real `jobd run` processes.

Each master has its own node_name (they share this machine's host name, so
they rescue each other by heartbeat, as separate hosts do, not by pid).
Every job appends one line to a shared file when it runs, so executions are
counted per job: exactly once when nothing dies, twice at most and only
when an attempt was recorded as lost.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

import jobd
from jobd.store.engine import normalize_url
from tests.process.daemon import Daemon, open_gate
from tests.waiting import wait_until

R = "jobd_test_routines"
pytestmark = pytest.mark.postgres

FAST = {"heartbeat_interval": "200ms", "node_timeout": "2s", "poll_interval": "1s"}
QUIET = {"JOBD_TEST_HOOK_EVENTS": ""}  # no hook events: executions are counted in `runs`


class Cluster:
    """Masters that share one database; each has a directory of its own."""

    def __init__(self, root: Path, database: str) -> None:
        self.root = root
        self.database = database
        self.runs = str(root / "runs.jsonl")  # one line per execution, from every worker
        self.masters: dict[str, Daemon] = {}
        self.engine = create_engine(normalize_url(database), pool_pre_ping=True)
        self._client: jobd.Client | None = None

    def add(self, name: str, schedules: str = "", **sections: dict[str, Any]) -> Daemon:
        home = self.root / name
        home.mkdir()
        given = {"jobd": {"node_name": name}, "store": dict(FAST), **sections}
        given["jobd"] = {"node_name": name, "log_level": "info", **sections.get("jobd", {})}
        given["store"] = {**FAST, **sections.get("store", {})}
        # Named connections, so a test can find this master's backends.
        named = f"{self.database}&application_name=jobd-master-{name}"
        master = Daemon(home, named, **given)
        if schedules:
            master.config.write_text(master.config.read_text() + schedules)
        self.masters[name] = master
        return master

    def start(self, *masters: Daemon) -> None:
        """Start masters side by side, then wait for each to be ready."""
        for master in masters:
            master.start(wait_ready=False, env=QUIET)
        for master in masters:
            master.wait_notice("READY=1")

    def client(self) -> jobd.Client:
        if self._client is None:
            self._client = jobd.Client(self.database)
        return self._client

    def enqueue(self, count: int, tag: str = "load", chunk: int = 5000) -> None:
        client = self.client()
        for start in range(0, count, chunk):
            client.enqueue_many(
                [
                    jobd.JobSpec(f"{R}:record_retry_now", (self.runs,), {"tag": f"{tag}-{i}"})
                    for i in range(start, min(start + chunk, count))
                ]
            )

    def sql(self, query: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(query), params))

    def states(self) -> dict[str, int]:
        return {state: n for state, n in self.sql("SELECT state, count(*) FROM jobs GROUP BY 1")}

    def wait_all_succeeded(self, total: int, timeout: float) -> None:
        def done() -> bool:
            states = self.states()
            assert not states.get("failed"), states
            return states.get("succeeded", 0) >= total and sum(states.values()) == states.get(
                "succeeded", 0
            )

        wait_until(done, timeout, interval=0.1, what=f"{total} jobs to succeed")

    def executions(self) -> Counter[int]:
        with open(self.runs) as handle:
            return Counter(json.loads(line)["job"] for line in handle if line.strip())

    def lost_attempts(self) -> dict[int, list[Any]]:
        found: dict[int, list[Any]] = {}
        for row in self.sql(
            "SELECT job_id, attempt, node_id, finished_at, error_message FROM attempts "
            "WHERE outcome = 'lost' ORDER BY id"
        ):
            found.setdefault(row.job_id, []).append(row)
        return found

    def assert_at_least_once_honestly(self) -> dict[int, list[Any]]:
        """Every job ran; a job ran twice only if an attempt of it was recorded as lost."""
        runs = self.executions()
        lost = self.lost_attempts()
        # (a schedule may have enqueued a job since the caller saw them all succeed)
        jobs = [row.id for row in self.sql("SELECT id FROM jobs WHERE state = 'succeeded'")]
        assert all(runs[job] >= 1 for job in jobs), "a job succeeded without running"
        twice = {job: n for job, n in runs.items() if n > 1}
        assert all(n <= 1 + len(lost.get(job, [])) for job, n in twice.items()), (twice, lost)
        return lost

    def backends(self, name: str) -> list[int]:
        rows = self.sql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = :app",
            app=f"jobd-master-{name}",
        )
        return [row.pid for row in rows]

    def close(self) -> None:
        for master in self.masters.values():
            master.kill_all()
        if self._client is not None:
            self._client.close()
        self.engine.dispose()


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    made = Cluster(tmp_path, pg_url)
    yield made
    made.close()


def test_three_masters_run_20000_jobs_each_exactly_once(cluster: Cluster) -> None:
    masters = [cluster.add(name) for name in ("host-a", "host-b", "host-c")]
    cluster.start(*masters)
    cluster.enqueue(20_000)
    cluster.wait_all_succeeded(20_000, timeout=180)

    runs = cluster.executions()
    assert len(runs) == 20_000 and set(runs.values()) == {1}, "a job ran twice"
    (attempts,) = cluster.sql("SELECT count(*) AS n, count(DISTINCT job_id) AS jobs FROM attempts")
    assert (attempts.n, attempts.jobs) == (20_000, 20_000)
    assert cluster.sql("SELECT DISTINCT outcome FROM attempts")[0].outcome == "succeeded"
    shares = dict(cluster.sql("SELECT node_id, count(*) FROM jobs GROUP BY 1"))
    assert len(shares) == 3 and min(shares.values()) > 1000, shares  # all three took part


def test_an_enqueue_wakes_a_master_on_another_host_at_once(cluster: Cluster) -> None:
    master = cluster.add("a", store={"poll_interval": "60s"})
    master.start(env=QUIET)
    client = cluster.client()  # a producer elsewhere: NOTIFY is all that reaches the master
    latencies = []
    for i in range(20):
        job = client.enqueue(f"{R}:record", cluster.runs, tag=i)
        done = master.wait_state(job.id, "succeeded", timeout=5)
        assert done.started_at is not None
        latencies.append(done.started_at - job.enqueued_at)
    assert max(latencies) < 0.5, latencies  # the poll interval is 60s


def tick_schedule(runs: str) -> str:
    kwargs = json.dumps({"events": runs, "tag": "tick"}).replace('":', '" =')
    return (
        f'\n[[schedules]]\nname = "tick"\nroutine = "{R}:record_retry_now"\nevery = "1s"\n'
        f"kwargs = {{ {kwargs[1:-1]} }}\n"
    )


def jobd_cli(master: Daemon, *argv: str) -> subprocess.CompletedProcess[str]:
    return master.cli(*argv)


def test_kill_9_of_one_master_its_jobs_finish_on_the_others_after_the_window(
    cluster: Cluster,
) -> None:
    ticks = tick_schedule(cluster.runs)
    health = {"node_stale_after": "1s"}
    a, b, victim = [cluster.add(n, schedules=ticks, health=health) for n in ("a", "b", "victim")]
    victim.start(env=QUIET)
    gate = str(cluster.root / "gate")
    client = cluster.client()
    # The victim surely dies holding a job: one that waits for a gate.
    gated = client.enqueue(f"{R}:blocked_first_time", cluster.runs, gate)
    victim.wait_state(gated.id, "running")
    cluster.start(a, b)
    cluster.enqueue(3000)
    wait_until(lambda: cluster.states().get("succeeded", 0) >= 500, timeout=30, what="load")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait_exit()
    ((victim_node, last_beat),) = cluster.sql(
        "SELECT id, heartbeat_at FROM nodes WHERE name = 'victim'"
    )
    held = [
        row.id
        for row in cluster.sql(
            "SELECT id FROM jobs WHERE state = 'running' AND node_id = :n", n=victim_node
        )
    ]
    assert gated.id in held
    open_gate(gate)

    cluster.wait_all_succeeded(3001, timeout=60)
    lost = cluster.assert_at_least_once_honestly()
    assert set(lost) == set(held), "the jobs the victim held are the ones recorded as lost"
    for rows in lost.values():
        (row,) = rows
        assert row.node_id == victim_node and "stopped heartbeating" in row.error_message
        # Rescued once the window (2s) had passed since its last heartbeat, not before.
        # The server's clock judges staleness; finished_at is the judge's loop time,
        # read a few milliseconds before its transaction asks the server.
        assert row.finished_at - last_beat >= 2.0 - 0.1
    assert client.get(gated.id).result == "attempt 2"

    # The schedule fired once per second, whichever master inserted each fire (the
    # load may drain in under the three seconds that takes, on a fast host).
    fires = wait_until(
        lambda: len(rows := cluster.sql("SELECT fire_at, job_id FROM schedule_fires "
                                        "ORDER BY fire_at")) >= 3 and rows,
        timeout=10, what="three schedule fires",
    )  # fmt: skip
    seconds = [int(row.fire_at) for row in fires]
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds))), "a fire missed or twice"
    ticked = cluster.sql(
        "SELECT count(*) AS n FROM jobs WHERE kwargs LIKE '%tick%' AND state = 'succeeded'"
    )[0].n
    assert ticked >= len(fires) - 1  # the latest fire may still be running

    report = json.loads(jobd_cli(a, "health", "--json").stdout)
    (nodes_check,) = [c for c in report["checks"] if c["name"] == "nodes"]
    assert not nodes_check["ok"] and [n["name"] for n in nodes_check["lost"]] == ["victim"]


def test_a_master_cut_off_past_the_window_comes_back_without_overwriting(
    cluster: Cluster,
) -> None:
    health = {"node_stale_after": "1s"}
    frozen, rescuer = cluster.add("frozen", health=health), cluster.add("rescuer", health=health)
    frozen.start(env=QUIET)
    gate = str(cluster.root / "gate")
    client = cluster.client()
    jobs = [client.enqueue(f"{R}:blocked_first_time", cluster.runs, gate) for _ in range(2)]
    for job in jobs:
        frozen.wait_state(job.id, "running")
    rescuer.start(env=QUIET)
    os.kill(frozen.pid, signal.SIGSTOP)  # its workers run on; the master neither beats nor hears
    try:
        for job in jobs:  # rescued after the window and run again, to the end, elsewhere
            done = rescuer.wait_state(job.id, "succeeded", timeout=15)
            assert done.result == "attempt 2"
        verdict = json.loads(jobd_cli(rescuer, "health", "--json").stdout)
        (nodes_check,) = [c for c in verdict["checks"] if c["name"] == "nodes"]
        assert [n["name"] for n in nodes_check["lost"]] == ["frozen"]
        assert sum(cluster.executions().values()) == 4  # each job started twice
        open_gate(gate)  # the first attempts, still in the frozen master's workers, finish
    finally:
        os.kill(frozen.pid, signal.SIGCONT)

    (frozen_node,) = [r.id for r in cluster.sql("SELECT id FROM nodes WHERE name = 'frozen'")]
    wait_until(
        lambda: (
            cluster.sql(
                "SELECT count(*) AS n FROM attempts WHERE node_id = :n AND outcome = 'succeeded'",
                n=frozen_node,
            )[0].n
            == 2
        ),
        what="the frozen master to report its late results",
    )
    for job in jobs:  # which did not overwrite the reruns
        after = client.get(job.id)
        assert (after.state, after.result, after.attempts) == ("succeeded", "attempt 2", 2)
        assert [a.outcome for a in client.attempts(job.id)] == ["lost", "succeeded", "succeeded"]
    wait_until(lambda: "declared dead by another node" in frozen.stderr(), what="the warning")
    # It is a live node again: it heartbeats and takes new jobs.
    wait_until(
        lambda: (
            cluster.sql("SELECT stopped_at FROM nodes WHERE id = :n", n=frozen_node)[0][0] is None
        ),
        what="its heartbeat",
    )
    cluster.enqueue(200, tag="after")
    cluster.wait_all_succeeded(202, timeout=30)
    assert cluster.sql("SELECT count(*) AS n FROM jobs WHERE node_id = :n", n=frozen_node)[0].n > 0
    verdict = json.loads(jobd_cli(rescuer, "health", "--json").stdout)
    assert verdict["healthy"], verdict


def test_terminated_connections_under_load_lose_nothing(cluster: Cluster) -> None:
    # No poll to fall back on: wake-ups must keep working through it all.
    masters = [cluster.add(name, store={"poll_interval": "60s"}) for name in ("a", "b")]
    cluster.start(*masters)
    cluster.enqueue(4000)
    terminated = 0
    for mark in range(250, 4000, 250):  # cut every connection each 250 jobs done
        wait_until(lambda m=mark: cluster.states().get("succeeded", 0) >= m, timeout=30)
        for name in ("a", "b"):
            for pid in cluster.backends(name):  # the store's connection and the listener
                cluster.sql("SELECT pg_terminate_backend(:pid)", pid=pid)
                terminated += 1
    cluster.wait_all_succeeded(4000, timeout=60)
    assert terminated >= 10
    lost = cluster.assert_at_least_once_honestly()
    assert not lost  # no master was ever silent for the window: nothing was rescued
    assert set(cluster.executions().values()) == {1}
    for master in masters:
        assert master.process is not None and master.process.poll() is None
    # Wake-ups survived too: a job enqueued now starts at once, not at the next poll.
    job = cluster.client().enqueue(f"{R}:record", cluster.runs, tag="late")
    masters[0].wait_state(job.id, "succeeded", timeout=5)


PG_CTL = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main"]


@pytest.fixture
def server() -> Iterator[Any]:
    """Stops and starts the PostgreSQL server; afterwards it is up, whatever happened."""
    if shutil.which(PG_CTL[0]) is None or os.geteuid() != 0:
        pytest.skip("stopping the server needs pg_ctlcluster, as root")

    def control(action: str) -> None:
        subprocess.run([*PG_CTL, action], check=True, timeout=120, capture_output=True)

    yield control
    status = subprocess.run([*PG_CTL, "status"], check=False, capture_output=True, timeout=30)
    if status.returncode != 0:
        control("start")


def statuses(master: Daemon) -> list[str]:
    return [n for n in master.read_notices() if n.startswith("STATUS=")]


def test_a_server_restart_during_load_loses_nothing(cluster: Cluster, server: Any) -> None:
    masters = [cluster.add(name) for name in ("a", "b")]
    cluster.start(*masters)
    cluster.enqueue(4000)
    wait_until(lambda: cluster.states().get("succeeded", 0) >= 1000, timeout=30, what="load")
    server("stop")
    for master in masters:  # claims stop, the master goes on and says why
        wait_until(
            lambda m=master: "store unavailable" in statuses(m)[-1],
            timeout=10,
            what="STATUS= saying the store is unavailable",
        )
        assert master.process is not None and master.process.poll() is None
        assert len(master.workers()) == 2
    restarted = time.time()
    server("start")
    cluster.wait_all_succeeded(4000, timeout=60)
    cluster.assert_at_least_once_honestly()
    after = cluster.sql("SELECT count(*) AS n FROM jobs WHERE started_at > :t", t=restarted)
    assert after[0].n > 0, "the load was over before the server stopped"
    for master in masters:  # and says so no longer
        wait_until(
            lambda m=master: "store unavailable" not in statuses(m)[-1],
            timeout=10,
            what="STATUS= without 'store unavailable'",
        )
    job = cluster.client().enqueue(f"{R}:record", cluster.runs, tag="after")
    masters[0].wait_state(job.id, "succeeded", timeout=5)
