"""Records and calls the store contract tests share."""

from __future__ import annotations

import pytest

from jobd.records import Attempt, Claim, NewJob, Settle
from jobd.store.contract import Store

NOW = 1_800_000_000.0

# A test of the contract that holds for the in-memory store (jobd/store/memory.py)
# as for SQLite and PostgreSQL: its `store` fixture is each of the three.
also_in_memory = pytest.mark.parametrize("db_url", ["sqlite", "postgres", "memory"], indirect=True)


def new_job(
    routine: str = "app.jobs:work",
    queue: str = "default",
    priority: int = 0,
    args: str = "[]",
    run_at: float = NOW,
    max_attempts: int = 3,
    unique_key: str | None = None,
) -> NewJob:
    return NewJob(routine, queue, priority, args, "{}", run_at, NOW - 10, max_attempts, unique_key)


def attempt_for(claim: Claim, node: int, outcome: str = "succeeded", **extra: object) -> Attempt:
    return Attempt(
        job_id=claim.id,
        attempt=claim.attempt,
        routine=claim.routine,
        queue=claim.queue,
        node_id=node,
        worker_pid=4242,
        started_at=NOW,
        finished_at=NOW + 0.5,
        outcome=outcome,
        **extra,  # type: ignore[arg-type]
    )


def claim(
    store: Store,
    node: int,
    limit: int = 10,
    queues: tuple[str, ...] = ("default",),
    now: float = NOW,
    settles: list[Settle] | None = None,
) -> list[Claim]:
    return store.exchange(node, settles or [], queues, limit, now)
