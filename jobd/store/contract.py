"""The store contract: what jobd asks of its database, method by method.

The master, the client and the CLI are typed against `Store`
(`jobd.store.open_store` returns one); the SQL implementation
(`jobd.store.sql` and the statement modules beside it) keeps every
statement and every dialect difference under `jobd/store/`, and `jobd.store.memory` is an in-memory
one for tests. The records the methods take and return are the domain
records of `jobd.records`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from jobd.records import (
    Attempt,
    Claim,
    ClaimRequest,
    EnqueueResult,
    Fire,
    FiredJob,
    HealthFacts,
    Job,
    NewJob,
    NodeInfo,
    Pulse,
    QueueLoad,
    QueueStats,
    RoutineStats,
    ScheduleProgress,
    ScheduleState,
    Settle,
)


class StoreError(Exception):
    """The database cannot do what was asked (unreachable, locked too long, ...)."""


class SchemaError(StoreError):
    """The schema is missing or older than this jobd: run `jobd db upgrade`."""


class JobNotFound(StoreError):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"no job with id {job_id}")
        self.job_id = job_id


class InvalidTransition(StoreError):
    """`retry` or `cancel` asked of a job in a state that does not allow it."""


class WakeSource(Protocol):
    """What wakes a master when jobs are enqueued (the master selects on `fileno`).

    SQLite: a datagram socket beside the database (store/wake.py).
    PostgreSQL: a LISTEN connection, probed each check (store/pglisten.py).
    """

    def fileno(self) -> int:
        """The descriptor to select on; -1 while it is not connected (or, as
        PostgreSQL's does, one that stays the same and quiet meanwhile)."""

    def drain(self, at_most: int | None = None) -> list[tuple[float, list[str]]]:
        """The wake-ups waiting, (earliest run_at, queues): all of them, or up to
        `at_most` where reading one at a time is cheaper (datagrams)."""

    def check(self) -> bool:
        """Still listening? If not, reconnect (fileno may change) and return False."""

    def close(self) -> None: ...


class Store(Protocol):
    """What jobd needs from a database. Every call is bounded by the store's timeout."""

    url: str
    dialect: str  # "sqlite", "postgresql" or "memory": retention pauses between batches on SQLite

    def describe(self) -> str:
        """The database, for messages (no password)."""

    # -- schema
    def check_schema(self) -> None:
        """Raise SchemaError unless the schema is at this jobd's revision."""

    def upgrade(self) -> tuple[str | None, str]:
        """Migrate the schema to the head revision, creating the database if need be
        (a SQLite file and its directory); return (before, after)."""

    # -- producers
    def enqueue(self, jobs: list[NewJob], connection: Any = None) -> list[EnqueueResult]:
        """Insert jobs in one transaction (the caller's, if `connection` is given)."""

    def wake(self, queues: set[str], earliest_run_at: float) -> None:
        """Tell masters that jobs were enqueued (after commit)."""

    def wake_listener(self) -> WakeSource | None:
        """The master's end of `wake`, or None where the store has none."""

    # -- the master
    def exchange(
        self, node_id: int, settles: list[Settle], queues: tuple[str, ...], limit: int, now: float
    ) -> list[Claim]:
        """Apply settles and claim up to `limit` ready jobs, in one transaction."""

    def exchange_many(
        self, node_id: int, settles: list[Settle], requests: Sequence[ClaimRequest], now: float
    ) -> list[list[Claim]]:
        """Apply settles and serve each claim request (one per pool), in one transaction."""

    def register_node(self, name: str, hostname: str, pid: int, now: float) -> int: ...

    def heartbeat(self, node_id: int, now: float, info: dict[str, Any]) -> Pulse | None:
        """Record that the node lives, clearing a stop another node recorded.

        Liveness is stamped and judged on the database server's clock where
        there is one (PostgreSQL: hosts' clocks may disagree), else with `now`.
        None if the node row is gone.
        """

    def stop_node(self, node_id: int, now: float) -> None: ...

    def dead_nodes(self, now: float, timeout: float, exclude: int | None = None) -> list[NodeInfo]:
        """Nodes (but `exclude`) whose heartbeat is older than `timeout` seconds and
        that are not stopped or still hold running jobs."""

    def rescue_node(
        self,
        node_id: int,
        now: float,
        decide: Callable[[Claim], Settle],
        timeout: float | None = None,
    ) -> list[Settle]:
        """Settle a dead node's running jobs with `decide` and mark it stopped, in one
        transaction, once however many nodes try. With `timeout`, only if the
        node's heartbeat is still older than that (re-checked under its row
        lock); without, its death is proven otherwise (its pid is gone)."""

    def queue_load(
        self, queues: tuple[str, ...], now: float, cap: int = 100_000
    ) -> dict[str, QueueLoad]:
        """Per queue: queued and ready jobs and the oldest ready one, each read capped."""

    def cancel_requests(self, node_id: int) -> list[int]:
        """Running jobs of this node that someone asked to cancel."""

    def register_routines(
        self, catalog: dict[str, dict[str, Any]], now: float, node_id: int | None = None
    ) -> None:
        """Record `catalog` (name -> policy) as what node `node_id` registers, replacing
        its earlier registration; without a node, the policies only."""

    def routine_policies(self) -> dict[str, dict[str, Any]]:
        """The catalog: the routines live nodes register, name -> policy (or the last
        recorded catalog while no live node has registered any)."""

    def routine_registrations(self) -> dict[str, list[int]]:
        """Per routine, the ids of the live nodes that register it."""

    # -- people and scripts
    def get_job(self, job_id: int) -> Job: ...

    def list_jobs(
        self,
        state: str | None = None,
        queue: str | None = None,
        routine: str | None = None,
        limit: int = 50,
    ) -> list[Job]: ...

    def job_attempts(self, job_id: int) -> list[Attempt]: ...

    def retry(self, job_id: int, now: float) -> Job: ...

    def cancel(self, job_id: int, now: float) -> Job: ...

    def queue_stats(self, now: float | None = None) -> list[QueueStats]:
        """Jobs per queue and state, and each queue's oldest queued job (ready by
        `now`, when given)."""

    def routine_stats(self, since: float, routine: str | None = None) -> list[RoutineStats]:
        """Per routine (or just `routine`), the attempts that finished since `since`."""

    def nodes(self, include_stopped: bool = False) -> list[NodeInfo]: ...

    # -- schedules (jobd/store/schedules.py)
    def sync_schedules(
        self,
        definitions: dict[str, dict[str, Any]],
        next_fires: dict[str, float | None],
        now: float,
    ) -> None:
        """Make the stored schedules the configured ones, in one transaction.

        A new schedule, or one whose definition changed, gets `defined_at`
        and `fired_until` = `now` (so it never catches up fires from before
        it existed) and its next fire from `next_fires`; an unchanged one
        keeps its cursor and history. Stored schedules not in `definitions`
        are deleted (their past fires stay until retention prunes them).
        """

    def schedule_states(self) -> list[ScheduleState]:
        """Every stored schedule, by name, with the state of its last fire's job."""

    def fire_schedules(
        self, node_id: int | None, fires: list[Fire], progress: list[ScheduleProgress], now: float
    ) -> list[FiredJob]:
        """Insert fires and their jobs, and advance cursors, in one transaction.

        A fire whose (schedule, fire_at) is already stored (another master
        inserted it) is skipped, and its job with it (INSERT ... ON CONFLICT
        DO NOTHING on both dialects). Cursors and next fires only move
        forward; `last_fire_at`/`last_job_id` follow the latest fire
        inserted. Returns the fires this call inserted. Masters are woken
        for the new jobs after the commit.
        """

    # -- retention and health (jobd/store/retention.py)
    def delete_finished(self, state: str, before: float, limit: int) -> tuple[int, int]:
        """Delete up to `limit` jobs in the finished `state` whose `finished_at` is
        before `before`, oldest first, and their attempts, in one transaction;
        (jobs, attempts) deleted. Fewer than `limit` jobs means none is left."""

    def delete_fires(self, before: float, limit: int) -> int:
        """Delete up to `limit` schedule fires older than `before`, in one transaction."""

    def health_facts(self, now: float, stale_before: float, window_start: float) -> HealthFacts:
        """Live nodes, the oldest ready job per queue, running jobs whose node is
        stopped, unknown or has no heartbeat since `stale_before`, and attempt
        counts since `window_start`."""

    def close(self) -> None: ...
