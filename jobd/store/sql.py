"""`SQLStore`: the store contract on SQLAlchemy 2 Core, SQLite or PostgreSQL.

Where the statements are:

- database.py: connections, transactions, driver errors (`Database`);
- writes.py: inserting jobs, settling them, recording attempts, NOTIFY;
- claims.py: claiming jobs (the master's other hot statement);
- queries.py: what people and scripts ask (jobs, attempts, counts, retry, cancel);
- nodes.py, schedules.py, retention.py: nodes and rescue, schedules and
  their fires, retention and health;
- doubt.py: an exchange whose COMMIT got no answer (PostgreSQL);
- here: the routine catalog, and the choice of path for enqueue and the
  exchange (the master's hot path), which call into writes.py and claims.py
  with no layer between.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

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
from jobd.store import catalog as routine_catalog
from jobd.store import nodes as node_sql
from jobd.store import retention
from jobd.store import schedules as schedule_sql
from jobd.store.claims import Claims
from jobd.store.contract import StoreError, WakeSource
from jobd.store.database import Database
from jobd.store.doubt import Doubt
from jobd.store.doubt import resolve as resolve_doubt
from jobd.store.queries import Queries
from jobd.store.rows import new_job_record
from jobd.store.wake import WakeListener, Waker
from jobd.store.writes import Writes


class SQLStore:
    """`jobd.store.contract.Store` on SQLite or PostgreSQL."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        sqlite_synchronous: str = "normal",
        create: bool = False,
    ) -> None:
        self.db = Database(
            url, timeout=timeout, sqlite_synchronous=sqlite_synchronous, create=create
        )
        self.url = self.db.url
        self.dialect = self.db.dialect
        self.timeout = timeout
        self.writes = Writes(self.db)
        self.claims = Claims(self.db.engine.dialect)
        self.queries = Queries(self.db, self.writes, self.wake)
        self._waker = Waker(self.db.path) if self.db.path else None
        self._doubt: Doubt | None = None  # an exchange whose commit may have happened
        self._applied: dict[int, Settle] = {}  # settles it applied, that come again

    def describe(self) -> str:
        """The database, for messages (no password)."""
        return self.db.describe()

    def close(self) -> None:
        self.db.close()
        if self._waker is not None:
            self._waker.close()

    # -- schema --------------------------------------------------------------

    def check_schema(self) -> None:
        from jobd.store.migrate import check_revision

        with self.db.transaction(write=False) as conn:
            check_revision(conn, self.db.describe())

    def upgrade(self) -> tuple[str | None, str]:
        return self.db.upgrade()

    # -- producers -----------------------------------------------------------

    def enqueue(self, new: list[NewJob], connection: Any = None) -> list[EnqueueResult]:
        if not new:
            return []
        if connection is not None:
            if not isinstance(connection, Connection):
                raise TypeError("connection must be a sqlalchemy.Connection")
            results = self.writes.insert(connection, new)
            if self._waker is not None and new:
                # Sent before the caller commits; the master re-checks shortly after.
                self.wake({job.queue for job in new}, min(job.run_at for job in new))
            return results
        if self.dialect == "postgresql" and len(new) == 1 and new[0].unique_key is None:
            job = new[0]
            row = self.db.autocommit(
                self.writes.insert_notify_sql, self.writes.insert_notify_params(job)
            )
            return [EnqueueResult(new_job_record(int(row[0]), job), True)]
        if self.dialect == "sqlite" and all(job.unique_key is None for job in new):
            with self.db.write() as raw:
                ids = self.writes.insert_sqlite(raw, new)
            # The master is woken before the records are built: it claims meanwhile.
            self.wake({job.queue for job in new}, min(job.run_at for job in new))
            return [
                EnqueueResult(new_job_record(i, job), True) for i, job in zip(ids, new, strict=True)
            ]
        with self.db.transaction() as conn:
            results = self.writes.insert(conn, new)
        self.wake({job.queue for job in new}, min(job.run_at for job in new))
        return results

    def wake(self, queues: set[str], earliest_run_at: float) -> None:
        """SQLite: a datagram to each master, after the commit. PostgreSQL sends
        NOTIFY inside the transaction that inserts the jobs instead (writes.py)."""
        if self._waker is not None:
            self._waker.wake(queues, earliest_run_at)

    def wake_listener(self) -> WakeSource | None:
        if self.db.path is not None:
            return WakeListener(self.db.path)
        from jobd.store.pglisten import PgListener

        return PgListener(self.db.listen_connection, self.timeout)

    # -- the master's hot path ----------------------------------------------

    def exchange(
        self, node_id: int, settles: list[Settle], queues: tuple[str, ...], limit: int, now: float
    ) -> list[Claim]:
        return self.exchange_many(node_id, settles, [ClaimRequest(queues, limit)], now)[0]

    def exchange_many(
        self, node_id: int, settles: list[Settle], requests: Sequence[ClaimRequest], now: float
    ) -> list[list[Claim]]:
        """Settles applied and claims served in one write transaction, every
        statement on the driver's cursor (`Database.write`, writes.py, claims.py)."""
        if self._doubt is not None:  # the last exchange's COMMIT got no answer (doubt.py)
            doubt = resolve_doubt(self.db, self.writes, self._doubt)
            self._doubt = None
            if doubt.committed:
                self._applied.update((id(s), s) for s in doubt.settles)
        if self._applied:
            settles = [s for s in settles if id(s) not in self._applied]
        committing = False
        try:
            with self.db.write() as driver:
                if settles:
                    self.writes.apply_settles(driver, node_id, settles)
                claim = self.claims.claim
                claimed = [claim(driver, node_id, request, now) for request in requests]
                # Past here only COMMIT can fail: on PostgreSQL it may have happened.
                committing = self.dialect == "postgresql"
        except StoreError:
            flat = [claim for claims in claimed for claim in claims] if committing else []
            if flat or (committing and settles):
                self._doubt = Doubt(node_id, settles, flat)
            raise
        self._applied.clear()
        return claimed

    # -- nodes (nodes.py) ----------------------------------------------------

    def register_node(self, name: str, hostname: str, pid: int, now: float) -> int:
        return node_sql.register(self.db, name, hostname, pid, now)

    def heartbeat(self, node_id: int, now: float, info: dict[str, Any]) -> Pulse | None:
        return node_sql.heartbeat(self.db, node_id, now, info)

    def dead_nodes(self, now: float, timeout: float, exclude: int | None = None) -> list[NodeInfo]:
        return node_sql.dead_nodes(self.db, now, timeout, exclude)

    def stop_node(self, node_id: int, now: float) -> None:
        node_sql.stop(self.db, node_id, now)

    def nodes(self, include_stopped: bool = False) -> list[NodeInfo]:
        return node_sql.list_nodes(self.db, include_stopped)

    def rescue_node(
        self,
        node_id: int,
        now: float,
        decide: Callable[[Claim], Settle],
        timeout: float | None = None,
    ) -> list[Settle]:
        """Settle a dead node's running jobs with `decide`, and mark it stopped (nodes.py)."""
        return node_sql.rescue(self.db, node_id, now, decide, timeout, self.writes)

    def cancel_requests(self, node_id: int) -> list[int]:
        return node_sql.cancel_requests(self.db, node_id)

    # -- routine catalog -----------------------------------------------------

    def register_routines(
        self, catalog: dict[str, dict[str, Any]], now: float, node_id: int | None = None
    ) -> None:
        """Record the routines a node registered (store/catalog.py)."""
        if catalog or node_id is not None:
            routine_catalog.register(self.db, catalog, now, node_id)

    def routine_policies(self) -> dict[str, dict[str, Any]]:
        return routine_catalog.policies(self.db)

    def routine_registrations(self) -> dict[str, list[int]]:
        return routine_catalog.registrations(self.db)

    # -- people and scripts (queries.py) -------------------------------------

    def get_job(self, job_id: int) -> Job:
        return self.queries.get_job(job_id)

    def list_jobs(
        self,
        state: str | None = None,
        queue: str | None = None,
        routine: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        return self.queries.list_jobs(state, queue, routine, limit)

    def job_attempts(self, job_id: int) -> list[Attempt]:
        return self.queries.job_attempts(job_id)

    def retry(self, job_id: int, now: float) -> Job:
        return self.queries.retry(job_id, now)

    def cancel(self, job_id: int, now: float) -> Job:
        return self.queries.cancel(job_id, now)

    def queue_load(
        self, queues: tuple[str, ...], now: float, cap: int = 100_000
    ) -> dict[str, QueueLoad]:
        return self.queries.queue_load(queues, now, cap)

    def count_queued(self, queues: tuple[str, ...], cap: int = 100_000) -> int:
        return self.queries.count_queued(queues, cap)

    def routine_stats(self, since: float, routine: str | None = None) -> list[RoutineStats]:
        return self.queries.routine_stats(since, routine)

    def queue_stats(self, now: float | None = None) -> list[QueueStats]:
        return self.queries.queue_stats(now)

    # -- schedules (schedules.py) --------------------------------------------

    def sync_schedules(
        self,
        definitions: dict[str, dict[str, Any]],
        next_fires: dict[str, float | None],
        now: float,
    ) -> None:
        schedule_sql.sync_schedules(self.db, definitions, next_fires, now)

    def schedule_states(self) -> list[ScheduleState]:
        return schedule_sql.schedule_states(self.db)

    def fire_schedules(
        self, node_id: int | None, fires: list[Fire], progress: list[ScheduleProgress], now: float
    ) -> list[FiredJob]:
        fired = schedule_sql.fire_schedules(self.db, self.writes, node_id, fires, progress, now)
        if fired:
            self.wake({f.queue for f in fired}, min(f.fire_at for f in fired))
        return fired

    # -- retention and health (retention.py) ---------------------------------

    def delete_finished(self, state: str, before: float, limit: int) -> tuple[int, int]:
        return retention.delete_finished(self.db, state, before, limit)

    def delete_fires(self, before: float, limit: int) -> int:
        return retention.delete_fires(self.db, before, limit)

    def health_facts(self, now: float, stale_before: float, window_start: float) -> HealthFacts:
        return retention.health_facts(self.db, now, stale_before, window_start)
