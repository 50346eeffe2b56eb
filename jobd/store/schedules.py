"""The schedules' statements: sync the configured schedules, insert fires once.

Exactly once rests on the primary key of `schedule_fires`, (schedule,
fire_at): every master computes the same fire times, and the second insert
of a fire does nothing (ON CONFLICT DO NOTHING on both dialects; on
PostgreSQL it waits for the first transaction and then does nothing). The
job is inserted only when its fire was, in the same transaction, so a
fire and its job exist together or not at all.

The statements run in the `Database`'s transactions, the fires' jobs are
inserted through `Writes` (writes.py); `SQLStore` (sql.py) calls these
functions and wakes the masters after the commit.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from jobd.records import Fire, FiredJob, ScheduleProgress, ScheduleState
from jobd.store.database import Database
from jobd.store.rows import definition_text
from jobd.store.schema import jobs, schedule_fires, schedules
from jobd.store.writes import Writes


def sync_schedules(
    db: Database,
    definitions: dict[str, dict[str, Any]],
    next_fires: dict[str, float | None],
    now: float,
) -> None:
    rows = [
        {
            "name": name,
            "definition": definition_text(definitions[name]),
            "defined_at": now,
            "fired_until": now,
            "next_fire_at": next_fires.get(name),
        }
        for name in sorted(definitions)  # one lock order for every master
    ]
    with db.transaction() as conn:
        conn.execute(delete(schedules).where(schedules.c.name.not_in(sorted(definitions))))
        if rows:
            conn.execute(_upsert(db.dialect), rows)


def _upsert(dialect: str) -> Any:
    stmt = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(schedules)
    new = stmt.excluded
    changed = schedules.c.definition != new.definition

    def if_changed(column: str) -> Any:
        return case((changed, new[column]), else_=schedules.c[column])

    return stmt.on_conflict_do_update(
        index_elements=[schedules.c.name],
        set_={
            "definition": new.definition,
            "defined_at": if_changed("defined_at"),
            "fired_until": if_changed("fired_until"),
            "next_fire_at": if_changed("next_fire_at"),
        },
    )


def schedule_states(db: Database) -> list[ScheduleState]:
    stmt = (
        select(schedules, jobs.c.state)
        .select_from(schedules.outerjoin(jobs, jobs.c.id == schedules.c.last_job_id))
        .order_by(schedules.c.name)
    )
    with db.transaction(write=False) as conn:
        return [
            ScheduleState(
                name=row.name,
                definition=json.loads(row.definition),
                defined_at=row.defined_at,
                fired_until=row.fired_until,
                next_fire_at=row.next_fire_at,
                last_fire_at=row.last_fire_at,
                last_job_id=row.last_job_id,
                last_job_state=row.state,
            )
            for row in conn.execute(stmt)
        ]


def fire_schedules(
    db: Database,
    writes: Writes,
    node_id: int | None,
    fires: list[Fire],
    progress: list[ScheduleProgress],
    now: float,
) -> list[FiredJob]:
    fired: list[FiredJob] = []
    with db.transaction() as conn:
        # One lock order for every master (PostgreSQL waits on a conflicting
        # fire until its inserter commits): fires, then schedule rows, sorted.
        for fire in sorted(fires, key=lambda f: (f.schedule, f.fire_at)):
            job_id = _insert_fire(db.dialect, writes, conn, fire, node_id, now)
            if job_id is not None:
                fired.append(FiredJob(fire.schedule, fire.fire_at, job_id, fire.job.queue))
        for step in sorted(progress, key=lambda p: p.name):
            _advance(conn, step)
        latest: dict[str, FiredJob] = {}
        for done in fired:
            latest[done.schedule] = done  # fires are in order: the last one wins
        for name in sorted(latest):
            _record_last(conn, latest[name])
    return fired


def _insert_fire(
    dialect: str, writes: Writes, conn: Connection, fire: Fire, node_id: int | None, now: float
) -> int | None:
    """The new job's id, or None when the fire was already there."""
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    stmt = (
        insert(schedule_fires)
        .values(schedule=fire.schedule, fire_at=fire.fire_at, node_id=node_id, inserted_at=now)
        .on_conflict_do_nothing()
        .returning(schedule_fires.c.fire_at)
    )
    if conn.execute(stmt).first() is None:
        return None
    job_id = writes.insert(conn, [fire.job])[0].job.id
    conn.execute(
        update(schedule_fires)
        .where(schedule_fires.c.schedule == fire.schedule, schedule_fires.c.fire_at == fire.fire_at)
        .values(job_id=job_id)
    )
    return job_id


def _advance(conn: Connection, step: ScheduleProgress) -> None:
    # Only forward: a master whose clock is behind must not move it back.
    conn.execute(
        update(schedules)
        .where(schedules.c.name == step.name, schedules.c.fired_until < step.fired_until)
        .values(fired_until=step.fired_until, next_fire_at=step.next_fire_at)
    )


def _record_last(conn: Connection, fired: FiredJob) -> None:
    last = schedules.c.last_fire_at
    conn.execute(
        update(schedules)
        .where(schedules.c.name == fired.schedule, (last.is_(None)) | (last < fired.fire_at))
        .values(last_fire_at=fired.fire_at, last_job_id=fired.job_id)
    )
