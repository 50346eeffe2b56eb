"""Per-routine limits, enforced while the job runs, on real processes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.process.daemon import Daemon
from tests.waiting import wait_until

R = "jobd_test_routines"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path, limits={"kill_grace": "500ms", "memory_check_interval": "100ms"})
    yield d
    d.kill_all()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_soft_time_limit_raises_jobtimeout_inside_the_job(daemon: Daemon) -> None:
    daemon.start()
    job = daemon.client().enqueue(f"{R}:soft_limited", daemon.events)
    daemon.wait_state(job.id, "failed")
    attempts = daemon.client().attempts(job.id)
    assert [a.outcome for a in attempts] == ["soft_timeout", "soft_timeout"]
    assert attempts[0].error_type == "jobd.errors.JobTimeout"
    assert 0.25 < attempts[0].finished_at - (attempts[0].started_at or 0) < 2.0
    assert [e["attempt"] for e in daemon.events_seen("cleaned_up")] == [1, 2]


@pytest.mark.parametrize("routine", ["sleeps_past_limit", "spins_in_c", "ignores_sigterm"])
def test_hard_time_limit_kills_and_replaces_the_worker(daemon: Daemon, routine: str) -> None:
    daemon.start()
    job = daemon.client().enqueue(f"{R}:{routine}", daemon.events)
    (started,) = daemon.wait_event("started")
    daemon.wait_state(job.id, "failed", timeout=10)
    (attempt,) = daemon.client().attempts(job.id)
    # A sleeping job unwinds on SIGTERM; C code and SIG_IGN need the SIGKILL.
    expected = "SIGTERM" if routine == "sleeps_past_limit" else "SIGKILL"
    assert attempt.error_type == expected
    assert attempt.outcome == "time_limit_exceeded"
    assert "over its time limit of 500ms" in (attempt.error_message or "")
    elapsed = attempt.finished_at - (attempt.started_at or 0)
    assert 0.45 < elapsed < 3.0, elapsed  # the limit, plus at most the kill grace
    assert gone(started["pid"])
    wait_until(lambda: len(daemon.workers()) == 2, what="a replacement worker")


def test_memory_limit_kills_with_the_rss_seen(daemon: Daemon) -> None:
    daemon.start()
    job = daemon.client().enqueue(f"{R}:grows", daemon.events, 300)
    (started,) = daemon.wait_event("started")
    daemon.wait_state(job.id, "failed", timeout=15)
    (attempt,) = daemon.client().attempts(job.id)
    assert attempt.outcome == "memory_limit_exceeded"
    assert attempt.peak_rss is not None and attempt.peak_rss > 100 << 20
    assert "over its memory limit of 100M" in (attempt.error_message or "")
    assert attempt.error_type == "SIGKILL"
    assert gone(started["pid"])


def test_address_space_limit_is_a_memoryerror_and_is_restored(daemon: Daemon) -> None:
    daemon.start()
    client = daemon.client()
    limited = client.enqueue(f"{R}:reserves", 400)
    failed = daemon.wait_state(limited.id, "failed")
    assert failed.error_type == "MemoryError"
    fine = client.enqueue(f"{R}:allocates", 400)  # the same worker, no limit now
    assert daemon.wait_state(fine.id, "succeeded").result == 400 << 20


def test_an_inline_jobs_children_die_with_its_worker(daemon: Daemon) -> None:
    # The `sleep 300` an inline job started is in its worker's process group,
    # which the master kills with the worker (issue 21 C4: it ran on).
    daemon.start()
    job = daemon.client().enqueue(f"{R}:spawns_then_hangs", daemon.events)
    (started,) = daemon.wait_event("started")
    child = psutil.Process(started["child"])
    assert child.is_running() and os.getpgid(child.pid) == started["pid"]
    daemon.wait_state(job.id, "failed", timeout=10)
    assert gone(started["pid"])
    wait_until(lambda: gone(child.pid), timeout=5, what="the job's child to die")


def test_job_failed_hooks_run_for_attempts_ended_outside_the_job(daemon: Daemon) -> None:
    # A hard limit, a cancel and a SIGKILL from outside end the worker, which
    # can run no hook: the template's child runs job_failed with a JobKilled
    # (issue 21 C9: no hook fired for these).
    daemon.start()
    client = daemon.client()
    limited = client.enqueue(f"{R}:ignores_sigterm", daemon.events)
    daemon.wait_state(limited.id, "failed", timeout=10)
    cancelled = client.enqueue(f"{R}:blocked", daemon.events, daemon.gate())
    daemon.wait_state(cancelled.id, "running")
    client.cancel(cancelled.id)
    daemon.wait_state(cancelled.id, "cancelled", timeout=15)
    killed = client.enqueue(f"{R}:blocked", daemon.events, daemon.gate(), tag="kill me")
    (started,) = [e for e in daemon.wait_event("started", 3) if e.get("tag") == "kill me"]
    os.kill(started["pid"], signal.SIGKILL)

    def hooks() -> dict[int, dict[str, object]]:
        return {e["job"]: e for e in daemon.events_seen("job_failed")}

    seen = wait_until(
        lambda: (h := hooks()).keys() >= {limited.id, cancelled.id, killed.id} and h,
        what="the three job_failed hooks",
    )
    assert seen[limited.id]["error"] == "JobKilled"
    assert seen[limited.id]["outcome"] == "time_limit_exceeded"
    assert seen[cancelled.id]["outcome"] == "cancelled"
    assert seen[killed.id]["outcome"] == "killed"
    assert seen[killed.id]["attempt"] == 1
    workers = {w.pid for w in daemon.workers()}
    assert not {e["pid"] for e in seen.values()} & workers, "run in a child, not a worker"


def test_cpu_time_limit_ends_in_sigxcpu(daemon: Daemon) -> None:
    daemon.start()
    job = daemon.client().enqueue(f"{R}:burns_cpu")
    daemon.wait_state(job.id, "failed", timeout=15)
    (attempt,) = daemon.client().attempts(job.id)
    assert (attempt.outcome, attempt.error_type) == ("killed", "SIGXCPU")


def test_open_files_limit(daemon: Daemon) -> None:
    daemon.start()
    client = daemon.client()
    failed = daemon.wait_state(client.enqueue(f"{R}:opens_files", 50).id, "failed")
    assert failed.error_type == "OSError" and "Too many open files" in (failed.error_message or "")


def test_isolated_attempt_is_killed_as_a_process_group(daemon: Daemon) -> None:
    daemon.start()
    job = daemon.client().enqueue(f"{R}:isolated_with_child", daemon.events)
    (horse,) = daemon.wait_event("horse")
    daemon.wait_state(job.id, "failed", timeout=10)
    (attempt,) = daemon.client().attempts(job.id)
    assert attempt.outcome == "time_limit_exceeded"
    wait_until(lambda: gone(horse["horse"]) and gone(horse["child"]), what="the group to die")
    assert not gone(horse["worker"])  # only the job's group was killed
    assert horse["worker"] in {w.pid for w in daemon.workers()}


def test_isolated_attempt_records_its_own_rusage(daemon: Daemon) -> None:
    daemon.start()
    client = daemon.client()
    big = daemon.wait_state(client.enqueue(f"{R}:isolated_allocates", 150).id, "succeeded")
    (attempt,) = client.attempts(big.id)
    assert attempt.peak_rss is not None and attempt.peak_rss > 150 << 20
    assert attempt.cpu_seconds is not None and attempt.cpu_seconds > 0
    worker_rss = max(w.memory_info().rss for w in daemon.workers())
    assert worker_rss < 100 << 20  # the memory went with the horse


def test_peak_rss_is_per_attempt(daemon: Daemon) -> None:
    daemon.start(wait_ready=True)
    client = daemon.client()
    big = daemon.wait_state(client.enqueue(f"{R}:allocates", 120).id, "succeeded")
    small = daemon.wait_state(client.enqueue(f"{R}:allocates", 1).id, "succeeded")
    (big_attempt,) = client.attempts(big.id)
    (small_attempt,) = client.attempts(small.id)
    assert big_attempt.peak_rss is not None and big_attempt.peak_rss > 120 << 20
    assert small_attempt.peak_rss is not None and small_attempt.peak_rss < 80 << 20


def test_workers_are_recycled_after_max_jobs(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, pool={"min_workers": 1, "max_workers": 1, "max_jobs_per_worker": 3})
    try:
        daemon.start()
        client = daemon.client()
        pids = [
            daemon.wait_state(client.enqueue(f"{R}:leaks", 1).id, "succeeded").result
            for _ in range(7)
        ]
        assert pids[0] == pids[1] == pids[2]
        assert pids[3] == pids[4] == pids[5] != pids[0]
        assert pids[6] not in (pids[0], pids[3])
    finally:
        daemon.kill_all()


def test_workers_are_recycled_over_max_worker_rss(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, pool={"min_workers": 1, "max_workers": 1, "max_worker_rss": "120M"})
    try:
        daemon.start()
        client = daemon.client()
        first = daemon.wait_state(client.enqueue(f"{R}:leaks", 150).id, "succeeded").result
        second = daemon.wait_state(client.enqueue(f"{R}:leaks", 1).id, "succeeded").result
        assert first != second
        assert "over max_worker_rss" in daemon.stderr()
    finally:
        daemon.kill_all()


def test_limits_from_config_override_the_decorator(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path)
    daemon.config.write_text(
        daemon.config.read_text() + f'\n[routines."{R}:sleeps_past_limit"]\ntime_limit = "200ms"\n'
    )
    try:
        daemon.start()
        job = daemon.client().enqueue(f"{R}:sleeps_past_limit", daemon.events)
        daemon.wait_state(job.id, "failed", timeout=10)
        (attempt,) = daemon.client().attempts(job.id)
        assert "time limit of 200ms" in (attempt.error_message or "")
    finally:
        daemon.kill_all()


def test_sigterm_to_the_master_is_not_a_time_limit(daemon: Daemon) -> None:
    daemon.start()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0


def test_stats_show_limits_hit(daemon: Daemon) -> None:
    import json
    import subprocess

    from tests.process.daemon import JOBD

    daemon.start()
    client = daemon.client()
    daemon.wait_state(client.enqueue(f"{R}:sleeps_past_limit", daemon.events).id, "failed")
    daemon.wait_state(client.enqueue(f"{R}:allocates", 1).id, "succeeded")
    out = subprocess.run(
        [*JOBD, "-c", str(daemon.config), "stats", "--json"], capture_output=True, check=True
    )
    stats = {s["routine"]: s for s in json.loads(out.stdout)["routines"]}
    limited = stats[f"{R}:sleeps_past_limit"]
    assert (limited["runs"], limited["limit_violations"], limited["success_rate"]) == (1, 1, 0.0)
    assert limited["outcomes"] == {"time_limit_exceeded": 1}
    assert stats[f"{R}:allocates"]["success_rate"] == 1.0
    assert stats[f"{R}:allocates"]["peak_rss"] > 1 << 20
