"""The store on SQLAlchemy 2 Core: every statement jobd runs is in this file.

Connections are kept, one per thread, for the life of the store: a pool
checkout per call costs more than the insert it wraps (measured: 4,200
single-row enqueues/s through `engine.begin()` against 9,700/s on a kept
connection, SQLite). After a fork the child drops them unused (they belong
to the parent) and opens its own.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from select import select as wait_readable
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    Select,
    bindparam,
    case,
    func,
    insert,
    literal_column,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from jobd.records import (
    Claim,
    ClaimRequest,
    EnqueueResult,
    Fire,
    FiredJob,
    HealthFacts,
    NewJob,
    NodeInfo,
    Pulse,
    ScheduleProgress,
    ScheduleState,
    Settle,
)
from jobd.store import maintenance, pgbatch, schema
from jobd.store import nodes as node_sql
from jobd.store import schedules as schedule_sql
from jobd.store.contract import InvalidTransition, JobNotFound, SchemaError, StoreError, WakeSource
from jobd.store.doubt import Doubt
from jobd.store.doubt import resolve as resolve_doubt
from jobd.store.engine import (
    SQLiteConnection,
    arm,
    build_engine,
    dialect_of,
    normalize_url,
    sqlite_path,
)
from jobd.store.fairness import weighted_merge
from jobd.store.hotpath import (
    ATTEMPT_NAMES,
    CLAIM_NAMES,
    SETTLE_NAMES,
    Compiled,
    attempt_rows,
    claims_from_rows,
    settle_rows,
)
from jobd.store.queries import Queries
from jobd.store.records import (
    INSERT_NAMES,
    insert_row,
    insert_tuple,
    job_from_row,
    new_job_record,
)
from jobd.store.wake import WakeListener, Waker

jobs, attempts, nodes, routines = schema.jobs, schema.attempts, schema.nodes, schema.routines

# Literal, not bound, so SQLite can use the partial indexes whose WHERE says the same.
IS_QUEUED = jobs.c.state == literal_column("'queued'")
IS_RUNNING = jobs.c.state == literal_column("'running'")

CLAIM_COLUMNS = (
    jobs.c.id,
    jobs.c.routine,
    jobs.c.queue,
    jobs.c.priority,
    jobs.c.attempts,
    jobs.c.max_attempts,
    jobs.c.args,
    jobs.c.kwargs,
    jobs.c.enqueued_at,
    jobs.c.run_at,
)

SETTLE = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_id"),
        IS_RUNNING,
        jobs.c.node_id == bindparam("b_node"),
        # The attempt it reports, when it reports one: a node that was declared
        # dead and came back may hold an old attempt of a job it claimed again.
        jobs.c.attempts == func.coalesce(bindparam("b_attempt", type_=Integer), jobs.c.attempts),
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


class SQLStore(Queries):
    """`jobd.store.contract.Store` on SQLite or PostgreSQL."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        sqlite_synchronous: str = "normal",
        create: bool = False,
    ) -> None:
        self.url = normalize_url(url)
        self.dialect = dialect_of(self.url)
        self.timeout = timeout
        self.engine = build_engine(self.url, timeout, sqlite_synchronous)
        self.database_path = sqlite_path(self.url)
        # Only `jobd db upgrade` (and the demo) may create a SQLite file: a typo
        # in a path must not leave an empty database behind.
        self.create = create
        self._waker = Waker(self.database_path) if self.database_path else None
        self._local = threading.local()
        self._pid = os.getpid()
        self._driver_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        self._doubt: Doubt | None = None  # an exchange whose commit may have happened
        self._applied: dict[int, Settle] = {}  # settles it applied, that come again
        self._claims: dict[tuple[str, ...], Compiled] = {}
        # The weighted round robin's credit per pool, carried across claims
        # (store/fairness.py): keyed by the pool's queues and weights.
        self._credit: dict[tuple[tuple[str, ...], tuple[float, ...]], list[float]] = {}
        self._settle = Compiled(SETTLE, self.engine.dialect, SETTLE_NAMES)
        inserted: dict[str, Any] = {name: bindparam(name) for name in INSERT_NAMES}
        self._insert_job = Compiled(
            insert(jobs).values(inserted), self.engine.dialect, INSERT_NAMES
        )
        self._insert_job_id = Compiled(
            insert(jobs).values(inserted).returning(jobs.c.id), self.engine.dialect, INSERT_NAMES
        )
        if self.dialect == "postgresql":
            from jobd.store.pglisten import CHANNEL_SQL

            # The single enqueue: the insert and its NOTIFY as one statement.
            self._insert_notify_sql = (
                f"WITH new AS ({self._insert_job_id.sql}) "
                f"SELECT new.id, pg_notify({CHANNEL_SQL}, %(payload)s) FROM new"
            )
        recorded: dict[str, Any] = {c.name: bindparam(c.name) for c in attempts.c if c.name != "id"}
        self._record = Compiled(
            insert(attempts).values(recorded), self.engine.dialect, ATTEMPT_NAMES
        )

    # -- connections and transactions ---------------------------------------

    def _connection(self) -> Connection:
        if self._pid != os.getpid():
            # A forked child must not touch the parent's connections, not even to close them.
            self.engine.dispose(close=False)
            self._local = threading.local()
            self._pid = os.getpid()
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated or not self._usable(conn):
            path = self.database_path
            if path and not self.create and not os.path.exists(path):
                raise SchemaError(f"{path} does not exist: create it with `jobd db upgrade`")
            try:
                conn = self.engine.connect()
            except SQLAlchemyError as exc:
                raise StoreError(f"cannot connect to {self.describe()}: {_reason(exc)}") from None
            self._local.conn = conn
            self._local.raw = None
        return conn

    def _sqlite_connection(self) -> SQLiteConnection:
        """The thread's kept SQLite DBAPI connection, armed for one transaction.

        The hot paths' way in: `_connection` checks the SQLAlchemy connection
        through several properties per call, here one attribute read suffices
        once it has been checked.
        """
        raw: SQLiteConnection | None = getattr(self._local, "raw", None)
        if raw is None or self._pid != os.getpid():
            raw = self._connection().connection.dbapi_connection  # type: ignore[assignment]
            assert isinstance(raw, SQLiteConnection)
            self._local.raw = raw
        raw.deadline = time.monotonic() + self.timeout
        return raw

    def _usable(self, conn: Connection) -> bool:
        if self.dialect != "postgresql" or _alive(conn):
            return True
        self._drop_connection()  # terminated or broken while idle: replaced, never reused
        return False

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[Connection]:
        conn = self._connection()
        try:
            arm(conn, write, self.timeout)
            with conn.begin():
                yield conn
        except (InvalidTransition, JobNotFound, SchemaError):
            raise
        except (SQLAlchemyError, self._driver_error) as exc:
            # The hot path runs on the driver's cursor, so its errors come unwrapped.
            self._drop_connection()
            raise StoreError(f"{self.describe()}: {_reason(exc)}") from None

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = self._local.raw = None
        if conn is not None:
            with suppress(SQLAlchemyError):
                conn.close()

    def describe(self) -> str:
        """The database, for messages (no password)."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self._drop_connection()
        if self._waker is not None:
            self._waker.close()
        self.engine.dispose()

    # -- schema --------------------------------------------------------------

    def check_schema(self) -> None:
        from jobd.store.migrate import check_revision

        with self._transaction(write=False) as conn:
            check_revision(conn, self.describe())

    def upgrade(self) -> tuple[str | None, str]:
        from jobd.store.migrate import upgrade

        self.create = True  # the one operation that may create the database
        conn = self._connection()
        arm(conn, True, self.timeout)
        try:
            return upgrade(conn)
        except SchemaError as exc:
            raise SchemaError(f"{self.describe()}: {exc}") from None
        except SQLAlchemyError as exc:
            self._drop_connection()
            raise StoreError(f"{self.describe()}: {_reason(exc)}") from None

    # -- producers -----------------------------------------------------------

    def enqueue(self, new: list[NewJob], connection: Any = None) -> list[EnqueueResult]:
        if not new:
            return []
        if connection is not None:
            if not isinstance(connection, Connection):
                raise TypeError("connection must be a sqlalchemy.Connection")
            results = self._insert(connection, new)
            if self._waker is not None and new:
                # Sent before the caller commits; the master re-checks shortly after.
                self.wake({job.queue for job in new}, min(job.run_at for job in new))
            return results
        if self.dialect == "postgresql" and len(new) == 1 and new[0].unique_key is None:
            return [self._enqueue_postgres_one(new[0])]
        if self.dialect == "sqlite" and all(job.unique_key is None for job in new):
            with self._sqlite_write() as raw:
                ids = self._insert_sqlite(raw, new)
            # The master is woken before the records are built: it claims meanwhile.
            self.wake({job.queue for job in new}, min(job.run_at for job in new))
            return [
                EnqueueResult(new_job_record(i, job), True) for i, job in zip(ids, new, strict=True)
            ]
        with self._transaction() as conn:
            results = self._insert(conn, new)
        self.wake({job.queue for job in new}, min(job.run_at for job in new))
        return results

    def _enqueue_postgres_one(self, job: NewJob) -> EnqueueResult:
        """One job on PostgreSQL: the INSERT and its NOTIFY in one statement,
        run as its own transaction (autocommit), on the kept connection's driver.

        NOTIFY is transactional: listeners get it when the statement commits,
        or never. Measured on loopback, per enqueue: BEGIN, INSERT, NOTIFY and
        COMMIT each waiting for its answer 1.2-1.35 ms; the four sent together
        in a psycopg pipeline 0.88 ms; this one statement 0.48 ms (an
        autocommit INSERT alone: 0.40 ms).
        """
        from jobd.store.pglisten import payloads

        (payload,) = payloads({job.queue}, job.run_at)  # one queue: one payload
        params = self._insert_job_id.bind(insert_tuple(job))
        params["payload"] = payload
        raw: Any = self._connection().connection.dbapi_connection
        try:
            raw.autocommit = True  # the connection is idle between transactions
            row = raw.execute(self._insert_notify_sql, params).fetchone()
            raw.autocommit = False
        except self._driver_error as exc:
            self._drop_connection()  # in whatever state the failure left it
            raise StoreError(f"{self.describe()}: {_reason(exc)}") from None
        except BaseException:
            self._drop_connection()
            raise
        return EnqueueResult(new_job_record(int(row[0]), job), True)

    @contextmanager
    def _sqlite_write(self) -> Iterator[SQLiteConnection]:
        """The hot paths' transaction on SQLite: BEGIN IMMEDIATE and COMMIT on the
        kept connection, without SQLAlchemy's transaction bookkeeping.

        Only statements run on the DBAPI cursor (hotpath.Compiled) may be used
        inside: a SQLAlchemy execute would begin a transaction of its own.
        Measured: 224 us of CPU per single-job enqueue through Connection.begin()
        (events, transaction objects) around ~60 us of SQLite work; and after an
        idle pause, when every instruction runs cold on this VM, the master's
        claim transaction fell from 1.0 ms to 0.41 ms (p50, see docs/architecture.md).
        """
        raw = self._sqlite_connection()
        try:
            raw.execute("BEGIN IMMEDIATE")
            try:
                yield raw
                raw.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):
                    raw.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._drop_connection()
            raise StoreError(f"{self.describe()}: {_sqlite_reason(exc)}") from None

    def wake(self, queues: set[str], earliest_run_at: float) -> None:
        """SQLite: a datagram to each master, after the commit. PostgreSQL sends
        NOTIFY inside the transaction that inserts the jobs instead (`_notify`)."""
        if self._waker is not None:
            self._waker.wake(queues, earliest_run_at)

    def _notify(self, conn: Connection, queues: set[str], earliest_run_at: float) -> None:
        """NOTIFY in `conn`'s transaction: PostgreSQL delivers it at commit, or never."""
        from jobd.store.pglisten import NOTIFY_SQL, payloads

        for payload in payloads(queues, earliest_run_at):
            conn.exec_driver_sql(NOTIFY_SQL, {"payload": payload})

    def wake_listener(self) -> WakeSource | None:
        if self.database_path is not None:
            return WakeListener(self.database_path)
        from jobd.store.pglisten import PgListener

        return PgListener(self._listen_connection, self.timeout)

    def _listen_connection(self) -> Any:
        """A new autocommit psycopg connection to the store's database (LISTEN)."""
        import psycopg

        _, params = self.engine.dialect.create_connect_args(self.engine.url)
        params["connect_timeout"] = max(int(self.timeout + 0.999), 1)
        return psycopg.connect(**params, autocommit=True)

    def _insert(self, conn: Connection, new: Sequence[NewJob]) -> list[EnqueueResult]:
        plain = [job for job in new if job.unique_key is None]
        ids: dict[int, int] = {}
        if plain and self.dialect == "sqlite":
            inserted = self._insert_sqlite(conn.connection.dbapi_connection, plain)
            for job, job_id in zip(plain, inserted, strict=True):
                ids[id(job)] = job_id
        elif len(plain) == 1:
            row = conn.execute(insert(jobs), insert_row(plain[0]))
            ids[id(plain[0])] = _new_id(row)
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
        if self.dialect == "postgresql":
            self._notify(conn, {job.queue for job in new}, min(job.run_at for job in new))
        return results

    def _insert_sqlite(self, raw: Any, plain: Sequence[NewJob]) -> range:
        """One executemany; the new ids are the top ones, consecutive.

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
            bind = self._insert_job.bind
            if len(plain) == 1:
                cursor.execute(self._insert_job.sql, bind(insert_tuple(plain[0])))
                return range(cursor.lastrowid, cursor.lastrowid + 1)
            # A generator: each row's tuples die as soon as SQLite has bound them,
            # instead of 2 x N objects that outlive the call for the GC to walk.
            cursor.executemany(self._insert_job.sql, (bind(insert_tuple(job)) for job in plain))
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

    def _insert_unique(self, conn: Connection, job: NewJob) -> EnqueueResult:
        dialect_insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
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

    # -- the master's hot path ----------------------------------------------

    def exchange(
        self, node_id: int, settles: list[Settle], queues: tuple[str, ...], limit: int, now: float
    ) -> list[Claim]:
        return self.exchange_many(node_id, settles, [ClaimRequest(queues, limit)], now)[0]

    def exchange_many(
        self, node_id: int, settles: list[Settle], requests: Sequence[ClaimRequest], now: float
    ) -> list[list[Claim]]:
        if self._doubt is not None:  # the last exchange's COMMIT got no answer (doubt.py)
            doubt = resolve_doubt(self, self._doubt)
            self._doubt = None
            if doubt.committed:
                self._applied.update((id(s), s) for s in doubt.settles)
        if self._applied:
            settles = [s for s in settles if id(s) not in self._applied]
        committing = False
        raw = self.dialect == "sqlite" and all(r.weights is None for r in requests)
        try:
            if raw:
                with self._sqlite_write() as dbapi:
                    claimed = self._exchange_in(None, dbapi, node_id, settles, requests, now)
            else:
                with self._transaction() as conn:
                    driver = conn.connection.dbapi_connection
                    claimed = self._exchange_in(conn, driver, node_id, settles, requests, now)
                    committing = self.dialect == "postgresql"
        except StoreError:
            flat = [claim for claims in claimed for claim in claims] if committing else []
            if flat or (committing and settles):
                self._doubt = Doubt(node_id, settles, flat)
            raise
        self._applied.clear()
        return claimed

    def _exchange_in(
        self,
        conn: Connection | None,
        dbapi: Any,
        node_id: int,
        settles: list[Settle],
        requests: Sequence[ClaimRequest],
        now: float,
    ) -> list[list[Claim]]:
        """The exchange's statements, in the open transaction of `dbapi` (the
        driver's connection; `conn` is its SQLAlchemy connection, or None on
        SQLite's raw path, which serves no weighted pools)."""
        if settles:
            self._apply_settles(conn, dbapi, node_id, settles)
        return [self._claim(conn, dbapi, node_id, request, now) for request in requests]

    def _claim(
        self,
        conn: Connection | None,
        dbapi: Any,
        node_id: int,
        request: ClaimRequest,
        now: float,
    ) -> list[Claim]:
        if request.limit <= 0:
            return []
        if request.weights is None or len(request.queues) == 1:
            rows = self._claim_statement(request.queues).execute(
                dbapi, (now, request.limit, node_id)
            )
            return claims_from_rows(rows)
        assert conn is not None
        return self._claim_weighted(conn, node_id, request, now)

    def _claim_weighted(
        self, conn: Connection, node_id: int, request: ClaimRequest, now: float
    ) -> list[Claim]:
        """Each queue's next jobs, shared by weight (store/fairness.py), then claimed.

        Two statements in the claim's transaction: on SQLite the write lock
        keeps the candidates; on PostgreSQL they are locked FOR UPDATE SKIP
        LOCKED and those not chosen are released at commit.
        """
        assert request.weights is not None
        candidates = [
            [
                row[0]
                for row in conn.execute(
                    self._ready(queue), {"c_now": now, "c_limit": request.limit}
                )
            ]
            for queue in request.queues
        ]
        pool = (tuple(request.queues), tuple(request.weights))
        credit = self._credit.setdefault(pool, [0.0] * len(request.queues))
        chosen = weighted_merge(candidates, request.weights, request.limit, credit)
        if not chosen:
            return []
        rank = {job_id: i for i, job_id in enumerate(chosen)}
        rows = conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(chosen), IS_QUEUED)
            .values(state="running", attempts=jobs.c.attempts + 1, node_id=node_id, started_at=now)
            .returning(*CLAIM_COLUMNS)
        ).all()
        return sorted((Claim._make(row) for row in rows), key=lambda c: rank[c.id])

    def _apply_settles(
        self, conn: Connection | None, dbapi: Any, node_id: int, settles: list[Settle]
    ) -> None:
        rows = settle_rows(node_id, settles)
        if self.dialect == "postgresql" and pgbatch.distinct_jobs(rows):
            pgbatch.settle_many(dbapi, node_id, rows)
        else:
            self._settle.execute_many(dbapi, rows)
        follow_ups = [s.follow_up for s in settles if s.follow_up is not None]
        if follow_ups:  # cursor-level, like the rest: this may run in _sqlite_write
            self._insert_job.execute_many(dbapi, [insert_tuple(job) for job in follow_ups])
            if conn is not None and self.dialect == "postgresql":
                queues = {job.queue for job in follow_ups}
                self._notify(conn, queues, min(job.run_at for job in follow_ups))
        recorded = attempt_rows(settles)
        if recorded and self.dialect == "postgresql":
            pgbatch.record_many(dbapi, recorded)
        elif recorded:
            self._record.execute_many(dbapi, recorded)

    def _claim_statement(self, queues: tuple[str, ...]) -> Compiled:
        """UPDATE ... WHERE id IN (next ready ids) RETURNING ...: one statement.

        Each served queue is read through its own slice of the claim index
        (an index range per queue, never a scan), then merged and cut to
        the limit; PostgreSQL skips rows other nodes hold locked.
        """
        cached = self._claims.get(queues)
        if cached is not None:
            return cached
        per_queue = [self._ready(queue) for queue in queues]
        if len(per_queue) == 1:
            chosen = per_queue[0].with_only_columns(jobs.c.id)
        else:
            merged = union_all(*(select(*q.subquery().c) for q in per_queue)).subquery()
            chosen = (
                select(merged.c.id)
                .order_by(merged.c.priority.desc(), merged.c.run_at, merged.c.id)
                .limit(bindparam("c_limit"))
            )
        if self.dialect == "postgresql":
            # Materialized once: PostgreSQL may otherwise re-run the sub-select
            # per outer row, each run skipping the rows just locked and finding
            # others, so claiming more than the limit (caught by the contract
            # tests). SQLite runs an IN (subquery) once already ("LIST SUBQUERY").
            candidates = chosen.cte("candidates").prefix_with("MATERIALIZED")
            chosen = select(candidates.c.id)
        stmt = (
            update(jobs)
            .where(jobs.c.id.in_(chosen.scalar_subquery()), IS_QUEUED)
            .values(
                state="running",
                attempts=jobs.c.attempts + 1,
                node_id=bindparam("c_node"),
                started_at=bindparam("c_now"),
            )
            .returning(*CLAIM_COLUMNS)
        )
        compiled = self._claims[queues] = Compiled(stmt, self.engine.dialect, CLAIM_NAMES)
        return compiled

    def _ready(self, queue: str) -> Select[Any]:
        stmt = (
            select(jobs.c.id, jobs.c.priority, jobs.c.run_at)
            .where(IS_QUEUED, jobs.c.queue == queue, jobs.c.run_at <= bindparam("c_now"))
            .order_by(jobs.c.priority.desc(), jobs.c.run_at, jobs.c.id)
            .limit(bindparam("c_limit"))
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return stmt

    # -- nodes ---------------------------------------------------------------

    def register_node(self, name: str, hostname: str, pid: int, now: float) -> int:
        return node_sql.register(self, name, hostname, pid, now)

    def heartbeat(self, node_id: int, now: float, info: dict[str, Any]) -> Pulse | None:
        return node_sql.heartbeat(self, node_id, now, info)

    def dead_nodes(self, now: float, timeout: float, exclude: int | None = None) -> list[NodeInfo]:
        return node_sql.dead_nodes(self, now, timeout, exclude)

    def stop_node(self, node_id: int, now: float) -> None:
        with self._transaction() as conn:
            conn.execute(update(nodes).where(nodes.c.id == node_id).values(stopped_at=now))

    def nodes(self, include_stopped: bool = False) -> list[NodeInfo]:
        stmt = select(nodes).order_by(nodes.c.id)
        if not include_stopped:
            stmt = stmt.where(nodes.c.stopped_at.is_(None))
        with self._transaction(write=False) as conn:
            return [
                NodeInfo(
                    r.id,
                    r.name,
                    r.hostname,
                    r.pid,
                    r.started_at,
                    r.heartbeat_at,
                    r.stopped_at,
                    json.loads(r.info or "{}"),
                )
                for r in conn.execute(stmt)
            ]

    def rescue_node(
        self,
        node_id: int,
        now: float,
        decide: Callable[[Claim], Settle],
        timeout: float | None = None,
    ) -> list[Settle]:
        """Settle a dead node's running jobs with `decide`, and mark it stopped (nodes.py)."""
        running = select(*CLAIM_COLUMNS).where(IS_RUNNING, jobs.c.node_id == node_id)
        return node_sql.rescue(self, node_id, now, decide, timeout, running)

    def cancel_requests(self, node_id: int) -> list[int]:
        with self._transaction(write=False) as conn:
            return list(
                conn.execute(
                    select(jobs.c.id).where(
                        IS_RUNNING, jobs.c.node_id == node_id, jobs.c.cancel_requested
                    )
                ).scalars()
            )

    # -- routine catalog -----------------------------------------------------

    def register_routines(self, catalog: dict[str, dict[str, Any]], now: float) -> None:
        if not catalog:
            return
        dialect_insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        stmt = dialect_insert(routines)
        stmt = stmt.on_conflict_do_update(
            index_elements=[routines.c.name],
            set_={"policy": stmt.excluded.policy, "updated_at": stmt.excluded.updated_at},
        )
        rows = [
            {"name": name, "policy": json.dumps(policy, sort_keys=True), "updated_at": now}
            for name, policy in catalog.items()
        ]
        with self._transaction() as conn:
            conn.execute(stmt, rows)

    def routine_policies(self) -> dict[str, dict[str, Any]]:
        with self._transaction(write=False) as conn:
            return {
                name: json.loads(policy)
                for name, policy in conn.execute(select(routines.c.name, routines.c.policy))
            }

    # -- schedules, retention, health: statements in schedules.py and maintenance.py

    def sync_schedules(
        self,
        definitions: dict[str, dict[str, Any]],
        next_fires: dict[str, float | None],
        now: float,
    ) -> None:
        schedule_sql.sync_schedules(self, definitions, next_fires, now)

    def schedule_states(self) -> list[ScheduleState]:
        return schedule_sql.schedule_states(self)

    def fire_schedules(
        self, node_id: int | None, fires: list[Fire], progress: list[ScheduleProgress], now: float
    ) -> list[FiredJob]:
        return schedule_sql.fire_schedules(self, node_id, fires, progress, now)

    def delete_finished(self, state: str, before: float, limit: int) -> tuple[int, int]:
        return maintenance.delete_finished(self, state, before, limit)

    def delete_fires(self, before: float, limit: int) -> int:
        return maintenance.delete_fires(self, before, limit)

    def health_facts(self, now: float, stale_before: float, window_start: float) -> HealthFacts:
        return maintenance.health_facts(self, now, stale_before, window_start)


# -- helpers -----------------------------------------------------------------


def _new_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _alive(conn: Connection) -> bool:
    """Is a kept PostgreSQL connection still usable? Checked before each transaction.

    An idle connection has nothing to read: a readable socket holds the
    server's goodbye (`pg_terminate_backend`, a shutdown) or its EOF. One
    non-blocking poll (a few microseconds) spares a failed transaction.
    """
    raw: Any = conn.connection.dbapi_connection
    if raw is None or raw.closed or raw.broken:
        return False
    try:
        readable, _, _ = wait_readable([raw.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _sqlite_reason(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "interrupted" in text:
        return "the statement ran past the store timeout"
    return text.splitlines()[0] if text else type(exc).__name__


def _reason(exc: Exception) -> str:
    """The driver's own words, on one line, without SQLAlchemy's boilerplate."""
    if isinstance(exc, sqlite3.Error):
        return _sqlite_reason(exc)
    text = str(exc.orig) if isinstance(exc, DBAPIError) and exc.orig is not None else str(exc)
    if isinstance(exc, OperationalError) and "interrupted" in text:
        text = "the statement ran past the store timeout"
    if isinstance(exc, IntegrityError):
        text = f"integrity: {text}"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:300]
