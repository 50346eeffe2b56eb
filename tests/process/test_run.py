"""`jobd run` as a real process: dispatch, deaths, drains, at-least-once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import jobd
from jobd import exitcodes
from tests.process.daemon import JOBD, Daemon, open_gate
from tests.waiting import wait_until

R = "jobd_test_routines"


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill_all()


@pytest.fixture
def daemon(tmp_path: Path, daemons: list[Daemon]) -> Daemon:
    d = Daemon(tmp_path)
    daemons.append(d)
    return d


def test_ready_after_min_workers_booted_and_jobs_run(daemon: Daemon) -> None:
    daemon.start()
    assert len(daemon.workers()) == 2
    client = daemon.client()
    jobs = [client.enqueue(f"{R}:record", daemon.events, tag=i) for i in range(50)]
    for job in jobs:
        done = daemon.wait_state(job.id, "succeeded")
        assert isinstance(done.result, int)
    ran = daemon.events_seen("ran")
    assert sorted(e["tag"] for e in ran) == list(range(50))
    assert {e["pid"] for e in ran} <= {w.pid for w in daemon.workers()}


def test_dispatch_in_priority_order(tmp_path: Path, daemons: list[Daemon]) -> None:
    daemon = Daemon(tmp_path, pool={"min_workers": 1, "max_workers": 1, "pipeline_budget": 0})
    daemons.append(daemon)
    daemon.upgrade()
    client = daemon.client()
    for tag, priority in (("low", 0), ("high", 9), ("mid", 5), ("high2", 9)):
        client.enqueue(f"{R}:record", daemon.events, tag=tag, priority=priority)
    daemon.start()
    ran = daemon.wait_event("ran", 4)
    assert [e["tag"] for e in ran] == ["high", "high2", "mid", "low"]


def test_sigkill_of_a_busy_worker_is_recorded_and_retried(daemon: Daemon) -> None:
    daemon.start()
    gate = daemon.gate()
    job = daemon.client().enqueue(f"{R}:blocked_first_time", daemon.events, gate)
    (started,) = daemon.wait_event("started")
    before = {w.pid for w in daemon.workers()}
    os.kill(started["pid"], signal.SIGKILL)
    done = daemon.wait_state(job.id, "succeeded")
    assert done.result == "attempt 2"
    first, second = daemon.client().attempts(job.id)
    assert (first.outcome, first.error_type, first.worker_pid) == (
        "killed",
        "SIGKILL",
        started["pid"],
    )
    assert "SIGKILL" in (first.error_message or "")
    assert second.outcome == "succeeded"
    workers = wait_until(lambda: len(w := daemon.workers()) == 2 and w, what="a replacement worker")
    assert started["pid"] not in {w.pid for w in workers}
    assert len({w.pid for w in workers} - before) == 1


def test_sigkill_of_the_master_takes_its_workers_and_a_restart_rescues_at_once(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    slow = {"poll_interval": "30s", "heartbeat_interval": "30s"}
    first = Daemon(tmp_path, store=slow, health={"node_stale_after": "120s"})
    daemons.append(first)
    first.start()
    gate = first.gate()
    job = first.client().enqueue(f"{R}:blocked_first_time", first.events, gate)
    first.wait_event("started")
    workers = first.workers()
    template = [c for c in psutil.Process(first.pid).children() if c not in workers]
    os.kill(first.pid, signal.SIGKILL)
    wait_until(
        lambda: all(exited(p) for p in [*workers, *template]),
        timeout=1.0,
        what="the workers and the template to exit after the master's death",
    )
    assert first.client().get(job.id).state == "running"

    second = Daemon(tmp_path, store=slow, health={"node_stale_after": "120s"})
    daemons.append(second)
    restarted = time.monotonic()
    second.start()
    done = second.wait_state(job.id, "succeeded", timeout=10)
    assert time.monotonic() - restarted < 10  # not after a 30s poll or heartbeat
    assert done.result == "attempt 2"
    outcomes = [a.outcome for a in second.client().attempts(job.id)]
    assert outcomes == ["lost", "succeeded"]


def test_health_turns_bad_at_once_when_the_local_master_dies(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    # The heartbeat window is long: only the pid check can notice in time.
    daemon = Daemon(tmp_path, health={"node_stale_after": "120s"})
    daemons.append(daemon)
    daemon.start()
    healthy = daemon.cli("health", "--json")
    assert healthy.returncode == exitcodes.OK, healthy.stdout + healthy.stderr
    pid = daemon.pid
    os.kill(pid, signal.SIGKILL)
    daemon.wait_exit()
    killed = time.monotonic()
    verdict = wait_until(
        lambda: (done := daemon.cli("health", "--json")).returncode != exitcodes.OK and done,
        timeout=5.0,
        what="jobd health to fail after the master's SIGKILL",
    )
    assert time.monotonic() - killed < 5.0
    checks = {c["name"]: c for c in json.loads(verdict.stdout)["checks"]}
    assert not checks["master"]["ok"] and f"pid {pid}" in checks["master"]["summary"]
    assert not checks["nodes"]["ok"] and "has ended" in checks["nodes"]["summary"]


def test_busy_workers_whose_master_is_killed_exit_quietly(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    # Workers replying when the master dies see its socket break before the
    # kernel's SIGKILL (PR_SET_PDEATHSIG) lands: it raced in about 1 of 3 kills.
    four = {"min_workers": 4, "max_workers": 4}
    for round_ in range(4):
        home = tmp_path / f"round-{round_}"
        home.mkdir()
        daemon = Daemon(home, pool=four)
        daemons.append(daemon)
        daemon.start()
        client = daemon.client()
        client.enqueue_many([jobd.JobSpec(f"{R}:noop", (n,)) for n in range(20_000)])
        wait_until(
            lambda: len(client.list(state="succeeded", limit=200)) >= 200,  # noqa: B023
            timeout=20,
            what="jobs flowing",
        )
        workers = daemon.workers()
        os.kill(daemon.pid, signal.SIGKILL)  # mid-flow: workers are sending replies
        daemon.wait_exit()
        wait_until(lambda: all(exited(w) for w in workers), 5, what="the workers to exit")  # noqa: B023
        assert "Traceback" not in daemon.stderr(), daemon.stderr()[-2000:]
        assert "crashed" not in daemon.stderr()


def test_the_working_directory_cannot_shadow_jobd_but_its_modules_still_import(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    workdir = tmp_path / "app"
    (workdir / "jobd").mkdir(parents=True)
    (workdir / "jobd" / "__init__.py").write_text("raise SystemExit('the shadow jobd ran')\n")
    (workdir / "localjobs.py").write_text(
        "import jobd\n\n@jobd.routine\ndef where() -> str:\n    return jobd.__file__\n"
    )
    daemon = Daemon(tmp_path, jobd={"modules": ["jobd_test_routines", "localjobs"]})
    daemons.append(daemon)
    script = Path(sys.executable).with_name("jobd")  # as systemd runs it, not `python -c`
    daemon.start(cwd=workdir, command=[str(script)])
    job = daemon.client().enqueue("localjobs:where")
    done = daemon.wait_state(job.id, "succeeded")
    assert done.result == jobd.__file__
    assert "shadow" not in daemon.stderr()


def test_a_poison_pill_fails_after_max_attempts(daemon: Daemon) -> None:
    daemon.start()
    job = daemon.client().enqueue(f"{R}:poison", daemon.events)
    failed = daemon.wait_state(job.id, "failed", timeout=20)
    assert failed.attempts == 3
    attempts = daemon.client().attempts(job.id)
    assert [a.outcome for a in attempts] == ["killed"] * 3
    assert len(daemon.events_seen("poison")) == 3


def test_the_failed_hook_runs_once_when_a_job_fails_for_good(daemon: Daemon) -> None:
    daemon.start()
    job = daemon.client().enqueue(f"{R}:AlwaysFails", daemon.events)
    daemon.wait_state(job.id, "failed")
    (hook,) = daemon.wait_event("failed_hook")
    assert (hook["job"], hook["attempts"], hook["outcome"]) == (job.id, 2, "error")
    assert hook["message"] == "this routine always fails"
    hook_job = wait_until(
        lambda: [
            j
            for j in daemon.client().list(routine="jobd.failure:call_failed_hook")
            if j.state == "succeeded"
        ],
        what="the hook job to succeed",
    )
    assert len(hook_job) == 1
    assert len(daemon.events_seen("failed_hook")) == 1


def test_a_worker_that_cannot_boot_stops_the_master_with_code_3(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path, jobd={"modules": ["jobd_test_routines", "no_such_module_here"]})
    daemons.append(daemon)
    daemon.start(wait_ready=False)
    assert daemon.wait_exit(15) == exitcodes.BOOT_ERROR
    stderr = daemon.stderr()
    assert "no_such_module_here" in stderr and "Traceback" not in stderr.split("boot failed")[-1]


def test_a_second_master_of_the_same_node_refuses_to_start(
    tmp_path: Path, daemon: Daemon, daemons: list[Daemon]
) -> None:
    daemon.start()
    (tmp_path / "second").mkdir()
    second = Daemon(tmp_path / "second", database=daemon.database)
    daemons.append(second)
    second.config = daemon.config  # the same config: the same node name, on this host
    second.start(wait_ready=False)
    assert second.wait_exit(15) == exitcodes.USAGE
    (line,) = second.stderr().strip().splitlines()[-1:]
    assert "is already running on" in line and f"master pid {daemon.pid}" in line
    assert "Traceback" not in second.stderr()
    job = daemon.client().enqueue("jobd_test_routines:noop")
    assert daemon.wait_state(job.id, "succeeded").state == "succeeded"  # the first goes on


def test_an_idle_worker_that_dies_is_replaced(daemon: Daemon) -> None:
    daemon.start()
    victim = daemon.workers()[0]
    victim.kill()
    wait_until(
        lambda: len(w := daemon.workers()) == 2 and victim.pid not in {p.pid for p in w},
        what="a new worker",
    )
    job = daemon.client().enqueue(f"{R}:record", daemon.events)
    daemon.wait_state(job.id, "succeeded")


def test_an_enqueue_wakes_the_master_at_once(tmp_path: Path, daemons: list[Daemon]) -> None:
    daemon = Daemon(tmp_path, store={"poll_interval": "60s"})
    daemons.append(daemon)
    daemon.start()
    client = daemon.client()
    latencies = []
    for i in range(20):
        job = client.enqueue(f"{R}:record", daemon.events, tag=i)
        (ran,) = [e for e in daemon.wait_event("ran", i + 1) if e["job"] == job.id]
        latencies.append(ran["t"] - job.enqueued_at)
    assert max(latencies) < 0.5, latencies  # the poll interval is 60s


def test_a_producer_finds_a_master_that_started_after_it(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    # Producers re-read the wake directory at most every LOOK_EVERY seconds, not
    # on every enqueue: a restarted master must still be woken, not polled.
    daemon = Daemon(tmp_path, store={"poll_interval": "60s"})
    daemons.append(daemon)
    daemon.upgrade()
    client = daemon.client()
    first = client.enqueue(f"{R}:record", daemon.events, tag="before")  # no master yet
    for round_ in range(2):
        daemon.start()
        if round_ == 0:
            daemon.wait_state(first.id, "succeeded")  # claimed at start
        job = client.enqueue(f"{R}:record", daemon.events, tag=round_)
        (ran,) = [e for e in daemon.wait_event("ran", round_ + 2) if e["job"] == job.id]
        assert ran["t"] - job.enqueued_at < 0.5  # the poll interval is 60s
        assert daemon.stop() == 0


def test_status_shows_the_node_and_its_workers(daemon: Daemon) -> None:
    import json

    daemon.start()
    gate = daemon.gate()
    job = daemon.client().enqueue(f"{R}:blocked", daemon.events, gate)
    daemon.wait_event("started")

    def busy_status() -> dict | None:
        out = subprocess.run(
            [*JOBD, "-c", str(daemon.config), "status", "--json"], capture_output=True, check=True
        )
        status = json.loads(out.stdout)
        nodes = status["nodes"]
        if nodes and any(w["state"] == "busy" for w in nodes[0]["workers"]):
            return status
        return None

    status = wait_until(busy_status, what="status with a busy worker")
    (node,) = status["nodes"]
    assert node["pid"] == daemon.pid
    workers = {w["slot"]: w for w in node["workers"]}
    assert set(workers) == {1, 2}
    busy = [w for w in workers.values() if w["state"] == "busy"]
    assert busy[0]["job"] == job.id and busy[0]["routine"] == f"{R}:blocked"
    assert all(w["rss"] > 1_000_000 for w in workers.values())
    assert {w["pid"] for w in workers.values()} == {p.pid for p in daemon.workers()}
    open_gate(gate)


def test_process_titles(daemon: Daemon) -> None:
    daemon.start()
    gate = daemon.gate()
    job = daemon.client().enqueue(f"{R}:blocked", daemon.events, gate)
    daemon.wait_event("started")
    titles = wait_until(
        lambda: (
            (t := sorted(title(w) for w in daemon.workers())) and any("busy" in x for x in t) and t
        ),
        what="a busy worker title",
    )
    assert any(t.startswith("jobd: worker") and t.endswith("[default] idle") for t in titles)
    assert any(t.endswith(f"[default] busy {R}:blocked #{job.id}") for t in titles)
    master = wait_until(lambda: "workers" in (t := title(psutil.Process(daemon.pid))) and t)
    assert master.startswith("jobd: master [2 workers,")
    open_gate(gate)


def exited(process: psutil.Process) -> bool:
    """Gone, or a zombie waiting for PID 1 to reap it."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def title(process: psutil.Process) -> str:
    return " ".join(process.cmdline()).strip()


