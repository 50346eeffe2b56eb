"""What a worker's death means (jobd/supervisor/deaths.py)."""

from __future__ import annotations

import signal
import socket
from collections import deque

from jobd.processes import Exit
from jobd.records import Claim
from jobd.supervisor.children import Channel
from jobd.supervisor.deaths import judge_unexpected, lost_attempt
from jobd.supervisor.workers import InFlight, Worker

CLAIM = Claim(7, "app:f", "default", 0, 2, 3, "[]", "{}", 1.0, 1.0, 2)


def worker(booted: bool = True) -> Worker:
    ours, theirs = socket.socketpair()
    theirs.close()
    w = Worker(3, 1, Channel(ours), 0.0, pid=42, booted=booted)
    w.inflight = deque()
    return w


def test_a_boot_death_fails_an_unproven_generation_and_is_a_crash_in_a_proven_one() -> None:
    dead = Exit(42, 1, None)
    unproven = judge_unexpected(worker(booted=False), dead, serving=False, proven=False)
    assert unproven.boot_failure and not unproven.crash
    assert "exited during boot" in unproven.reason
    proven = judge_unexpected(worker(booted=False), dead, serving=False, proven=True)
    assert not proven.boot_failure and proven.crash


def test_a_serving_worker_killed_from_outside_is_no_crash() -> None:
    killed = Exit(42, None, signal.SIGKILL)
    assert not judge_unexpected(worker(), killed, serving=True, proven=True).crash
    idle = judge_unexpected(worker(), killed, serving=False, proven=True)
    assert idle.crash and idle.reason == "worker 3 (pid 42) died: SIGKILL"


def test_the_lost_attempt_carries_the_masters_reason_or_the_signal() -> None:
    w = worker()
    assert lost_attempt(w, Exit(42, None, signal.SIGKILL), 1, 9.0) is None
    w.inflight.append(InFlight(CLAIM, 5.0))
    lost = lost_attempt(w, Exit(42, None, signal.SIGKILL), 1, 9.0)
    assert lost is not None
    assert (lost.outcome, lost.error_type, lost.attempt, lost.started_at) == (
        "killed", "SIGKILL", 2, 5.0,
    )  # fmt: skip
    w.kill_reason, w.signalled = ("time_limit_exceeded", "over its limit"), signal.SIGTERM
    limited = lost_attempt(w, Exit(42, 0, None), 1, 9.0)
    assert limited is not None
    assert (limited.outcome, limited.error_type) == ("time_limit_exceeded", "SIGTERM")
