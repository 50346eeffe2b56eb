"""The routine catalog: what live nodes register.

Each master records the routines its template registered (with their
policies) when the template is ready, at start and after each reload. The
catalog is what producers check names against and `jobd routines` lists,
so it must follow deploys: a routine no live node registers any more is
not in it.

- `routines` holds each name's policy (the latest registration's);
  `routine_nodes` one row per (routine, node) that registered it.
- A node's registration replaces its earlier one, so a reload that drops a
  routine drops it for that node.
- A name is in the catalog while a live node (not stopped) registers it:
  during a rolling deploy on PostgreSQL, a routine that one live node of
  the old deploy still registers stays, and goes when the last of them is
  stopped or restarted with the new code. Each registration deletes the
  policies of names no live node registers any more.
- While no live node has registered anything (the only master is between
  a stop and its restart, or the catalog was recorded without a node, as
  before revision 0005), the catalog is the last one recorded: a producer
  is not refused routines only because the master is restarting.

Registrations of a stopped node stay until it has been stopped for a day
(`KEEP_STOPPED`), since a node declared dead may come back and it does not
register again until its next reload.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from jobd.store.database import Database
from jobd.store.rows import KEEP_STOPPED
from jobd.store.schema import nodes, routine_nodes, routines


def _live_names() -> Any:
    return (
        select(routine_nodes.c.routine)
        .join(nodes, nodes.c.id == routine_nodes.c.node_id)
        .where(nodes.c.stopped_at.is_(None))
    )


def register(
    db: Database, catalog: dict[str, dict[str, Any]], now: float, node_id: int | None
) -> None:
    """Record `catalog` (name -> policy), registered by `node_id` if given."""
    dialect_insert = sqlite.insert if db.dialect == "sqlite" else postgresql.insert
    upsert = dialect_insert(routines)
    upsert = upsert.on_conflict_do_update(
        index_elements=[routines.c.name],
        set_={"policy": upsert.excluded.policy, "updated_at": upsert.excluded.updated_at},
    )
    rows = [
        {"name": name, "policy": json.dumps(policy, sort_keys=True), "updated_at": now}
        for name, policy in catalog.items()
    ]
    with db.transaction() as conn:
        if rows:
            conn.execute(upsert, rows)
        if node_id is None:
            return
        conn.execute(delete(routine_nodes).where(routine_nodes.c.node_id == node_id))
        if rows:
            conn.execute(
                insert(routine_nodes),
                [{"routine": name, "node_id": node_id, "registered_at": now} for name in catalog],
            )
        long_stopped = select(nodes.c.id).where(nodes.c.stopped_at < now - KEEP_STOPPED)
        conn.execute(delete(routine_nodes).where(routine_nodes.c.node_id.in_(long_stopped)))
        conn.execute(delete(routines).where(routines.c.name.not_in(_live_names())))


def policies(db: Database) -> dict[str, dict[str, Any]]:
    """The catalog: name -> policy of the routines live nodes register, or the last
    recorded catalog while no live node has registered any."""
    with db.transaction(write=False) as conn:
        live = set(conn.execute(_live_names()).scalars())
        recorded = conn.execute(select(routines.c.name, routines.c.policy))
        return {name: json.loads(policy) for name, policy in recorded if not live or name in live}


def registrations(db: Database) -> dict[str, list[int]]:
    """Per routine in the catalog, the live nodes that register it (ids, sorted)."""
    with db.transaction(write=False) as conn:
        rows = conn.execute(
            select(routine_nodes.c.routine, routine_nodes.c.node_id)
            .join(nodes, nodes.c.id == routine_nodes.c.node_id)
            .where(nodes.c.stopped_at.is_(None))
            .order_by(routine_nodes.c.node_id)
        )
        found: dict[str, list[int]] = {}
        for name, node_id in rows:
            found.setdefault(name, []).append(int(node_id))
        return found