def test_workers_are_clean_children_of_the_master(daemon: Daemon) -> None:
    daemon.start()
    for worker in daemon.workers():
        os.kill(worker.pid, signal.SIGINT)  # a terminal's ^C is the master's business
    job = daemon.client().enqueue(f"{R}:report_process", daemon.events)
    daemon.wait_state(job.id, "succeeded")
    (seen,) = daemon.events_seen("process")
    assert seen["notify_socket"] is None
    assert seen["ppid"] == daemon.pid
    assert seen["sigint_ignored"] is True
    assert len(daemon.workers()) == 2


def test_hooks_run_in_the_worker(daemon: Daemon) -> None:
    daemon.start()
    ok = daemon.client().enqueue(f"{R}:record", daemon.events)
    bad = daemon.client().enqueue(f"{R}:AlwaysFails", daemon.events)
    daemon.wait_state(ok.id, "succeeded")
    daemon.wait_state(bad.id, "failed")
    boots = daemon.events_seen("worker_boot")
    assert {b["slot"] for b in boots} >= {1, 2}
    assert {e["job"] for e in daemon.events_seen("job_processing")} >= {ok.id, bad.id}
    assert ok.id in {e["job"] for e in daemon.events_seen("job_processed")}
    failed = [e for e in daemon.events_seen("job_failed") if e["job"] == bad.id]
    assert [e["error"] for e in failed] == ["ValueError", "ValueError"]


