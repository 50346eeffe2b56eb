"""jobd under a real systemd: the unit file, sd_notify, reload, drain, journald, watchdog.

One lab for the module (tests/systemd/lab.py): a real systemd 252 with
journald, jobd installed as docs/systemd.md says, systemd/jobd.service
unchanged. The tests run in file order and share the service, as an
operator would: start, enqueue, read the journal, reload, stop, break the
config, hang the master. Each brings the service to the state it needs.

Jobs are enqueued by the application's user (group jobd) from outside the
unit, and followed through the database with the public client.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.systemd.lab import (
    CONFIG,
    HOLD_IMPORT,
    PRODUCER,
    ROOT,
    UNIT,
    VENV,
    Lab,
    config_toml,
    install_jobd,
    unavailable,
    wait_until,
)

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(300)]

UNIT_FILE = ROOT / "systemd" / "jobd.service"
POLL_INTERVAL = 5.0  # the lab config's store.poll_interval
DROP_IN = "/etc/systemd/system/jobd.service.d/50-watchdog-test.conf"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = unavailable()
    if reason is not None:
        if os.environ.get("JOBD_TEST_SYSTEMD") == "required":
            pytest.fail(f"JOBD_TEST_SYSTEMD=required but the systemd lab cannot run: {reason}")
        pytest.skip(reason)
    # The lab sees this machine's root file system (not other mounts) as it
    # was at `up`. The install needs the source tree, and the interpreter
    # running the tests (its pip installs): bound read-only when elsewhere.
    root_device = os.stat("/").st_dev
    binds = [str(ROOT)] + [
        prefix
        for prefix in sorted({str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix)})
        if os.stat(prefix).st_dev != root_device and not prefix.startswith(f"{ROOT}/")
    ]
    the_lab = Lab(
        tmp_path_factory.mktemp("systemd-lab"),
        f"jobd-test-{os.getpid()}",
        binds=[f"{b}:ro" for b in binds],
    )
    try:
        the_lab.up()
        install_jobd(the_lab, UNIT_FILE)
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture(autouse=True)
def journal_on_failure(lab: Lab) -> Iterator[None]:
    """The unit's journal, shown by pytest with the output of a failed test."""
    yield
    print(lab.journal_text())


# -- helpers ------------------------------------------------------------------


def ensure_running(lab: Lab) -> None:
    if lab.show("ActiveState")["ActiveState"] != "active":
        lab.systemctl("start", UNIT)


def enqueue(lab: Lab, routine: str, kwargs: list[dict[str, Any]]) -> list[str]:
    sent = lab.client("enqueue", f"jobd_lab_routines:{routine}", json.dumps(kwargs))
    assert f"{UNIT}.service" not in sent["cgroup"]  # the producer is not in the unit
    return [str(job_id) for job_id in sent["ids"]]


