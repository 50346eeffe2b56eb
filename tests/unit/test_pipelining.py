"""Which worker gets which job: idle first, pipelines bounded by expected work."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from jobd.records import Claim
from jobd.supervisor.children import Channel
from jobd.supervisor.pipelining import (
    PER_JOB_OVERHEAD,
    PIPELINE_MAX_DEPTH,
    Runtimes,
    capacity,
    choose_worker,
    room,
)
from jobd.supervisor.workers import InFlight, Worker

BUDGET = 0.002


def claim(job_id: int, routine: str = "app:fast") -> Claim:
    return Claim(job_id, routine, "default", 0, 1, 3, "[]", "{}", 0.0, 0.0, 1)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    made = []
    for slot in (1, 2):
        a, b = socket.socketpair()
        worker = Worker(slot, 1, Channel(a), 0.0, pid=100 + slot, booted=True)
        worker._far = b  # type: ignore[attr-defined]
        made.append(worker)
    yield made
    for worker in made:
        worker.channel.close()
        worker._far.close()  # type: ignore[attr-defined]


def busy(worker: Worker, *routines: str) -> None:
    for n, routine in enumerate(routines):
        worker.inflight.append(InFlight(claim(1000 + n, routine)))


def test_idle_workers_take_one_job_each_before_anything_is_measured(workers: list[Worker]) -> None:
    runtimes = Runtimes()
    assert capacity(workers, runtimes, BUDGET) == 2
    busy(workers[0], "app:fast")
    assert room(workers[0], runtimes, BUDGET) == 0  # its runtime is unknown: no pipelining
    assert choose_worker(workers, claim(1), runtimes, BUDGET) is workers[1]


def test_short_jobs_fill_pipes_up_to_the_budget(workers: list[Worker]) -> None:
    runtimes = Runtimes()
    runtimes.observe("app:fast", "default", 0.0)  # expected cost: the per-job overhead alone
    fits = int(BUDGET // PER_JOB_OVERHEAD)
    assert room(workers[0], runtimes, BUDGET) == min(fits, PIPELINE_MAX_DEPTH)
    busy(workers[0], *["app:fast"] * PIPELINE_MAX_DEPTH)
    assert room(workers[0], runtimes, BUDGET) == 0


def test_long_jobs_are_never_queued_behind(workers: list[Worker]) -> None:
    runtimes = Runtimes()
    runtimes.observe("app:slow", "default", 1.0)
    runtimes.observe("app:fast", "default", 0.0)
    busy(workers[0], "app:slow")
    busy(workers[1], "app:slow")
    assert room(workers[0], runtimes, BUDGET) == 0
    assert choose_worker(workers, claim(1, "app:fast"), runtimes, BUDGET) is None  # held


def test_new_jobs_go_to_the_pipe_with_the_least_work(workers: list[Worker]) -> None:
    runtimes = Runtimes()
    runtimes.observe("app:fast", "default", 0.0001)
    busy(workers[0], "app:fast", "app:fast", "app:fast")
    busy(workers[1], "app:fast")
    assert choose_worker(workers, claim(1), runtimes, BUDGET) is workers[1]


def test_zero_budget_turns_pipelining_off(workers: list[Worker]) -> None:
    runtimes = Runtimes()
    runtimes.observe("app:fast", "default", 0.0)
    busy(workers[0], "app:fast")
    assert room(workers[0], runtimes, 0.0) == 0
    assert room(workers[1], runtimes, 0.0) == 1
    assert choose_worker(workers[:1], claim(1), runtimes, 0.0) is None


def test_retiring_and_unbooted_workers_take_nothing(workers: list[Worker]) -> None:
    workers[0].retiring = True
    workers[1].booted = False
    assert capacity(workers, Runtimes(), BUDGET) == 0
    assert choose_worker(workers, claim(1), Runtimes(), BUDGET) is None


def test_runtime_smoothing() -> None:
    runtimes = Runtimes()
    runtimes.observe("r", "default", 1.0)
    runtimes.observe("r", "default", 0.0)
    expected = runtimes.expected("r")
    assert expected is not None and 0.5 < expected < 1.0
