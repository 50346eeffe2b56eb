"""Nodes: registration, heartbeats, and the rescue of dead nodes' jobs.

A node is one master. It records a heartbeat every `store.heartbeat_interval`;
a node whose heartbeat is older than `store.node_timeout` is dead, and any
other node puts its running jobs back (supervisor/node.py decides where each
goes). On PostgreSQL, where nodes run on several hosts, heartbeats are
stamped and judged by the database server's clock, so hosts whose clocks
disagree never see a live node as dead; SQLite serves one host and uses the
caller's `now`.

A rescue happens once, however many nodes try at the same moment: the
rescuer first locks the dead node's row, re-checking in the same statement
that its heartbeat is still stale (`FOR UPDATE SKIP LOCKED` on PostgreSQL;
SQLite's write lock serialises anyway). A second rescuer skips the locked
row and finds nothing to do; a node that heartbeats meanwhile holds the
lock itself or has a fresh heartbeat, and is left alone. Then the running
jobs are settled and the node marked stopped in the same transaction.

A node that comes back (its master was stopped, or cut off from the
database, for longer than the window) finds itself marked stopped; its next
heartbeat clears that, and its settles for the jobs taken from it change
nothing: they only apply to jobs still `running` on that node in the
attempt they report (the SETTLE statement in writes.py).

The statements run in the `Database`'s transactions; `SQLStore` (sql.py)
calls these functions for the contract's node methods.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    cast,
    func,
    insert,
    select,
    update,
)

from jobd.records import RESCUED, Claim, NodeInfo, Pulse, Settle
from jobd.store.claims import CLAIM_COLUMNS, IS_RUNNING
from jobd.store.database import Database
from jobd.store.schema import jobs, nodes
from jobd.store.writes import Writes


def clock(db: Database, now: float) -> ColumnElement[Any] | float:
    """The time heartbeats are stamped and judged with: the server's on PostgreSQL."""
    if db.dialect == "postgresql":
        return cast(func.extract("epoch", func.clock_timestamp()), Float)
    return now


def register(db: Database, name: str, hostname: str, pid: int, now: float) -> int:
    stmt = (
        insert(nodes)
        .values(name=name, hostname=hostname, pid=pid, started_at=now, heartbeat_at=clock(db, now))
        .returning(nodes.c.id)
    )
    with db.transaction() as conn:
        return int(conn.execute(stmt).scalar_one())


def heartbeat(db: Database, node_id: int, now: float, info: dict[str, Any]) -> Pulse | None:
    """Record that the node lives (clearing a stop another node recorded); None if
    there is no such node."""
    before: Select[Any] = select(nodes.c.heartbeat_at, nodes.c.stopped_at).where(
        nodes.c.id == node_id
    )
    if db.dialect == "postgresql":
        before = before.with_for_update()
    stamp = (
        update(nodes)
        .where(nodes.c.id == node_id)
        .values(
            heartbeat_at=clock(db, now),
            stopped_at=None,
            info=json.dumps(info, separators=(",", ":")),
        )
        .returning(nodes.c.heartbeat_at)
    )
    with db.transaction() as conn:
        row = conn.execute(before).first()
        if row is None:
            return None
        at = float(conn.execute(stamp).scalar_one())
    return Pulse(float(row.heartbeat_at), at, row.stopped_at)


def _stale(db: Database, now: float, timeout: float) -> ColumnElement[bool]:
    return nodes.c.heartbeat_at < clock(db, now) - timeout


def dead_nodes(db: Database, now: float, timeout: float, exclude: int | None) -> list[NodeInfo]:
    """Nodes whose heartbeat is older than `timeout` that are not stopped, or that
    still hold running jobs (a master that stopped without recording them).

    Two index-driven reads, since every master runs this every heartbeat and
    stopped nodes accumulate: live nodes through the partial index on them,
    and the few nodes that running jobs name through the running-jobs index.
    """
    stale = _stale(db, now, timeout)
    holding = select(jobs.c.node_id).where(IS_RUNNING)
    live = select(nodes).where(nodes.c.stopped_at.is_(None), stale)
    stopped = select(nodes).where(
        nodes.c.id.in_(holding.scalar_subquery()), nodes.c.stopped_at.is_not(None), stale
    )
    if exclude is not None:
        live, stopped = live.where(nodes.c.id != exclude), stopped.where(nodes.c.id != exclude)
    with db.transaction(write=False) as conn:
        rows = [*conn.execute(live), *conn.execute(stopped)]
    return [
        NodeInfo(
            r.id, r.name, r.hostname, r.pid, r.started_at, r.heartbeat_at, r.stopped_at,
            json.loads(r.info or "{}"),
        )
        for r in sorted(rows, key=lambda r: r.id)
    ]  # fmt: skip


def rescue(
    db: Database,
    node_id: int,
    now: float,
    decide: Callable[[Claim], Settle],
    timeout: float | None,
    writes: Writes,
) -> list[Settle]:
    """Settle a dead node's running jobs with `decide` and mark it stopped, once.

    `timeout`: rescue only if the node's heartbeat is still older than this
    (checked under the row lock); None when death is proven otherwise (its
    master's pid is gone).
    """
    claim_node: Select[Any] = select(nodes.c.stopped_at, nodes.c.info).where(nodes.c.id == node_id)
    if timeout is not None:
        claim_node = claim_node.where(_stale(db, now, timeout))
    running = select(*CLAIM_COLUMNS).where(IS_RUNNING, jobs.c.node_id == node_id)
    if db.dialect == "postgresql":
        claim_node = claim_node.with_for_update(skip_locked=True)
        running = running.with_for_update(skip_locked=True)
    with db.transaction() as conn:
        found = conn.execute(claim_node).first()
        if found is None:
            return []  # alive again, or another node is rescuing it right now
        held = [Claim._make(row) for row in conn.execute(running)]
        settles = [decide(claim) for claim in held]
        if settles:
            writes.apply_settles(conn.connection.dbapi_connection, node_id, settles)
        if found.stopped_at is None:
            # Marked as rescued (not stopped cleanly) for `jobd health`; its next
            # heartbeat, if it comes back, replaces the mark.
            info = {**json.loads(found.info or "{}"), RESCUED: now}
            conn.execute(
                update(nodes)
                .where(nodes.c.id == node_id)
                .values(stopped_at=now, info=json.dumps(info, separators=(",", ":")))
            )
    return settles


def stop(db: Database, node_id: int, now: float) -> None:
    with db.transaction() as conn:
        conn.execute(update(nodes).where(nodes.c.id == node_id).values(stopped_at=now))


def list_nodes(db: Database, include_stopped: bool) -> list[NodeInfo]:
    stmt = select(nodes).order_by(nodes.c.id)
    if not include_stopped:
        stmt = stmt.where(nodes.c.stopped_at.is_(None))
    with db.transaction(write=False) as conn:
        return [
            NodeInfo(
                r.id, r.name, r.hostname, r.pid, r.started_at, r.heartbeat_at, r.stopped_at,
                json.loads(r.info or "{}"),
            )
            for r in conn.execute(stmt)
        ]  # fmt: skip


def cancel_requests(db: Database, node_id: int) -> list[int]:
    """Running jobs of this node that someone asked to cancel."""
    stmt = select(jobs.c.id).where(IS_RUNNING, jobs.c.node_id == node_id, jobs.c.cancel_requested)
    with db.transaction(write=False) as conn:
        return list(conn.execute(stmt).scalars())