def jobs(lab: Lab, ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = lab.client("jobs", *ids)
    return found


def wait_jobs(
    lab: Lab, ids: list[str], states: set[str], timeout: float = 30.0
) -> dict[str, dict[str, Any]]:
    def reached() -> dict[str, dict[str, Any]] | None:
        found = jobs(lab, ids)
        return found if all(job["state"] in states for job in found.values()) else None

    return wait_until(reached, timeout, f"jobs {ids} in {sorted(states)}")


def is_state(lab: Lab, active: str, sub: str) -> bool:
    return lab.show("ActiveState", "SubState") == {"ActiveState": active, "SubState": sub}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- the tests, in the order an operator meets them ---------------------------


def test_start_returns_only_after_ready(lab: Lab) -> None:
    """Type=notify: `systemctl start` waits for READY=1, which the master sends only
    once min_workers (2) have booted; here their boot is held until the test lets go."""
    lab.run("touch", HOLD_IMPORT)
    starting = lab.popen("systemctl", "start", UNIT)
    try:
        # the master runs and its template is importing the application
        wait_until(lambda: len(lab.unit_processes()) >= 2, 30, "the master and its template")
        assert is_state(lab, "activating", "start")
        assert starting.poll() is None, "systemctl start returned before READY=1"
        assert lab.workers() == []
    finally:
        lab.run("rm", "-f", HOLD_IMPORT)
    assert starting.wait(60) == 0, starting.communicate()[0]
    assert is_state(lab, "active", "running")  # at once: active means ready
    assert len(lab.workers()) == 2


def test_jobs_enqueued_from_outside_the_unit_run(lab: Lab) -> None:
    """The application's user writes the service's SQLite database and wakes its master."""
    ensure_running(lab)
    ids = enqueue(lab, "work", [{"seconds": 0}] * 20)
    done = wait_jobs(lab, ids, {"succeeded"})
    # Woken through the master's socket (group-writable: UMask=0007), not found by
    # the 5s poll: the first job started at once.
    first = done[ids[0]]
    assert first["started_at"] - first["enqueued_at"] < POLL_INTERVAL / 2, first
    lab.run(
        "runuser", "-u", PRODUCER, "--", "/bin/sh", "-c",
        "for s in /var/lib/jobd/jobd.db.wake/*.sock; do test -w $s || exit 1; done",
    )  # fmt: skip


def test_job_limits_hold_under_the_system_call_filter(lab: Lab) -> None:
    """What jobd does for per-job limits is allowed by the hardening: fork and
    setpgid (isolation="process"), setrlimit, reading a worker's RSS in /proc."""
    ensure_running(lab)
    ids = enqueue(lab, "limited", [{}])
    job = wait_jobs(lab, ids, {"succeeded", "failed"})[ids[0]]
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert result["open_files"] == 256 and result["pgid_is_pid"] == 1, job
    assert 60 <= result["cpu"] <= 70, job  # RLIMIT_CPU counts from the CPU time already used


def test_journal_shows_each_workers_jobs_and_prints(lab: Lab) -> None:
    """`journalctl -u jobd JOBD_WORKER=1`: the job log lines and print output of
    worker 1's job, with the job's fields, and nothing of worker 2's."""
    ensure_running(lab)
    gate = unique("journal")
    tags = [unique("tag"), unique("tag")]
    ids = enqueue(lab, "echo_gated", [{"tag": tag, "gate": gate} for tag in tags])
    wait_jobs(lab, ids, {"running"})  # both at once: one on each worker
    lab.open_gate(gate)
    wait_jobs(lab, ids, {"succeeded"})
    job_of = dict(zip(tags, ids, strict=True))

    def ours(slot: int) -> list[dict[str, Any]]:
        entries = lab.journal(f"JOBD_WORKER={slot}")
        return [e for e in entries if any(tag in str(e.get("MESSAGE")) for tag in tags)]

    def both_lines(slot: int) -> list[dict[str, Any]] | None:
        entries = ours(slot)
        kinds = {str(e["MESSAGE"]).split()[0] for e in entries}
        return entries if kinds >= {"lab-log", "lab-print"} else None

    one = wait_until(lambda: both_lines(1), 10, "worker 1's job in the journal")
    two = wait_until(lambda: both_lines(2), 10, "worker 2's job in the journal")
    tag_one = {str(e["MESSAGE"]).split()[1] for e in one}
    tag_two = {str(e["MESSAGE"]).split()[1] for e in two}
    assert len(tag_one) == 1 and len(tag_two) == 1 and tag_one != tag_two, (one, two)
    tag = tag_one.pop()
    for entry in one:
        assert entry["JOBD_JOB_ID"] == job_of[tag], entry
        assert entry["JOBD_ROUTINE"] == "jobd_lab_routines:echo_gated", entry
        assert entry["JOBD_QUEUE"] == "default", entry
        assert entry["JOBD_ATTEMPT"] == "1", entry
        assert entry["JOBD_WORKER_PID"].isdigit(), entry
        assert entry["SYSLOG_IDENTIFIER"] == "jobd", entry
        assert entry["_SYSTEMD_UNIT"] == f"{UNIT}.service", entry
    logged = next(e for e in one if str(e["MESSAGE"]).startswith("lab-log"))
    assert logged["PRIORITY"] == "6", logged  # logging.INFO
    # `jobd logs --worker 1` is that same query
    shown = lab.run(f"{VENV}/bin/jobd", "logs", "--worker", "1").stdout
    assert f"lab-print {tag}" in shown and f"lab-log {tag}" in shown, shown
    assert not any(other in shown for other in tags if other != tag), shown


def test_reload_changes_the_pool_and_loses_no_job(lab: Lab) -> None:
    """`systemctl reload` after raising min_workers: the unit is "reloading" (RELOADING=1)
    until a new generation of 3 workers is ready (READY=1), here held while it imports
    the application; it replaces the 2; jobs enqueued before and during the reload
    each run exactly once."""
    ensure_running(lab)
    before = {pid for pid, _ in lab.workers()}
    assert len(before) == 2
    ids = enqueue(lab, "work", [{"seconds": 0.05}] * 30)
    lab.write(CONFIG, config_toml(min_workers=3, max_workers=3), mode="0640", owner="root:jobd")
    lab.run("touch", HOLD_IMPORT)
    try:
        # --no-block: whether `systemctl reload` waits for READY=1 depends on which
        # systemd sees first, the master's RELOADING=1 or the exit of `kill -HUP`
        lab.systemctl("reload", "--no-block", UNIT)
        wait_until(lambda: is_state(lab, "reloading", "reload"), 10, "RELOADING=1")
        ids += enqueue(lab, "work", [{"seconds": 0.05}] * 30)
        assert {pid for pid, _ in lab.workers()} >= before  # the old generation serves
    finally:
        lab.run("rm", "-f", HOLD_IMPORT)
    wait_until(lambda: is_state(lab, "active", "running"), 30, "READY=1 after the reload")
    done = wait_jobs(lab, ids, {"succeeded"}, timeout=60)
    assert all(job["outcomes"] == ["succeeded"] for job in done.values()), done

    def new_generation() -> bool:
        pids = {pid for pid, _ in lab.workers()}
        return len(pids) == 3 and not pids & before

    wait_until(new_generation, 30, "3 workers, none of the old generation")


def test_failed_reload_keeps_the_pool_and_says_why(lab: Lab) -> None:
    """A reload that meets an invalid config keeps the running config and workers,
    and `systemctl status` (STATUS=) shows the error."""
    ensure_running(lab)
    before = {pid for pid, _ in lab.workers()}
    lab.write(CONFIG, "[pool\nmin_workers = 4\n", mode="0640", owner="root:jobd")
    try:
        lab.systemctl("reload", "--no-block", UNIT)

        def says_why() -> bool:
            shown = lab.show("ActiveState", "SubState", "StatusText")
            return shown["SubState"] == "running" and "reload failed" in shown["StatusText"]

        wait_until(says_why, 15, "STATUS= naming the failed reload")
    finally:
        lab.write(CONFIG, config_toml(3, 3), mode="0640", owner="root:jobd")
    ids = enqueue(lab, "work", [{"seconds": 0}] * 3)  # the client reads the config too
    wait_jobs(lab, ids, {"succeeded"})
    assert {pid for pid, _ in lab.workers()} == before


def test_stop_during_load_drains_and_loses_nothing(lab: Lab) -> None:
    """`systemctl stop`: KillMode=mixed sends SIGTERM to the master only, so running
    jobs finish; one still running at graceful_timeout (5s) goes back to queued;
    jobs not started stay queued; the master exits 0."""
    ensure_running(lab)
    slots = len(lab.workers())
    finish, overtime = unique("finish"), unique("overtime")
    finishing = enqueue(lab, "gated", [{"gate": finish}] * (slots - 1))
    late = enqueue(lab, "gated", [{"gate": overtime}])
    running = wait_jobs(lab, finishing + late, {"running"})
    waiting = enqueue(lab, "work", [{"seconds": 0.05}] * 20)

    lab.systemctl("stop", "--no-block", UNIT)
    wait_until(lambda: is_state(lab, "deactivating", "stop-sigterm"), 10, "deactivating")
    # the workers did not get the SIGTERM: their jobs run on
    assert jobs(lab, list(running)) == running
    lab.open_gate(finish)
    wait_until(lambda: is_state(lab, "inactive", "dead"), 30, "the service stopped")
    result = lab.show("Result", "ExecMainStatus")
    assert result == {"Result": "success", "ExecMainStatus": "0"}

    after = jobs(lab, finishing + late + waiting)
    for job_id in finishing:
        assert after[job_id]["state"] == "succeeded", after[job_id]
        assert after[job_id]["outcomes"] == ["succeeded"], after[job_id]
    killed = after[late[0]]
    assert killed["state"] == "queued" and killed["outcomes"] == ["interrupted"], killed
    assert killed["attempts"] == 0, killed  # not counted against max_attempts
    for job_id in waiting:
        assert after[job_id]["state"] in ("succeeded", "queued"), after[job_id]
    lab.open_gate(overtime)  # let it finish when the service runs again


def test_config_error_fails_without_restart(lab: Lab) -> None:
    """Exit code 2 (config error) is in RestartPreventExitStatus: the unit fails
    at once instead of restarting into the same error."""
    lab.systemctl("stop", UNIT)
    lab.write(CONFIG, "[pool\nmin_workers = 2\n", mode="0640", owner="root:jobd")
    try:
        assert lab.systemctl("start", UNIT, check=False).returncode != 0
        state = lab.show("ActiveState", "SubState", "Result", "ExecMainStatus")
        assert state == {
            "ActiveState": "failed",
            "SubState": "failed",  # not auto-restart
            "Result": "exit-code",
            "ExecMainStatus": "2",
        }
    finally:
        lab.write(CONFIG, config_toml(3, 3), mode="0640", owner="root:jobd")
        lab.systemctl("reset-failed", UNIT, check=False)


def test_watchdog_restarts_a_hung_master(lab: Lab) -> None:
    """A master whose loop stops answering (JOBD_DEBUG_HANG=1 + SIGUSR2) sends no
    WATCHDOG=1: systemd kills it and Restart= starts a new one, which puts the job
    the dead master was running back in the queue; it then runs to the end."""
    lab.write(DROP_IN, "[Service]\nEnvironment=JOBD_DEBUG_HANG=1\nWatchdogSec=3s\nRestartSec=1s\n")
    lab.systemctl("daemon-reload")
    try:
        lab.systemctl("restart", UNIT)
        before = lab.show("MainPID", "NRestarts", "WatchdogTimestampMonotonic")
        gate = unique("watchdog")
        ids = enqueue(lab, "gated", [{"gate": gate}])
        wait_jobs(lab, ids, {"running"})
        # a healthy master pets the watchdog (else the restart below proves nothing)
        pets = before["WatchdogTimestampMonotonic"]
        wait_until(
            lambda: lab.show("WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"] != pets,
            10,
            "WATCHDOG=1 from the master",
        )
        lab.systemctl("kill", "--kill-who=main", "--signal=SIGUSR2", UNIT)

        def restarted() -> dict[str, str] | None:
            now = lab.show("MainPID", "NRestarts", "ActiveState", "SubState")
            fresh = now["NRestarts"] != before["NRestarts"] and now["SubState"] == "running"
            return now if fresh else None

        now = wait_until(restarted, 30, "a restart by the watchdog")
        assert now["MainPID"] != before["MainPID"]
        messages = [str(e.get("MESSAGE")) for e in lab.journal()]
        assert any("Watchdog timeout" in m for m in messages), messages[-20:]
        lab.open_gate(gate)
        job = wait_jobs(lab, ids, {"succeeded", "failed"})[ids[0]]
        assert job["state"] == "succeeded" and len(job["outcomes"]) == 2, job
        assert job["outcomes"][0] != "succeeded", job
    finally:
        lab.run("rm", "-f", DROP_IN)
        lab.systemctl("daemon-reload")
        lab.systemctl("stop", UNIT, check=False)


def test_postgresql_store_under_the_hardening(lab: Lab, pg_url: str) -> None:
    """The same unit on PostgreSQL over TCP: AF_INET allowed, psycopg's libpq
    runs under MemoryDenyWriteExecute and the system call filter."""
    lab.write(CONFIG, config_toml(2, 2, database=pg_url), mode="0640", owner="root:jobd")
    try:
        lab.run("runuser", "-u", "jobd", "--", f"{VENV}/bin/jobd", "-c", CONFIG, "db", "upgrade")
        lab.systemctl("start", UNIT)
        ids = enqueue(lab, "work", [{"seconds": 0}] * 5)
        wait_jobs(lab, ids, {"succeeded"})
        lab.systemctl("stop", UNIT)
        assert lab.show("Result", "ExecMainStatus") == {"Result": "success", "ExecMainStatus": "0"}
    finally:
        lab.systemctl("stop", UNIT, check=False)
        lab.write(CONFIG, config_toml(3, 3), mode="0640", owner="root:jobd")
