"""The statements that write jobs and attempts: inserting jobs, settling them,
recording attempts, and NOTIFY on PostgreSQL.

Enqueue (sql.py), the exchange (sql.py), the schedules' fires (schedules.py),
a dead node's rescue (nodes.py) and the doubt's put-back (doubt.py) all write
through one `Writes`, which holds these statements compiled once for the
store's dialect. Each method runs in a transaction its caller opened from
the `Database` (database.py): the driver's connection for the hot paths,
a SQLAlchemy connection where Core statements run too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Integer, bindparam, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from jobd.records import EnqueueResult, NewJob, Settle
from jobd.store import pgbatch
from jobd.store.claims import IS_RUNNING
from jobd.store.contract import StoreError
from jobd.store.database import Database
from jobd.store.hotpath import ATTEMPT_NAMES, SETTLE_NAMES, Compiled, attempt_rows, settle_rows
from jobd.store.rows import INSERT_NAMES, insert_row, insert_tuple, job_from_row, new_job_record
from jobd.store.schema import attempts, jobs

SETTLE = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_id"),
        IS_RUNNING,
        jobs.c.node_id == bindparam("b_node"),
        # The run it reports, when it reports one: a node that was declared dead
        # and came back may hold an old run of a job it claimed again, and after
        # an uncounted put-back the count alone would not tell two runs apart.
        jobs.c.runs == func.coalesce(bindparam("b_attempt", type_=Integer), jobs.c.runs),
    )
    .values(
        state=bindparam("b_state"),
        result=bindparam("b_result"),
        run_at=func.coalesce(bindparam("b_run_at"), jobs.c.run_at),
        finished_at=bindparam("b_finished_at"),
        error_type=bindparam("b_error_type"),
        error_message=bindparam("b_error_message"),
        attempts=jobs.c.attempts - bindparam("b_uncount"),
        cancel_requested=case(
            (bindparam("b_state") == "queued", jobs.c.cancel_requested), else_=False
        ),
    )
)


class Writes:
    """Jobs and attempts written, on the connection of the caller's transaction."""

    def __init__(self, db: Database) -> None:
        dialect = db.engine.dialect
        self.postgres = db.dialect == "postgresql"
        self.settle = Compiled(SETTLE, dialect, SETTLE_NAMES)
        inserted: dict[str, Any] = {name: bindparam(name) for name in INSERT_NAMES}
        self.insert_job = Compiled(insert(jobs).values(inserted), dialect, INSERT_NAMES)
        self.insert_job_id = Compiled(
            insert(jobs).values(inserted).returning(jobs.c.id), dialect, INSERT_NAMES
        )
        recorded: dict[str, Any] = {c.name: bindparam(c.name) for c in attempts.c if c.name != "id"}
        self.record = Compiled(insert(attempts).values(recorded), dialect, ATTEMPT_NAMES)
        self.insert_notify_sql = ""
        if self.postgres:
            from jobd.store.pglisten import CHANNEL_SQL

            # The single enqueue: the insert and its NOTIFY as one statement.
            self.insert_notify_sql = (
                f"WITH new AS ({self.insert_job_id.sql}) "
                f"SELECT new.id, pg_notify({CHANNEL_SQL}, %(payload)s) FROM new"
            )

    # -- jobs -----------------------------------------------------------------

    def insert(self, conn: Connection, new: Sequence[NewJob]) -> list[EnqueueResult]:
        """Insert `new` in `conn`'s transaction (any dialect, unique keys too)."""
        plain = [job for job in new if job.unique_key is None]
        ids: dict[int, int] = {}
        if plain and not self.postgres:
            inserted = self.insert_sqlite(conn.connection.dbapi_connection, plain)
            for job, job_id in zip(plain, inserted, strict=True):
                ids[id(job)] = job_id
        elif len(plain) == 1:
            row = conn.execute(insert(jobs), insert_row(plain[0]))
            key = row.inserted_primary_key
            assert key is not None
            ids[id(plain[0])] = int(key[0])
        elif plain:
            new_ids = pgbatch.insert_many(conn.connection.dbapi_connection, plain)
            for job, job_id in zip(plain, new_ids, strict=True):
                ids[id(job)] = job_id
        results = []
        for job in new:
            if job.unique_key is None:
                results.append(EnqueueResult(new_job_record(ids[id(job)], job), True))
            else:
                results.append(self._insert_unique(conn, job))
        if self.postgres:
            self.notify(conn.connection.dbapi_connection, {job.queue for job in new},
                        min(job.run_at for job in new))  # fmt: skip
        return results

    def insert_sqlite(self, raw: Any, plain: Sequence[NewJob]) -> range:
        """SQLite, jobs without a unique key: one executemany; the new ids are the
        top ones, consecutive.

        SQLAlchemy's insertmanyvalues cannot keep RETURNING in parameter
        order on SQLite and falls back to one statement per row (measured:
        20,000 executes for 20,000 jobs, 10k jobs/s). Here: INTEGER PRIMARY
        KEY rows get max(rowid) + 1 each, and from the first insert on this
        transaction holds the write lock, so the batch's ids are the n
        highest; the count check guards that reasoning.

        Tried and measured: the rows as one JSON array read by json_each in
        one INSERT ... SELECT. 10 us per job plus 2 us of json.dumps, against
        7.6 us through executemany (20,000 jobs, the jobs table's indexes
        in place): the index updates, not the binding, are the cost.
        """
        cursor = raw.cursor()
        try:
            bind = self.insert_job.bind
            if len(plain) == 1:
                cursor.execute(self.insert_job.sql, bind(insert_tuple(plain[0])))
                return range(cursor.lastrowid, cursor.lastrowid + 1)
            # A generator: each row's tuples die as soon as SQLite has bound them,
            # instead of 2 x N objects that outlive the call for the GC to walk.
            cursor.executemany(self.insert_job.sql, (bind(insert_tuple(job)) for job in plain))
            last = cursor.execute("SELECT max(id) FROM jobs").fetchone()[0]
            first = last - len(plain) + 1
            found = cursor.execute("SELECT count(*) FROM jobs WHERE id >= ?", (first,)).fetchone()[
                0
            ]
            if found != len(plain):
                raise StoreError(
                    f"bulk insert: expected {len(plain)} new ids from {first}, found {found}"
                )
            return range(first, last + 1)
        finally:
            cursor.close()

    def insert_notify_params(self, job: NewJob) -> dict[str, Any]:
        """PostgreSQL, one job without a unique key: the parameters of
        `insert_notify_sql`, the INSERT and its NOTIFY as one statement, run as
        its own transaction (`Database.autocommit`).

        NOTIFY is transactional: listeners get it when the statement commits,
        or never. Measured on loopback, per enqueue: BEGIN, INSERT, NOTIFY and
        COMMIT each waiting for its answer 1.2-1.35 ms; the four sent together
        in a psycopg pipeline 0.88 ms; this one statement 0.48 ms (an
        autocommit INSERT alone: 0.40 ms).
        """
        from jobd.store.pglisten import payloads

        (payload,) = payloads({job.queue}, job.run_at)  # one queue: one payload
        params: dict[str, Any] = self.insert_job_id.bind(insert_tuple(job))
        params["payload"] = payload
        return params

    def _insert_unique(self, conn: Connection, job: NewJob) -> EnqueueResult:
        dialect_insert = postgresql.insert if self.postgres else sqlite.insert
        stmt = (
            dialect_insert(jobs)
            .values(insert_row(job))
            .on_conflict_do_nothing()
            .returning(jobs.c.id)
        )
        job_id = conn.execute(stmt).scalar()
        if job_id is not None:
            return EnqueueResult(new_job_record(int(job_id), job), True)
        existing = conn.execute(
            select(jobs).where(
                jobs.c.unique_key == job.unique_key, jobs.c.state.in_(("queued", "running"))
            )
        ).first()
        if existing is None:  # finished between the conflict and the select: try once more
            return self._insert_unique(conn, job)
        return EnqueueResult(job_from_row(existing), False)

    def notify(self, driver: Any, queues: set[str], earliest_run_at: float) -> None:
        """PostgreSQL: NOTIFY in `driver`'s transaction, delivered at commit or never.
        (SQLite masters are woken by a datagram after the commit: SQLStore.wake.)"""
        from jobd.store.pglisten import NOTIFY_SQL, payloads

        with driver.cursor() as cursor:
            for payload in payloads(queues, earliest_run_at):
                cursor.execute(NOTIFY_SQL, {"payload": payload})

    # -- settles --------------------------------------------------------------

    def apply_settles(self, driver: Any, node_id: int, settles: list[Settle]) -> None:
        """Settle jobs `node_id` runs, insert their follow-ups and record their
        attempts, on `driver` (the driver's connection, in its open transaction)."""
        rows = settle_rows(node_id, settles)
        if self.postgres and pgbatch.distinct_jobs(rows):
            pgbatch.settle_many(driver, node_id, rows)
        else:
            self.settle.execute_many(driver, rows)
        follow_ups = [s.follow_up for s in settles if s.follow_up is not None]
        if follow_ups:
            self.insert_job.execute_many(driver, [insert_tuple(job) for job in follow_ups])
            if self.postgres:
                queues = {job.queue for job in follow_ups}
                self.notify(driver, queues, min(job.run_at for job in follow_ups))
        recorded = attempt_rows(settles)
        if recorded and self.postgres:
            pgbatch.record_many(driver, recorded)
        elif recorded:
            self.record.execute_many(driver, recorded)
