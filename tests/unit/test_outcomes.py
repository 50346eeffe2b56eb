"""Pure decisions: how a worker ended, and where its job goes next."""

from __future__ import annotations

import dataclasses
import os
import signal

import pytest

from jobd.errors import UnregisteredRoutine
from jobd.policy import Policy
from jobd.processes import classify
from jobd.records import Attempt, Claim, JobState
from jobd.supervisor.outcomes import after_attempt, death_attempt, never_started

NOW = 1_800_000_000.0


def claim(attempt: int = 1, max_attempts: int = 3) -> Claim:
    return Claim(
        7,
        "app.jobs:work",
        "default",
        0,
        attempt,
        max_attempts,
        "[1]",
        '{"a": 2}',
        NOW,
        NOW,
        attempt,
    )


def attempt(c: Claim, outcome: str) -> Attempt:
    return Attempt(
        c.id, c.attempt, c.routine, c.queue, 1, 99, NOW, NOW + 1, outcome, "E", "m", "tb"
    )


@pytest.mark.parametrize(
    ("status", "code", "signum", "text"),
    [
        (0, 0, None, "exit code 0"),
        (3 << 8, 3, None, "exit code 3"),
        (signal.SIGKILL, None, signal.SIGKILL, "SIGKILL"),
        (signal.SIGSEGV | 0x80, None, signal.SIGSEGV, "SIGSEGV"),  # with a core dump
    ],
)
def test_classify_wait_status(status: int, code: int | None, signum: int | None, text: str) -> None:
    exited = classify(42, status)
    assert (exited.code, exited.signal, exited.describe()) == (code, signum, text)


def test_classify_a_real_child() -> None:
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert classify(pid, status).describe() == "SIGKILL"


@pytest.mark.parametrize("outcome", ["succeeded", "cancelled"])
def test_final_outcomes(outcome: str) -> None:
    c = claim()
    settle = after_attempt(c, attempt(c, outcome), Policy(), NOW, 0.5, result_json="1")
    assert settle.state == JobState(outcome)
    assert settle.attempt is not None and settle.attempt.outcome == outcome


@pytest.mark.parametrize(
    "outcome", ["error", "killed", "soft_timeout", "time_limit_exceeded", "lost"]
)
def test_failures_retry_with_backoff_while_attempts_remain(outcome: str) -> None:
    c = claim(attempt=2, max_attempts=3)
    policy = Policy(retry_delay=10, retry_backoff=3, retry_jitter=0)
    settle = after_attempt(c, attempt(c, outcome), policy, NOW, 0.9)
    assert (settle.state, settle.run_at, settle.uncount) == (JobState.QUEUED, NOW + 30, False)


def test_the_last_attempt_fails_for_good_and_adds_the_hook_job() -> None:
    c = claim(attempt=3, max_attempts=3)
    settle = after_attempt(c, attempt(c, "killed"), Policy(), NOW, 0.1, failed_hook=True)
    assert settle.state == JobState.FAILED
    assert settle.follow_up is not None
    assert settle.follow_up.routine == "jobd.failure:call_failed_hook"
    assert settle.follow_up.args_json.endswith(',[1],{"a": 2}]')
    no_hook = after_attempt(c, attempt(c, "killed"), Policy(), NOW, 0.1, failed_hook=False)
    assert no_hook.follow_up is None


def test_a_routine_the_worker_did_not_register_fails_at_once() -> None:
    # Another attempt on the same code cannot find it either (issue 21 A1).
    c = claim(attempt=1, max_attempts=5)
    unregistered = dataclasses.replace(
        attempt(c, "error"), error_type=f"jobd.errors.{UnregisteredRoutine.__qualname__}"
    )
    settle = after_attempt(c, unregistered, Policy(), NOW, 0.1, failed_hook=True)
    assert (settle.state, settle.follow_up, settle.run_at) == (JobState.FAILED, None, None)
    assert settle.attempt == unregistered
    other = after_attempt(c, attempt(c, "error"), Policy(), NOW, 0.1)
    assert other.state == JobState.QUEUED


def test_interrupted_and_never_started_go_back_uncounted() -> None:
    c = claim(attempt=3, max_attempts=3)
    interrupted = after_attempt(c, attempt(c, "interrupted"), Policy(), NOW, 0.1)
    assert (interrupted.state, interrupted.uncount, interrupted.run_at) == (
        JobState.QUEUED,
        True,
        NOW,
    )
    waiting = never_started(c)
    assert (waiting.state, waiting.uncount, waiting.attempt) == (JobState.QUEUED, True, None)


def test_death_attempt_records_what_the_master_saw() -> None:
    record = death_attempt(
        claim(), 3, 123, NOW, NOW + 2, "killed", "worker died", "SIGKILL", 5 << 20
    )
    assert (record.node_id, record.worker_pid, record.outcome, record.error_type) == (
        3,
        123,
        "killed",
        "SIGKILL",
    )
    assert (record.started_at, record.finished_at, record.peak_rss) == (NOW, NOW + 2, 5 << 20)
