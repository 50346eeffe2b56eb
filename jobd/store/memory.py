"""`MemoryStore`: the store contract in memory, for tests.

The master-loop unit tests run on it, and the store contract suite
(tests/integration/test_store_contract.py and beside it) runs its tests of
claims, settles, rescue, uniqueness, retry and cancel on it as on SQLite and
PostgreSQL, so the fake cannot drift from the real stores unnoticed.

It mirrors the SQL statements rather than reinventing them: its tables
(memory_tables.py) are dicts of rows named like their columns (schema.py),
so rows become records through the same functions (rows.py); the weighted
claims share the pool's credit through the same merge (fairness.py); each
method names the statement it stands for. Every call holds one lock, which
makes it a transaction: a write works on the tables and, if it raises, the
tables it started from are put back (they are copied at its start: cheap at
the sizes of tests, and obviously all or nothing).

What it does not have: a schema (`upgrade` and `check_schema` have nothing to
do), a timeout (nothing waits), a wake source (`wake_listener` is None: the
master then claims on its poll interval and when told to; the contract allows
it), another process's view (it lives in one) and SQL transactions to join.
Liveness is judged with the caller's `now`, as on SQLite.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from jobd.records import (
    FINISHED_STATES,
    RESCUED,
    Attempt,
    Claim,
    ClaimRequest,
    EnqueueResult,
    Fire,
    FiredJob,
    HealthFacts,
    Job,
    JobState,
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
from jobd.store.contract import InvalidTransition, WakeSource
from jobd.store.fairness import weighted_merge
from jobd.store.memory_tables import (
    QUEUED,
    RUNNING,
    FireRow,
    NodeRow,
    ScheduleRow,
    Tables,
    apply_settles,
    claim_order,
    compact,
    insert_job,
    insert_or_live,
    job_row,
    live_job,
    queued_jobs,
    read_health,
    ready_jobs,
)
from jobd.store.rows import (
    KEEP_STOPPED,
    definition_text,
    job_from_row,
    new_job_record,
    routine_stats,
)

if TYPE_CHECKING:
    from jobd.store.contract import Store

REVISION = "memory"  # what `upgrade` reports: there is no schema to migrate


class MemoryStore:
    """`jobd.store.contract.Store` in memory; see the module docstring."""

    def __init__(self) -> None:
        self.url = "memory://"
        self.dialect = "memory"
        self._lock = threading.Lock()
        self._tables = Tables()
        # The weighted round robin's credit per pool, carried across claims and,
        # as in claims.py, kept outside the transactions.
        self._credit: dict[tuple[tuple[str, ...], tuple[float, ...]], list[float]] = {}

    def describe(self) -> str:
        return "an in-memory store"

    def close(self) -> None:
        """Nothing to release: the tables stay readable."""

    @contextmanager
    def _read(self) -> Iterator[Tables]:
        with self._lock:
            yield self._tables

    @contextmanager
    def _write(self) -> Iterator[Tables]:
        """A transaction: the tables, put back as they were if the block raises."""
        with self._lock:
            before = self._tables.copy()
            try:
                yield self._tables
            except BaseException:
                self._tables = before
                raise

    # -- schema --------------------------------------------------------------

    def check_schema(self) -> None:
        """Always current: the tables are `memory_tables.Tables`."""

    def upgrade(self) -> tuple[str | None, str]:
        return REVISION, REVISION

    # -- producers -----------------------------------------------------------

    def enqueue(self, jobs: list[NewJob], connection: Any = None) -> list[EnqueueResult]:
        if connection is not None:
            raise TypeError("the memory store has no SQL transaction to join")
        if not jobs:
            return []
        with self._write() as db:
            # Jobs without a unique key first, as writes.insert does: the same ids.
            ids = {id(job): insert_job(db, job) for job in jobs if job.unique_key is None}
            results = [
                insert_or_live(db, job)
                if job.unique_key is not None
                else EnqueueResult(new_job_record(ids[id(job)], job), True)
                for job in jobs
            ]
        self.wake({job.queue for job in jobs}, min(job.run_at for job in jobs))
        return results

    def wake(self, queues: set[str], earliest_run_at: float) -> None:
        """No master listens (`wake_listener`)."""

    def wake_listener(self) -> WakeSource | None:
        return None

    # -- the master ----------------------------------------------------------

    def exchange(
        self, node_id: int, settles: list[Settle], queues: tuple[str, ...], limit: int, now: float
    ) -> list[Claim]:
        return self.exchange_many(node_id, settles, [ClaimRequest(queues, limit)], now)[0]

    def exchange_many(
        self, node_id: int, settles: list[Settle], requests: Sequence[ClaimRequest], now: float
    ) -> list[list[Claim]]:
        with self._write() as db:
            apply_settles(db, node_id, settles)
            return [self._claim(db, node_id, request, now) for request in requests]

    def _claim(self, db: Tables, node_id: int, request: ClaimRequest, now: float) -> list[Claim]:
        """claims.Claims.claim: the next ready jobs, marked running on `node_id`."""
        if request.limit <= 0:
            return []
        queues = tuple(request.queues)
        if request.weights is None or len(queues) == 1:
            chosen = ready_jobs(db, queues, now)[: request.limit]
        else:
            candidates = [ready_jobs(db, (queue,), now)[: request.limit] for queue in queues]
            pool = (queues, tuple(request.weights))
            credit = self._credit.setdefault(pool, [0.0] * len(queues))
            chosen = weighted_merge(candidates, request.weights, request.limit, credit)
        claimed = []
        for row in chosen:
            running = replace(
                row,
                state=RUNNING,
                attempts=row.attempts + 1,
                runs=row.runs + 1,
                node_id=node_id,
                started_at=now,
            )
            db.jobs[row.id] = running
            claimed.append(running.claim())
        return claimed

    def queue_load(
        self, queues: tuple[str, ...], now: float, cap: int = 100_000
    ) -> dict[str, QueueLoad]:
        """queries.queue_load: the first `cap` queued jobs of each queue, counted."""
        loads = {}
        with self._read() as db:
            for queue in queues:
                rows = sorted(queued_jobs(db, (queue,)), key=claim_order)[:cap]
                ready = [row.run_at for row in rows if row.run_at <= now]
                oldest = min(ready, default=None)
                loads[queue] = QueueLoad(queue, len(rows), len(ready), oldest, len(rows) >= cap)
        return loads

    def count_queued(self, queues: tuple[str, ...], cap: int = 100_000) -> int:
        """Queued jobs in `queues`, up to `cap` (beside the contract, as in SQLStore)."""
        with self._read() as db:
            return min(sum(1 for _ in queued_jobs(db, queues)), cap)

    # -- nodes ---------------------------------------------------------------

    def register_node(self, name: str, hostname: str, pid: int, now: float) -> int:
        with self._write() as db:
            node_id = db.last_node_id = db.last_node_id + 1
            db.nodes[node_id] = NodeRow(node_id, name, hostname, pid, now, now, None, "{}")
            return node_id

    def heartbeat(self, node_id: int, now: float, info: dict[str, Any]) -> Pulse | None:
        text = compact(info)
        with self._write() as db:
            row = db.nodes.get(node_id)
            if row is None:
                return None
            db.nodes[node_id] = replace(row, heartbeat_at=now, stopped_at=None, info=text)
        return Pulse(row.heartbeat_at, now, row.stopped_at)

    def set_heartbeat(self, node_id: int, at: float) -> None:
        """For tests: move a node's last heartbeat, as `UPDATE nodes SET heartbeat_at`
        does to a SQL store (a node that stopped heartbeating, or whose clock differs)."""
        with self._write() as db:
            db.nodes[node_id] = replace(db.nodes[node_id], heartbeat_at=at)

    def count_rows(self, table: str) -> int:
        """For tests: the rows of `table` ("jobs", "attempts", "nodes", "schedule_fires",
        ...), as `SELECT count(*)` counts them in a SQL store."""
        with self._read() as db:
            return len(getattr(db, {"schedule_fires": "fires"}.get(table, table)))

    def stop_node(self, node_id: int, now: float) -> None:
        with self._write() as db:
            if node_id in db.nodes:
                db.nodes[node_id] = replace(db.nodes[node_id], stopped_at=now)

    def nodes(self, include_stopped: bool = False) -> list[NodeInfo]:
        with self._read() as db:
            return [
                row.record()
                for row in sorted(db.nodes.values(), key=lambda r: r.id)
                if include_stopped or row.stopped_at is None
            ]

    def dead_nodes(self, now: float, timeout: float, exclude: int | None = None) -> list[NodeInfo]:
        """nodes.dead_nodes: stale, and either not stopped or still holding running jobs."""
        with self._read() as db:
            holding = {row.node_id for row in db.jobs.values() if row.state == RUNNING}
            return [
                row.record()
                for row in sorted(db.nodes.values(), key=lambda r: r.id)
                if row.heartbeat_at < now - timeout
                and row.id != exclude
                and (row.stopped_at is None or row.id in holding)
            ]

    def rescue_node(
        self,
        node_id: int,
        now: float,
        decide: Callable[[Claim], Settle],
        timeout: float | None = None,
    ) -> list[Settle]:
        """nodes.rescue: settle what the node runs with `decide`, mark it stopped; once."""
        with self._write() as db:
            row = db.nodes.get(node_id)
            if row is None or (timeout is not None and row.heartbeat_at >= now - timeout):
                return []  # alive again (or never was)
            held = sorted(
                (r for r in db.jobs.values() if r.state == RUNNING and r.node_id == node_id),
                key=lambda r: r.id,
            )
            settles = [decide(job.claim()) for job in held]
            apply_settles(db, node_id, settles)
            if row.stopped_at is None:  # marked as rescued, for `jobd health`
                info = compact({**json.loads(row.info), RESCUED: now})
                db.nodes[node_id] = replace(row, stopped_at=now, info=info)
        return settles

    def cancel_requests(self, node_id: int) -> list[int]:
        with self._read() as db:
            return sorted(
                row.id
                for row in db.jobs.values()
                if row.state == RUNNING and row.node_id == node_id and row.cancel_requested
            )

    # -- routine catalog -----------------------------------------------------

    def register_routines(
        self, catalog: dict[str, dict[str, Any]], now: float, node_id: int | None = None
    ) -> None:
        """catalog.register: the policies, and the node's registration replacing its last."""
        texts = {name: json.dumps(policy, sort_keys=True) for name, policy in catalog.items()}
        with self._write() as db:
            db.routines.update(texts)
            if node_id is None:
                return
            db.routine_nodes = {
                key: at
                for key, at in db.routine_nodes.items()
                if key[1] != node_id and not _long_stopped(db, key[1], now)
            }
            db.routine_nodes.update(((name, node_id), now) for name in catalog)
            live = _live_names(db)
            db.routines = {name: p for name, p in db.routines.items() if name in live}

    def routine_policies(self) -> dict[str, dict[str, Any]]:
        """catalog.policies: what live nodes register, or the last catalog if none does."""
        with self._read() as db:
            live = _live_names(db)
            return {
                name: json.loads(policy)
                for name, policy in db.routines.items()
                if not live or name in live
            }

    def routine_registrations(self) -> dict[str, list[int]]:
        with self._read() as db:
            found: dict[str, list[int]] = {}
            for name, node_id in sorted(db.routine_nodes, key=lambda key: key[1]):
                node = db.nodes.get(node_id)
                if node is not None and node.stopped_at is None:
                    found.setdefault(name, []).append(node_id)
            return found

    # -- people and scripts (queries.py) -------------------------------------

    def get_job(self, job_id: int) -> Job:
        with self._read() as db:
            return job_from_row(job_row(db, job_id))

    def list_jobs(
        self,
        state: str | None = None,
        queue: str | None = None,
        routine: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        with self._read() as db:
            rows = [
                row
                for row in db.jobs.values()
                if (state is None or row.state == state)
                and (queue is None or row.queue == queue)
                and (routine is None or row.routine == routine)
            ]
        rows.sort(key=lambda r: r.id, reverse=True)
        return [job_from_row(row) for row in rows[:limit]]

    def job_attempts(self, job_id: int) -> list[Attempt]:
        with self._read() as db:
            return [replace(a) for a in db.attempts if a.job_id == job_id]

    def retry(self, job_id: int, now: float) -> Job:
        """queries.retry: a failed or cancelled job queued again, with fresh attempts."""
        with self._write() as db:
            row = job_row(db, job_id)
            if row.state not in (JobState.FAILED, JobState.CANCELLED):
                raise InvalidTransition(
                    f"job {job_id} is {row.state}; only failed or cancelled jobs can be retried"
                )
            if row.unique_key is not None and live_job(db, row.unique_key) is not None:
                raise InvalidTransition(
                    f"job {job_id}: a queued or running job already has its unique key"
                )
            row = db.jobs[job_id] = replace(
                row, state=QUEUED, run_at=max(now, row.run_at), attempts=0, started_at=None,
                finished_at=None, node_id=None, cancel_requested=False, result=None,
                error_type=None, error_message=None,
            )  # fmt: skip
        self.wake({row.queue}, row.run_at)
        return job_from_row(row)

    def cancel(self, job_id: int, now: float) -> Job:
        """queries.cancel: a queued job cancelled; a running one asked to stop."""
        with self._write() as db:
            row = job_row(db, job_id)
            if row.state == QUEUED:
                row = replace(row, state=JobState.CANCELLED.value, finished_at=now)
            elif row.state == RUNNING:
                row = replace(row, cancel_requested=True)
            else:
                raise InvalidTransition(
                    f"job {job_id} is {row.state}; only queued or running jobs can be cancelled"
                )
            db.jobs[job_id] = row
        return job_from_row(row)

    def queue_stats(self, now: float | None = None) -> list[QueueStats]:
        counts: dict[str, dict[str, int]] = {}
        oldest: dict[str, float] = {}
        with self._read() as db:
            for row in db.jobs.values():
                by_state = counts.setdefault(row.queue, {})
                by_state[row.state] = by_state.get(row.state, 0) + 1
                if row.state == QUEUED and (now is None or row.run_at <= now):
                    oldest[row.queue] = min(row.run_at, oldest.get(row.queue, row.run_at))
        return [QueueStats(q, counts[q], oldest.get(q)) for q in sorted(counts)]

    def routine_stats(self, since: float, routine: str | None = None) -> list[RoutineStats]:
        with self._read() as db:
            return routine_stats(
                (a.routine, a.outcome, a.started_at, a.finished_at, a.peak_rss, a.cpu_seconds)
                for a in db.attempts
                if a.finished_at >= since and (routine is None or a.routine == routine)
            )

    # -- schedules (schedules.py) --------------------------------------------

    def sync_schedules(
        self,
        definitions: dict[str, dict[str, Any]],
        next_fires: dict[str, float | None],
        now: float,
    ) -> None:
        """The upsert of schedules.py: a new or changed definition starts afresh."""
        texts = {name: definition_text(definition) for name, definition in definitions.items()}
        with self._write() as db:
            stored = db.schedules
            db.schedules = {}
            for name in sorted(texts):
                old = stored.get(name)
                if old is not None and old.definition == texts[name]:
                    db.schedules[name] = old
                elif old is not None:
                    db.schedules[name] = replace(
                        old, definition=texts[name], defined_at=now, fired_until=now,
                        next_fire_at=next_fires.get(name),
                    )  # fmt: skip
                else:
                    db.schedules[name] = ScheduleRow(
                        name, texts[name], now, now, next_fires.get(name)
                    )

    def schedule_states(self) -> list[ScheduleState]:
        with self._read() as db:
            states = []
            for row in sorted(db.schedules.values(), key=lambda r: r.name):
                job = None if row.last_job_id is None else db.jobs.get(row.last_job_id)
                states.append(
                    ScheduleState(
                        name=row.name,
                        definition=json.loads(row.definition),
                        defined_at=row.defined_at,
                        fired_until=row.fired_until,
                        next_fire_at=row.next_fire_at,
                        last_fire_at=row.last_fire_at,
                        last_job_id=row.last_job_id,
                        last_job_state=None if job is None else job.state,
                    )
                )
            return states

    def fire_schedules(
        self, node_id: int | None, fires: list[Fire], progress: list[ScheduleProgress], now: float
    ) -> list[FiredJob]:
        """schedules.fire_schedules: each (schedule, fire_at) once, its job with it."""
        fired: list[FiredJob] = []
        with self._write() as db:
            for fire in sorted(fires, key=lambda f: (f.schedule, f.fire_at)):
                if (fire.schedule, fire.fire_at) in db.fires:
                    continue  # another master inserted it
                job_id = insert_or_live(db, fire.job).job.id
                db.fires[fire.schedule, fire.fire_at] = FireRow(
                    fire.schedule, fire.fire_at, job_id, node_id, now
                )
                fired.append(FiredJob(fire.schedule, fire.fire_at, job_id, fire.job.queue))
            for step in progress:
                row = db.schedules.get(step.name)
                if row is not None and row.fired_until < step.fired_until:  # only forward
                    db.schedules[step.name] = replace(
                        row, fired_until=step.fired_until, next_fire_at=step.next_fire_at
                    )
            for done in fired:  # in fire order: the latest one stays
                row = db.schedules.get(done.schedule)
                if row is not None and (
                    row.last_fire_at is None or row.last_fire_at < done.fire_at
                ):
                    db.schedules[done.schedule] = replace(
                        row, last_fire_at=done.fire_at, last_job_id=done.job_id
                    )
        if fired:
            self.wake({f.queue for f in fired}, min(f.fire_at for f in fired))
        return fired

    # -- retention and health (retention.py) ---------------------------------

    def delete_finished(self, state: str, before: float, limit: int) -> tuple[int, int]:
        if state not in FINISHED_STATES:
            raise ValueError(f"{state!r} is not a finished state")
        with self._write() as db:
            old = [
                row
                for row in db.jobs.values()
                if row.state == state and row.finished_at is not None and row.finished_at < before
            ]
            old.sort(key=lambda r: (r.finished_at, r.id))
            gone = {row.id for row in old[:limit]}
            for job_id in gone:
                del db.jobs[job_id]
            kept = [a for a in db.attempts if a.job_id not in gone]
            removed, db.attempts = len(db.attempts) - len(kept), kept
        return len(gone), removed

    def delete_fires(self, before: float, limit: int) -> int:
        with self._write() as db:
            old = sorted((key for key in db.fires if key[1] < before), key=lambda k: k[1])
            for key in old[:limit]:
                del db.fires[key]
            return len(old[:limit])

    def health_facts(self, now: float, stale_before: float, window_start: float) -> HealthFacts:
        with self._read() as db:
            return read_health(db, now, stale_before, window_start)


if TYPE_CHECKING:
    _checked: Store = MemoryStore()  # mypy: the fake keeps the whole contract


def _live_names(db: Tables) -> set[str]:
    """Routines a node that is not stopped registers (catalog._live_names)."""
    return {
        name
        for name, node_id in db.routine_nodes
        if (node := db.nodes.get(node_id)) is not None and node.stopped_at is None
    }


def _long_stopped(db: Tables, node_id: int, now: float) -> bool:
    node = db.nodes.get(node_id)
    return node is not None and node.stopped_at is not None and node.stopped_at < now - KEEP_STOPPED
