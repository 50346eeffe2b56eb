"""What people and scripts ask of the store: jobs, their attempts, and counts.

`Queries` is held by `SQLStore` (store/sql.py), which hands it the
`Database` its statements run in, the `Writes` whose NOTIFY it sends on
PostgreSQL, and the store's wake-up for SQLite's masters. The master's hot
path is not here (sql.py, writes.py, claims.py).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, case, func, select, update
from sqlalchemy.exc import IntegrityError

from jobd.records import Attempt, Job, JobState, QueueLoad, QueueStats, RoutineStats
from jobd.store import schema
from jobd.store.claims import IS_QUEUED
from jobd.store.contract import InvalidTransition, JobNotFound
from jobd.store.database import Database
from jobd.store.rows import job_from_row, routine_stats
from jobd.store.writes import Writes

jobs, attempts = schema.jobs, schema.attempts


class Queries:
    """Reads, and the changes people make (retry, cancel)."""

    def __init__(
        self, db: Database, writes: Writes, wake: Callable[[set[str], float], None]
    ) -> None:
        self._db = db
        self._writes = writes
        self._wake = wake
        self._postgres = db.dialect == "postgresql"

    def get_job(self, job_id: int) -> Job:
        with self._db.transaction(write=False) as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(row)

    def list_jobs(
        self,
        state: str | None = None,
        queue: str | None = None,
        routine: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        stmt = select(jobs).order_by(jobs.c.id.desc()).limit(limit)
        if state is not None:
            stmt = stmt.where(jobs.c.state == state)
        if queue is not None:
            stmt = stmt.where(jobs.c.queue == queue)
        if routine is not None:
            stmt = stmt.where(jobs.c.routine == routine)
        with self._db.transaction(write=False) as conn:
            return [job_from_row(row) for row in conn.execute(stmt)]

    def job_attempts(self, job_id: int) -> list[Attempt]:
        columns = [c for c in attempts.c if c.name != "id"]
        with self._db.transaction(write=False) as conn:
            rows = conn.execute(
                select(*columns).where(attempts.c.job_id == job_id).order_by(attempts.c.id)
            )
            return [Attempt(**row._asdict()) for row in rows]

    def retry(self, job_id: int, now: float) -> Job:
        """Put a failed or cancelled job back in its queue with fresh attempts.

        Its run number goes on (`runs` is kept): attempt numbers never repeat.

        It keeps a run_at still to come (a delayed job cancelled before its time
        runs then, not at once); a past one becomes now.
        """
        with self._db.transaction() as conn:
            job = self._get_for_update(conn, job_id)
            if job.state not in (JobState.FAILED, JobState.CANCELLED):
                raise InvalidTransition(
                    f"job {job_id} is {job.state}; only failed or cancelled jobs can be retried"
                )
            run_at = max(now, job.run_at)
            try:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(
                        state="queued",
                        run_at=run_at,
                        attempts=0,
                        started_at=None,
                        finished_at=None,
                        node_id=None,
                        cancel_requested=False,
                        result=None,
                        error_type=None,
                        error_message=None,
                    )
                )
            except IntegrityError:
                raise InvalidTransition(
                    f"job {job_id}: a queued or running job already has its unique key"
                ) from None
            if self._postgres:
                self._writes.notify(conn.connection.dbapi_connection, {job.queue}, run_at)
        self._wake({job.queue}, run_at)
        return self.get_job(job_id)

    def cancel(self, job_id: int, now: float) -> Job:
        """Cancel a queued job; for a running one, record the request for its master."""
        with self._db.transaction() as conn:
            job = self._get_for_update(conn, job_id)
            if job.state == JobState.QUEUED:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(state="cancelled", finished_at=now)
                )
            elif job.state == JobState.RUNNING:
                conn.execute(update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True))
            else:
                raise InvalidTransition(
                    f"job {job_id} is {job.state}; only queued or running jobs can be cancelled"
                )
        return self.get_job(job_id)

    def _get_for_update(self, conn: Connection, job_id: int) -> Job:
        stmt = select(jobs).where(jobs.c.id == job_id)
        if self._postgres:
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).first()
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(row)

    def queue_load(
        self, queues: tuple[str, ...], now: float, cap: int = 100_000
    ) -> dict[str, QueueLoad]:
        """Per queue: queued and ready jobs and the oldest ready one, each read capped."""
        loads = {}
        with self._db.transaction(write=False) as conn:
            for queue in queues:
                rows = (
                    select(jobs.c.run_at)
                    .where(IS_QUEUED, jobs.c.queue == queue)
                    .limit(cap)
                    .subquery()
                )
                ready = case((rows.c.run_at <= now, 1), else_=0)
                oldest = func.min(case((rows.c.run_at <= now, rows.c.run_at), else_=None))
                queued, ready_count, oldest_ready = conn.execute(
                    select(func.count(), func.coalesce(func.sum(ready), 0), oldest)
                ).one()
                loads[queue] = QueueLoad(
                    queue, int(queued), int(ready_count), oldest_ready, int(queued) >= cap
                )
        return loads

    def count_queued(self, queues: tuple[str, ...], cap: int = 100_000) -> int:
        """Queued jobs in `queues`, counted up to `cap` (an index range, never a scan)."""
        capped = select(jobs.c.id).where(IS_QUEUED, jobs.c.queue.in_(queues)).limit(cap).subquery()
        with self._db.transaction(write=False) as conn:
            return int(conn.execute(select(func.count()).select_from(capped)).scalar() or 0)

    def routine_stats(self, since: float, routine: str | None = None) -> list[RoutineStats]:
        """Per routine, the attempts that finished since `since` (epoch seconds)."""
        stmt = select(
            attempts.c.routine, attempts.c.outcome, attempts.c.started_at,
            attempts.c.finished_at, attempts.c.peak_rss, attempts.c.cpu_seconds,
        ).where(attempts.c.finished_at >= since)  # fmt: skip
        if routine is not None:
            stmt = stmt.where(attempts.c.routine == routine)
        with self._db.transaction(write=False) as conn:
            return routine_stats(conn.execute(stmt).tuples())

    def queue_stats(self, now: float | None = None) -> list[QueueStats]:
        counts: dict[str, dict[str, int]] = {}
        oldest: dict[str, float] = {}
        ready = select(jobs.c.queue, func.min(jobs.c.run_at)).where(IS_QUEUED)
        if now is not None:
            ready = ready.where(jobs.c.run_at <= now)
        with self._db.transaction(write=False) as conn:
            for queue, state, count in conn.execute(
                select(jobs.c.queue, jobs.c.state, func.count()).group_by(
                    jobs.c.queue, jobs.c.state
                )
            ):
                counts.setdefault(queue, {})[state] = count
            for queue, run_at in conn.execute(ready.group_by(jobs.c.queue)):
                oldest[queue] = run_at
        return [QueueStats(q, counts[q], oldest.get(q)) for q in sorted(counts)]
