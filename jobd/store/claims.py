"""The claim statements: the next ready jobs of a pool's queues, marked running.

Every claim runs on the driver's connection in the exchange's write
transaction (`Database.write`), with statements compiled once per queue set
(hotpath.Compiled): the unweighted claim as one UPDATE ... RETURNING, the
weighted one as a read of each queue's candidates, merged by weight
(fairness.py), then an UPDATE of the chosen ids.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, bindparam, literal_column, select, union_all, update

from jobd.records import Claim, ClaimRequest
from jobd.store.fairness import weighted_merge
from jobd.store.hotpath import CLAIM_NAMES, Compiled, claims_from_rows
from jobd.store.schema import jobs

# Literal, not bound, so SQLite can use the partial indexes whose WHERE says the same.
IS_QUEUED = jobs.c.state == literal_column("'queued'")
IS_RUNNING = jobs.c.state == literal_column("'running'")

CLAIM_COLUMNS = (
    jobs.c.id,
    jobs.c.routine,
    jobs.c.queue,
    jobs.c.priority,
    jobs.c.runs,  # Claim.attempt: the run number
    jobs.c.max_attempts,
    jobs.c.args,
    jobs.c.kwargs,
    jobs.c.enqueued_at,
    jobs.c.run_at,
    jobs.c.attempts,  # Claim.counted
)

READY_NAMES = ("c_now", "c_limit")


class Claims:
    """The claim statements of one store, compiled on first use and kept."""

    def __init__(self, dialect: Any) -> None:
        self._dialect = dialect  # SQLAlchemy's, to compile for
        self._postgres = dialect.name == "postgresql"
        self._by_queues: dict[tuple[str, ...], Compiled] = {}
        self._ready: dict[str, Compiled] = {}
        self._by_ids: dict[int, Compiled] = {}
        # The weighted round robin's credit per pool, carried across claims
        # (store/fairness.py): keyed by the pool's queues and weights.
        self._credit: dict[tuple[tuple[str, ...], tuple[float, ...]], list[float]] = {}

    def claim(self, driver: Any, node_id: int, request: ClaimRequest, now: float) -> list[Claim]:
        """Claim up to `request.limit` jobs for `node_id` on `driver`, in its open
        write transaction; in claim order."""
        if request.limit <= 0:
            return []
        if request.weights is None or len(request.queues) == 1:
            rows = self.statement(request.queues).execute(driver, (now, request.limit, node_id))
            return claims_from_rows(rows)
        return self._claim_weighted(driver, node_id, request, now)

    def _claim_weighted(
        self, driver: Any, node_id: int, request: ClaimRequest, now: float
    ) -> list[Claim]:
        """Each queue's next jobs, shared by weight (store/fairness.py), then claimed.

        Two statements in the claim's transaction: on SQLite the write lock
        keeps the candidates; on PostgreSQL they are locked FOR UPDATE SKIP
        LOCKED and those not chosen are released at commit.
        """
        assert request.weights is not None
        candidates = [
            [row[0] for row in self._ready_statement(queue).execute(driver, (now, request.limit))]
            for queue in request.queues
        ]
        pool = (tuple(request.queues), tuple(request.weights))
        credit = self._credit.setdefault(pool, [0.0] * len(request.queues))
        chosen = weighted_merge(candidates, request.weights, request.limit, credit)
        if not chosen:
            return []
        rank = {job_id: i for i, job_id in enumerate(chosen)}
        rows = self._by_ids_statement(len(chosen)).execute(driver, (node_id, now, *chosen))
        return sorted((Claim._make(row) for row in rows), key=lambda c: rank[c.id])

    def statement(self, queues: tuple[str, ...]) -> Compiled:
        """UPDATE ... WHERE id IN (next ready ids) RETURNING ...: one statement.

        Each served queue is read through its own slice of the claim index
        (an index range per queue, never a scan), then merged and cut to
        the limit; PostgreSQL skips rows other nodes hold locked.
        """
        cached = self._by_queues.get(queues)
        if cached is not None:
            return cached
        per_queue = [self._ready_select(queue) for queue in queues]
        if len(per_queue) == 1:
            chosen = per_queue[0].with_only_columns(jobs.c.id)
        else:
            merged = union_all(*(select(*q.subquery().c) for q in per_queue)).subquery()
            chosen = (
                select(merged.c.id)
                .order_by(merged.c.priority.desc(), merged.c.run_at, merged.c.id)
                .limit(bindparam("c_limit"))
            )
        if self._postgres:
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
                runs=jobs.c.runs + 1,
                node_id=bindparam("c_node"),
                started_at=bindparam("c_now"),
            )
            .returning(*CLAIM_COLUMNS)
        )
        compiled = self._by_queues[queues] = Compiled(stmt, self._dialect, CLAIM_NAMES)
        return compiled

    def _ready_select(self, queue: str) -> Select[Any]:
        stmt = (
            select(jobs.c.id, jobs.c.priority, jobs.c.run_at)
            .where(IS_QUEUED, jobs.c.queue == queue, jobs.c.run_at <= bindparam("c_now"))
            .order_by(jobs.c.priority.desc(), jobs.c.run_at, jobs.c.id)
            .limit(bindparam("c_limit"))
        )
        if self._postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        return stmt

    def _ready_statement(self, queue: str) -> Compiled:
        cached = self._ready.get(queue)
        if cached is None:
            cached = Compiled(self._ready_select(queue), self._dialect, READY_NAMES)
            self._ready[queue] = cached
        return cached

    def _by_ids_statement(self, count: int) -> Compiled:
        """Claim `count` chosen ids: one statement per count, compiled once."""
        cached = self._by_ids.get(count)
        if cached is None:
            ids = [f"c_id{i}" for i in range(count)]
            stmt = (
                update(jobs)
                .where(jobs.c.id.in_([bindparam(name) for name in ids]), IS_QUEUED)
                .values(
                    state="running",
                    attempts=jobs.c.attempts + 1,
                    runs=jobs.c.runs + 1,
                    node_id=bindparam("c_node"),
                    started_at=bindparam("c_now"),
                )
                .returning(*CLAIM_COLUMNS)
            )
            cached = Compiled(stmt, self._dialect, ("c_node", "c_now", *ids))
            self._by_ids[count] = cached
        return cached
