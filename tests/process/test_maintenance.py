"""jobd's own cleanup routine, run by a worker of the real daemon."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobd.records import JobState, Settle
from tests.integration.test_store_contract import attempt_for, new_job
from tests.process.daemon import Daemon
from tests.waiting import wait_until

DAY = 86400.0


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path, retention={"schedule": "off", "completed_after": "1d", "batch_size": 2})
    yield d
    d.kill_all()


def test_a_producer_cannot_choose_what_the_cleanup_deletes(daemon: Daemon) -> None:
    daemon.start()
    client = daemon.client()
    job = client.enqueue("jobd.maintenance:cleanup", 0, 0)  # "delete every finished job"
    (attempt, *_) = wait_until(lambda: client.attempts(job.id), 15, what="its first attempt")
    assert (attempt.outcome, attempt.error_type) == ("error", "TypeError")


def test_a_worker_runs_the_cleanup_on_its_masters_database(daemon: Daemon) -> None:
    """The worker finds the database through the config `jobd run` exports (the
    daemon is started without JOBD_CONFIG and with a config-relative path)."""
    daemon.upgrade()
    client = daemon.client()
    store = client.store
    node = store.register_node("old", "elsewhere", 1, time.time())
    now = time.time()
    store.enqueue([new_job(run_at=now) for _ in range(3)])
    claims = store.exchange(node, [], ("default",), 3, now)
    settles = [
        Settle(c.id, JobState.SUCCEEDED, attempt_for(c, node), result_json=None) for c in claims
    ]
    for settle in settles:
        assert settle.attempt is not None
        settle.attempt.finished_at = now - 10 * DAY
    store.exchange(node, settles, ("default",), 0, now)
    store.stop_node(node, now)

    daemon.start()
    job = client.enqueue("jobd.maintenance:cleanup")
    done = daemon.wait_state(job.id, "succeeded", "failed")
    assert done.state == "succeeded", client.attempts(job.id)[-1].error_message
    assert done.result == {
        "succeeded": 3,
        "cancelled": 0,
        "failed": 0,
        "attempts": 3,
        "schedule_fires": 0,
    }
    assert [j.id for j in client.list()] == [job.id]
