"""The in-memory store's tables (memory.py) and the statements its methods share.

A table is a dict of frozen rows named like the columns of its SQL table
(schema.py), so `rows.job_from_row` reads a job row as it reads a SQL one; a
write replaces rows, never changes one in place, which is what lets
`Tables.copy` be a shallow copy and a failed write put the old tables back.
Each statement below names the SQL one it stands for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from jobd.records import (
    NOT_FAILURES,
    Attempt,
    Claim,
    EnqueueResult,
    HealthFacts,
    JobState,
    NewJob,
    NodeInfo,
    Settle,
)
from jobd.store.contract import JobNotFound, StoreError
from jobd.store.rows import job_from_row, new_job_record

QUEUED, RUNNING = JobState.QUEUED.value, JobState.RUNNING.value
LIVE = (QUEUED, RUNNING)  # the states in which a unique key is taken (ix_jobs_unique)
ORPHANS_SHOWN = 100  # as retention.py


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# -- the tables: one frozen row per record, replaced (never changed) by a write ----------


@dataclass(frozen=True)
class JobRow:
    """A row of `jobs`, under the column names `job_from_row` reads."""

    id: int
    routine: str
    queue: str
    state: str
    priority: int
    args: str
    kwargs: str
    result: str | None
    attempts: int
    max_attempts: int
    unique_key: str | None
    enqueued_at: float
    run_at: float
    started_at: float | None
    finished_at: float | None
    node_id: int | None
    cancel_requested: bool
    error_type: str | None
    error_message: str | None
    runs: int = 0  # the attempt number: grows at every claim, never given back (0004)

    def claim(self) -> Claim:
        """The row as the claim statement returns it (claims.CLAIM_COLUMNS)."""
        return Claim(
            self.id, self.routine, self.queue, self.priority, self.runs, self.max_attempts,
            self.args, self.kwargs, self.enqueued_at, self.run_at, self.attempts,
        )  # fmt: skip


def claim_order(row: JobRow) -> tuple[int, float, int]:
    """ix_jobs_claim: priority first, then run_at, then id."""
    return (-row.priority, row.run_at, row.id)


@dataclass(frozen=True)
class NodeRow:
    id: int
    name: str
    hostname: str
    pid: int
    started_at: float
    heartbeat_at: float
    stopped_at: float | None
    info: str  # JSON, as stored

    def record(self, info: bool = True) -> NodeInfo:
        return NodeInfo(
            self.id, self.name, self.hostname, self.pid, self.started_at, self.heartbeat_at,
            self.stopped_at, json.loads(self.info) if info else {},
        )  # fmt: skip


@dataclass(frozen=True)
class ScheduleRow:
    name: str
    definition: str  # definition_text
    defined_at: float
    fired_until: float
    next_fire_at: float | None
    last_fire_at: float | None = None
    last_job_id: int | None = None


@dataclass(frozen=True)
class FireRow:
    schedule: str
    fire_at: float
    job_id: int
    node_id: int | None
    inserted_at: float


@dataclass
class Tables:
    jobs: dict[int, JobRow] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)  # copies, in insertion (id) order
    nodes: dict[int, NodeRow] = field(default_factory=dict)
    routines: dict[str, str] = field(default_factory=dict)  # name -> policy JSON
    # (routine, node id) -> registered_at: the routine_nodes table (revision 0005)
    routine_nodes: dict[tuple[str, int], float] = field(default_factory=dict)
    schedules: dict[str, ScheduleRow] = field(default_factory=dict)
    fires: dict[tuple[str, float], FireRow] = field(default_factory=dict)
    last_job_id: int = 0  # ids are never reused (AUTOINCREMENT, revision 0003)
    last_node_id: int = 0

    def copy(self) -> Tables:
        """The tables as they are: rows are never changed in place, so shallow copies do."""
        return Tables(
            dict(self.jobs), list(self.attempts), dict(self.nodes), dict(self.routines),
            dict(self.routine_nodes), dict(self.schedules), dict(self.fires), self.last_job_id,
            self.last_node_id,
        )  # fmt: skip


# -- the statements MemoryStore's methods share ----------------------------------


def job_row(db: Tables, job_id: int) -> JobRow:
    row = db.jobs.get(job_id)
    if row is None:
        raise JobNotFound(job_id)
    return row


def queued_jobs(db: Tables, queues: tuple[str, ...] | None) -> Iterator[JobRow]:
    """Queued jobs (of `queues`, or all): what ix_jobs_claim holds."""
    for row in db.jobs.values():
        if row.state == QUEUED and (queues is None or row.queue in queues):
            yield row


def ready_jobs(db: Tables, queues: tuple[str, ...], now: float) -> list[JobRow]:
    """The ready jobs of `queues`, in claim order."""
    return sorted((row for row in queued_jobs(db, queues) if row.run_at <= now), key=claim_order)


def node_alive(db: Tables, node_id: int | None, stale_before: float) -> bool:
    """A known node, not stopped, that heartbeated since `stale_before`."""
    node = None if node_id is None else db.nodes.get(node_id)
    return node is not None and node.stopped_at is None and node.heartbeat_at >= stale_before


def live_job(db: Tables, unique_key: str) -> JobRow | None:
    """The queued or running job holding `unique_key` (ix_jobs_unique allows one)."""
    for row in db.jobs.values():
        if row.unique_key == unique_key and row.state in LIVE:
            return row
    return None


def insert_job(db: Tables, job: NewJob) -> int:
    """INSERT INTO jobs (rows.insert_row); fails like the unique index on a live key."""
    if job.unique_key is not None and live_job(db, job.unique_key) is not None:
        raise StoreError(f"integrity: unique key {job.unique_key!r} is taken by a live job")
    db.last_job_id += 1
    db.jobs[db.last_job_id] = JobRow(
        id=db.last_job_id, routine=job.routine, queue=job.queue, state=QUEUED,
        priority=job.priority, args=job.args_json, kwargs=job.kwargs_json, result=None,
        attempts=0, max_attempts=job.max_attempts, unique_key=job.unique_key,
        enqueued_at=job.enqueued_at, run_at=job.run_at, started_at=None, finished_at=None,
        node_id=None, cancel_requested=False, error_type=None, error_message=None,
    )  # fmt: skip
    return db.last_job_id


def insert_or_live(db: Tables, job: NewJob) -> EnqueueResult:
    """writes._insert_unique (and a plain insert for a job without a key): a live job
    with the same key is returned instead of a new one."""
    live = None if job.unique_key is None else live_job(db, job.unique_key)
    if live is not None:
        return EnqueueResult(job_from_row(live), False)
    return EnqueueResult(new_job_record(insert_job(db, job), job), True)


def apply_settles(db: Tables, node_id: int, settles: list[Settle]) -> None:
    """writes.apply_settles: each SETTLE in turn, then the follow-ups, then the attempts.

    A settle moves its job only while the job runs on `node_id` in the attempt
    it reports; its follow-up and its attempt are inserted either way (the
    attempt is a fact, even from a node that was declared dead meanwhile).
    """
    for s in settles:
        row = db.jobs.get(s.job_id)
        a = s.attempt
        if row is None or row.state != RUNNING or row.node_id != node_id:
            continue
        if a is not None and a.attempt != row.runs:  # the run it reports, the token
            continue
        queued = s.state is JobState.QUEUED
        db.jobs[row.id] = replace(
            row,
            state=s.state.value,
            result=s.result_json,
            run_at=row.run_at if s.run_at is None else s.run_at,
            finished_at=None if queued or a is None else a.finished_at,
            error_type=None if a is None else a.error_type,
            error_message=None if a is None else a.error_message,
            attempts=row.attempts - 1 if s.uncount else row.attempts,
            cancel_requested=row.cancel_requested if queued else False,
        )
    for s in settles:
        if s.follow_up is not None:
            insert_job(db, s.follow_up)
    db.attempts.extend(replace(s.attempt) for s in settles if s.attempt is not None)


def read_health(db: Tables, now: float, stale_before: float, window_start: float) -> HealthFacts:
    """retention.health_facts: live nodes, the oldest ready job per queue, running jobs
    of dead nodes, the attempts of the window, and the nodes lost in it."""
    nodes = sorted(db.nodes.values(), key=lambda r: r.id)
    oldest: dict[str, float] = {}
    for row in queued_jobs(db, None):
        if row.run_at <= now:
            oldest[row.queue] = min(row.run_at, oldest.get(row.queue, row.run_at))
    orphaned = [
        (job.id, job.node_id)
        for job in sorted(db.jobs.values(), key=lambda r: r.id)
        if job.state == RUNNING and not node_alive(db, job.node_id, stale_before)
    ]
    recent = [a for a in db.attempts if a.finished_at >= window_start]
    stopped = [
        row for row in nodes if row.stopped_at is not None and row.stopped_at >= window_start
    ]
    # Not replaced: no newer node of its name on its host (a restart).
    kept = [
        row
        for row in stopped
        if not any(
            o.hostname == row.hostname and o.name == row.name and o.id > row.id for o in nodes
        )
    ]
    return HealthFacts(
        nodes=[row.record(info=False) for row in nodes if row.stopped_at is None],
        oldest_ready=oldest,
        orphaned=orphaned[:ORPHANS_SHOWN],
        orphaned_count=len(orphaned),
        attempts=len(recent),
        failures=sum(1 for a in recent if a.outcome not in NOT_FAILURES),
        lost=[node for node in map(NodeRow.record, kept) if node.rescued_at is not None],
    )
