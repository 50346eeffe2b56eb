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
attempt they report (the SETTLE statement in sql.py).

These are methods of `SQLStore` (sql.py delegates here), as in schedules.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    cast,
    func,
    insert,
    literal_column,
    select,
    update,
)

from jobd.records import RESCUED, Claim, NodeInfo, Pulse, Settle
from jobd.store.schema import jobs, nodes

if TYPE_CHECKING:
    from jobd.store.sql import SQLStore


def clock(store: SQLStore, now: float) -> ColumnElement[Any] | float:
    """The time heartbeats are stamped and judged with: the server's on PostgreSQL."""
    if store.dialect == "postgresql":
        return cast(func.extract("epoch", func.clock_timestamp()), Float)
    return now


def register(store: SQLStore, name: str, hostname: str, pid: int, now: float) -> int:
    stmt = (
        insert(nodes)
        .values(
            name=name, hostname=hostname, pid=pid, started_at=now, heartbeat_at=clock(store, now)
        )
        .returning(nodes.c.id)
    )
    with store._transaction() as conn:
        return int(conn.execute(stmt).scalar_one())


def heartbeat(store: SQLStore, node_id: int, now: float, info: dict[str, Any]) -> Pulse | None:
    """Record that the node lives (clearing a stop another node recorded); None if
    there is no such node."""
    before: Select[Any] = select(nodes.c.heartbeat_at, nodes.c.stopped_at).where(
        nodes.c.id == node_id
    )
    if store.dialect == "postgresql":
        before = before.with_for_update()
    stamp = (
        update(nodes)
        .where(nodes.c.id == node_id)
        .values(
            heartbeat_at=clock(store, now),
            stopped_at=None,
            info=json.dumps(info, separators=(",", ":")),
        )
        .returning(nodes.c.heartbeat_at)
    )
    with store._transaction() as conn:
        row = conn.execute(before).first()
        if row is None:
            return None
        at = float(conn.execute(stamp).scalar_one())
    return Pulse(float(row.heartbeat_at), at, row.stopped_at)


def _stale(store: SQLStore, now: float, timeout: float) -> ColumnElement[bool]:
    return nodes.c.heartbeat_at < clock(store, now) - timeout


def dead_nodes(store: SQLStore, now: float, timeout: float, exclude: int | None) -> list[NodeInfo]:
    """Nodes whose heartbeat is older than `timeout` that are not stopped, or that
    still hold running jobs (a master that stopped without recording them).

    Two index-driven reads, since every master runs this every heartbeat and
    stopped nodes accumulate: live nodes through the partial index on them,
    and the few nodes that running jobs name through the running-jobs index.
    """
    stale = _stale(store, now, timeout)
    # Literal 'running', so SQLite can use the partial index on running jobs.
    holding = select(jobs.c.node_id).where(jobs.c.state == literal_column("'running'"))
    live = select(nodes).where(nodes.c.stopped_at.is_(None), stale)
    stopped = select(nodes).where(
        nodes.c.id.in_(holding.scalar_subquery()), nodes.c.stopped_at.is_not(None), stale
    )
    if exclude is not None:
        live, stopped = live.where(nodes.c.id != exclude), stopped.where(nodes.c.id != exclude)
    with store._transaction(write=False) as conn:
        rows = [*conn.execute(live), *conn.execute(stopped)]
    return [
        NodeInfo(
            r.id, r.name, r.hostname, r.pid, r.started_at, r.heartbeat_at, r.stopped_at,
            json.loads(r.info or "{}"),
        )
        for r in sorted(rows, key=lambda r: r.id)
    ]  # fmt: skip


def rescue(
    store: SQLStore,
    node_id: int,
    now: float,
    decide: Callable[[Claim], Settle],
    timeout: float | None,
    running: Select[Any],
) -> list[Settle]:
    """Settle a dead node's running jobs with `decide` and mark it stopped, once.

    `timeout`: rescue only if the node's heartbeat is still older than this
    (checked under the row lock); None when death is proven otherwise (its
    master's pid is gone).
    """
    claim_node: Select[Any] = select(nodes.c.stopped_at, nodes.c.info).where(nodes.c.id == node_id)
    if timeout is not None:
        claim_node = claim_node.where(_stale(store, now, timeout))
    if store.dialect == "postgresql":
        claim_node = claim_node.with_for_update(skip_locked=True)
        running = running.with_for_update(skip_locked=True)
    with store._transaction() as conn:
        found = conn.execute(claim_node).first()
        if found is None:
            return []  # alive again, or another node is rescuing it right now
        held = [Claim._make(row) for row in conn.execute(running)]
        settles = [decide(claim) for claim in held]
        if settles:
            store._apply_settles(conn, conn.connection.dbapi_connection, node_id, settles)
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