def test_sigterm_drains_running_jobs_and_claims_no_more(daemon: Daemon) -> None:
    daemon.start()
    gate = daemon.gate()
    client = daemon.client()
    running = client.enqueue(f"{R}:blocked", daemon.events, gate)
    daemon.wait_event("started")
    daemon.signal(signal.SIGTERM)
    daemon.wait_notice("STOPPING=1")
    waiting = client.enqueue(f"{R}:record", daemon.events)
    open_gate(gate)
    assert daemon.wait_exit() == 0
    assert client.get(running.id).state == "succeeded"
    assert client.get(waiting.id).state == "queued"


def test_drain_timeout_puts_jobs_back_uncounted(tmp_path: Path, daemons: list[Daemon]) -> None:
    daemon = Daemon(tmp_path, pool={"graceful_timeout": "500ms"})
    daemons.append(daemon)
    daemon.start()
    job = daemon.client().enqueue(f"{R}:blocked", daemon.events, daemon.gate())
    daemon.wait_event("started")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    back = daemon.client().get(job.id)
    assert (back.state, back.attempts) == ("queued", 0)
    (attempt,) = daemon.client().attempts(job.id)
    assert attempt.outcome == "interrupted"


def test_a_job_a_drain_put_back_runs_again_under_a_new_attempt_number(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    # Issue 21 C9: the put-back gave the count back, and the next run recorded
    # attempt 1 again (two ledger lines for one attempt in the chaos audit).
    daemon = Daemon(tmp_path, pool={"graceful_timeout": "500ms"})
    daemons.append(daemon)
    daemon.start()
    gate = daemon.gate()
    job = daemon.client().enqueue(f"{R}:blocked", daemon.events, gate, max_attempts=1)
    daemon.wait_event("started")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    open_gate(gate)
    daemon.start()
    done = daemon.wait_state(job.id, "succeeded")
    assert (done.attempts, done.runs) == (1, 2)
    attempts = [(a.attempt, a.outcome) for a in daemon.client().attempts(job.id)]
    assert attempts == [(1, "interrupted"), (2, "succeeded")]
    assert [e["attempt"] for e in daemon.events_seen("started")] == [1, 2]  # as the job saw it


def test_a_second_sigterm_stops_at_once(daemon: Daemon) -> None:
    daemon.start()
    job = daemon.client().enqueue(f"{R}:blocked", daemon.events, daemon.gate())
    daemon.wait_event("started")
    daemon.signal(signal.SIGTERM)
    daemon.wait_notice("STOPPING=1")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(5) == 0
    assert daemon.client().get(job.id).state == "queued"


def test_a_nul_in_a_routine_name_fails_the_job_not_the_worker(daemon: Daemon) -> None:
    daemon.start()
    # The Client refuses such a name; a row written another way (the store's
    # own enqueue here) must still fail as the job's error, not kill workers.
    from jobd.records import NewJob

    now = time.time()
    new = NewJob("no_such\x00module:job\nforged", "default", 0, "[]", "{}", now, now, 2)
    job = daemon.client().store.enqueue([new])[0].job
    daemon.wait_state(job.id, "failed", timeout=20)
    attempts = daemon.client().attempts(job.id)
    # The job's error, not a dead worker; not retried: no worker registered it.
    assert [(a.outcome, a.error_type) for a in attempts] == [("error", UNREGISTERED)]
    assert "crashed" not in daemon.stderr()


UNREGISTERED = "jobd.errors.UnregisteredRoutine"


def test_a_worker_runs_only_the_routines_its_modules_registered(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    # A job row named a module and the worker imported it (issue 21 A1): `this`
    # printed into the log, `venv.__main__` made virtualenvs and exited the
    # worker, a module planted in the working directory ran, and jobd.examples
    # ran although `modules` does not list it.
    daemon = Daemon(tmp_path, pool={"min_workers": 1, "max_workers": 1})
    daemons.append(daemon)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    marker = tmp_path / "planted-ran"
    (workdir / "planted_jobs.py").write_text(
        f"open({str(marker)!r}, 'a').close()\n"
        "import jobd\n\n@jobd.routine\ndef run():\n    return 'planted'\n"
    )
    daemon.start(cwd=workdir)
    (worker,) = daemon.workers()
    # As a producer that skips the check would (or a row written by hand).
    client = jobd.Client(daemon.database, check_routines=False)
    names = ["this:x", "planted_jobs:run", "jobd.examples:hello", "venv.__main__:x"]
    jobs = [client.enqueue(name) for name in names]
    try:
        for name, job in zip(names, jobs, strict=True):
            failed = daemon.wait_state(job.id, "failed", "succeeded")
            assert (failed.state, failed.attempts) == ("failed", 1), name  # not retried
            assert failed.max_attempts > 1
            (attempt,) = client.attempts(job.id)
            assert (attempt.outcome, attempt.error_type, attempt.worker_pid) == (
                "error", UNREGISTERED, worker.pid,
            )  # fmt: skip
            assert attempt.error_message == (
                f"routine {name!r} is not registered by the modules this node loads "
                "(modules = ['jobd_test_routines'])"
            )
        # The same worker serves the next job: none was lost to a bad name.
        ok = client.enqueue(f"{R}:record", daemon.events, tag="after")
        assert daemon.wait_state(ok.id, "succeeded").result == worker.pid
        assert [w.pid for w in daemon.workers()] == [worker.pid]
    finally:
        client.close()
    log = daemon.stderr()
    assert "Zen of Python" not in log and "Beautiful is better" not in log
    assert "hello, world" not in log
    assert not marker.exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["planted_jobs.py"]  # no virtualenvs
