"""Reload, pool bounds, watchdog and STATUS=, on the real daemon."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.process.daemon import Daemon, open_gate
from tests.waiting import wait_until

R = "jobd_test_routines"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path)
    yield d
    d.kill_all()


def write_app(directory: Path, greeting: str) -> None:
    (directory / "reload_app.py").write_text(
        f"import jobd\n\n@jobd.routine\ndef greet() -> str:\n    return {greeting!r}\n"
    )


def reconfigure(daemon: Daemon, old: str, new: str) -> None:
    text = daemon.config.read_text()
    assert old in text, old
    daemon.config.write_text(text.replace(old, new))


def status_lines(daemon: Daemon) -> list[str]:
    return [n for n in daemon.read_notices() if n.startswith("STATUS=")]


def test_sighup_loads_new_code_and_config_in_a_new_generation(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    write_app(app, "hello from v1")
    daemon = Daemon(
        tmp_path, jobd={"modules": ["jobd_test_routines", "reload_app"],
                        "pythonpath": [str(Path(__file__).parent), str(app)]},
    )  # fmt: skip
    try:
        daemon.start()
        client = daemon.client()
        assert daemon.wait_state(client.enqueue("reload_app:greet").id, "succeeded").result == (
            "hello from v1"
        )
        old_pids = {w.pid for w in daemon.workers()}
        write_app(app, "hello from v2")
        reconfigure(daemon, "min_workers = 2", "min_workers = 3")
        reconfigure(daemon, "max_workers = 2", "max_workers = 3")
        daemon.notices.clear()
        daemon.signal(signal.SIGHUP)
        daemon.wait_notice("RELOADING=1")
        daemon.wait_notice("READY=1")
        workers = wait_until(
            lambda: len(w := daemon.workers()) == 3 and not {p.pid for p in w} & old_pids and w,
            what="three workers of the new generation",
        )
        assert len(workers) == 3
        assert daemon.wait_state(client.enqueue("reload_app:greet").id, "succeeded").result == (
            "hello from v2"
        )
    finally:
        daemon.kill_all()


def test_a_sighup_while_starting_is_applied_once_the_pool_is_up(daemon: Daemon) -> None:
    gate = daemon.gate("boot")
    daemon.start(wait_ready=False, env={"JOBD_TEST_BOOT_GATE": gate})
    daemon.wait_event("worker_boot", count=2)  # both workers are in their (slow) boot
    reconfigure(daemon, "min_workers = 2", "min_workers = 3")
    reconfigure(daemon, "max_workers = 2", "max_workers = 3")
    daemon.signal(signal.SIGHUP)
    open_gate(gate)
    daemon.wait_notice("READY=1")
    # The new config takes over in a second generation of three workers.
    daemon.wait_notice("RELOADING=1")
    wait_until(lambda: len(daemon.workers()) == 3, 20, what="three workers after the reload")
    assert "reloading once the pool is up" in daemon.stderr()


def test_a_worker_killed_in_its_boot_long_after_start_up_is_replaced(daemon: Daemon) -> None:
    gate = daemon.gate("boot")
    open_gate(gate)
    daemon.start(env={"JOBD_TEST_BOOT_GATE": gate})
    os.unlink(gate)  # boots from now on are slow
    first = daemon.workers()[0].pid
    os.kill(first, signal.SIGKILL)
    booting = daemon.wait_event("worker_boot", count=3)[-1]["pid"]
    os.kill(booting, signal.SIGKILL)  # the OOM killer, in a slow worker_boot hook
    daemon.wait_event("worker_boot", count=4)  # replaced again, not stopped (exit 3)
    assert daemon.process is not None and daemon.process.poll() is None
    open_gate(gate)
    job = daemon.client().enqueue(f"{R}:record", daemon.events)
    daemon.wait_state(job.id, "succeeded")
    wait_until(lambda: len(daemon.workers()) == 2, 20, what="two workers again")
    assert f"(pid {booting}) exited during boot: SIGKILL; replacing it" in daemon.stderr()


def test_no_job_is_lost_or_run_twice_across_reloads(daemon: Daemon) -> None:
    daemon.start()
    client = daemon.client()
    jobs = []
    for round_ in range(3):
        jobs += [
            client.enqueue(f"{R}:record", daemon.events, tag=f"{round_}-{i}") for i in range(60)
        ]
        daemon.notices.clear()
        daemon.signal(signal.SIGHUP)
        daemon.wait_notice("READY=1")
    jobs += [client.enqueue(f"{R}:record", daemon.events, tag=f"after-{i}") for i in range(60)]
    for job in jobs:
        daemon.wait_state(job.id, "succeeded")
    runs = Counter(e["tag"] for e in daemon.events_seen("ran"))
    assert len(runs) == len(jobs) and set(runs.values()) == {1}


def test_a_running_job_finishes_in_the_old_generation(daemon: Daemon) -> None:
    from tests.process.daemon import open_gate

    daemon.start()
    gate = daemon.gate()
    job = daemon.client().enqueue(f"{R}:blocked", daemon.events, gate)
    (started,) = daemon.wait_event("started")
    daemon.signal(signal.SIGHUP)
    daemon.wait_notice("READY=1")
    assert started["pid"] in {w.pid for w in daemon.workers()}  # still finishing its job
    open_gate(gate)
    finished = daemon.wait_state(job.id, "succeeded")
    assert [a.outcome for a in daemon.client().attempts(finished.id)] == ["succeeded"]
    wait_until(
        lambda: started["pid"] not in {w.pid for w in daemon.workers()},
        what="the old worker to exit",
    )


def test_a_broken_config_keeps_the_running_one(daemon: Daemon) -> None:
    daemon.start()
    pids = {w.pid for w in daemon.workers()}
    reconfigure(daemon, "min_workers = 2", "min_workers = 'many'")
    daemon.notices.clear()
    daemon.signal(signal.SIGHUP)
    daemon.wait_notice("READY=1")
    assert any("reload failed" in s and "min_workers" in s for s in status_lines(daemon))
    assert {w.pid for w in daemon.workers()} == pids
    job = daemon.client().enqueue(f"{R}:record", daemon.events)
    daemon.wait_state(job.id, "succeeded")
    assert "reload failed" in daemon.stderr()


def test_an_import_error_in_new_code_keeps_the_old_workers(daemon: Daemon) -> None:
    daemon.start()
    pids = {w.pid for w in daemon.workers()}
    reconfigure(daemon, '"jobd_test_routines"]', '"jobd_test_routines", "no_such_module_xyz"]')
    daemon.notices.clear()
    daemon.signal(signal.SIGHUP)
    daemon.wait_notice("READY=1")
    wait_until(
        lambda: (
            any("no_such_module_xyz" in s for s in status_lines(daemon))
            or "no_such_module_xyz" in daemon.stderr()
        ),
        what="the import error reported",
    )
    assert {w.pid for w in daemon.workers()} == pids
    job = daemon.client().enqueue(f"{R}:record", daemon.events)
    daemon.wait_state(job.id, "succeeded")


def test_a_setting_that_needs_a_restart_is_named(daemon: Daemon) -> None:
    daemon.start()
    reconfigure(daemon, "[jobd]\n", '[jobd]\nnode_name = "renamed"\n')
    daemon.notices.clear()
    daemon.signal(signal.SIGHUP)
    daemon.wait_notice("READY=1")
    wait_until(lambda: "jobd.node_name changed but needs a restart" in daemon.stderr())


def test_sigttin_and_sigttou_resize_the_pool(daemon: Daemon) -> None:
    daemon.start()
    daemon.signal(signal.SIGTTIN)
    wait_until(lambda: len(daemon.workers()) == 3, what="a third worker")
    # Two identical signals sent back to back may arrive as one (POSIX does not
    # queue them): wait for each one's effect before sending the next.
    daemon.signal(signal.SIGTTOU)
    wait_until(lambda: len(daemon.workers()) == 2, what="two workers left")
    daemon.signal(signal.SIGTTOU)
    wait_until(lambda: len(daemon.workers()) == 1, what="one worker left")
    job = daemon.client().enqueue(f"{R}:record", daemon.events)
    daemon.wait_state(job.id, "succeeded")


def test_watchdog_and_status(daemon: Daemon) -> None:
    daemon.start(env={"WATCHDOG_USEC": "400000"})
    client = daemon.client()
    for i in range(20):
        client.enqueue(f"{R}:record", daemon.events, tag=i)
    daemon.wait_event("ran", 20)
    wait_until(lambda: daemon.read_notices().count("WATCHDOG=1") >= 3, what="WATCHDOG=1 pings")
    status = wait_until(
        lambda: [s for s in status_lines(daemon) if "done/min" in s], what="a full STATUS="
    )
    assert status[-1].startswith("STATUS=") and "/2 busy, " in status[-1]
    assert " queued" in status[-1] and " failed/min" in status[-1]


def test_an_attempt_lost_with_its_master_runs_the_job_failed_hooks_once(daemon: Daemon) -> None:
    # Issue 21 C9: a worker's death ran the hooks, a whole node's did not.
    daemon.start()
    job = daemon.client().enqueue(f"{R}:blocked", daemon.events, daemon.gate(), max_attempts=1)
    daemon.wait_event("started")
    children = psutil.Process(daemon.pid).children()
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait_exit()
    wait_until(
        lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
        timeout=5,
        what="the dead master's workers and template to exit",
    )
    assert daemon.client().get(job.id).state == "running"
    assert daemon.events_seen("job_failed") == []  # its worker died by SIGKILL too

    daemon.start()  # the same node on the same host: its earlier incarnation is rescued
    failed = daemon.wait_state(job.id, "failed")
    assert failed.attempts == 1
    (attempt,) = daemon.client().attempts(job.id)
    assert attempt.outcome == "lost"
    (hook,) = daemon.wait_event("job_failed")
    assert (hook["job"], hook["error"], hook["outcome"], hook["attempt"]) == (
        job.id,
        "JobKilled",
        "lost",
        1,
    )
    assert daemon.stop() == 0
    assert len(daemon.events_seen("job_failed")) == 1


def test_a_reload_whose_code_drops_a_routine_drops_it_from_the_catalog(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    write_app(app, "hello")
    daemon = Daemon(
        tmp_path, jobd={"modules": ["jobd_test_routines", "reload_app"],
                        "pythonpath": [str(Path(__file__).parent), str(app)]},
    )  # fmt: skip
    try:
        daemon.start()
        assert "reload_app:greet" in daemon.cli("routines", "--json").stdout
        (app / "reload_app.py").write_text(
            "import jobd\n\n@jobd.routine\ndef welcome() -> str:\n    return 'hi'\n"
        )
        daemon.notices.clear()
        daemon.signal(signal.SIGHUP)
        daemon.wait_notice("READY=1")
        catalog = wait_until(
            lambda: (
                "reload_app:welcome" in (found := daemon.cli("routines", "--json").stdout) and found
            ),
            what="the new generation's catalog",
        )
        assert "reload_app:greet" not in catalog
        refused = daemon.cli("enqueue", "reload_app:greet")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "reload_app:greet" in refused.stderr
    finally:
        daemon.kill_all()
