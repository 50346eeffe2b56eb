"""An exchange whose COMMIT got no answer: did it happen? (PostgreSQL)

When the connection breaks while COMMIT is in flight (the server restarts,
`pg_terminate_backend`, a network cut), the client cannot tell whether the
transaction committed. The master treats the call as failed: it keeps its
settles to send again and never learns of the jobs the exchange claimed.
If the commit did happen, those jobs would stay `running` on a node that is
alive and heartbeating, never to be rescued: lost. So the store remembers
such an exchange (its settles and claims) and, before the next exchange,
finds out in a transaction of its own:

- it locks one row the exchange wrote (a claimed job, else a settled one),
  waiting for the old transaction to end if the server still has it open;
- the row says which: a claimed job `running` on this node with the claimed
  attempt, or a settled job no longer `running` on this node, means it
  committed (no other transaction can have produced either: the run number
  is new at every claim);
- if it committed, the claimed jobs go back to `queued`, uncounted (no
  worker ever saw them), and the settles the master sends again (the very
  same objects: it keeps them on failure) are skipped until an exchange
  commits, since applying them twice would record their attempts twice.

The verdict is kept once reached, so a failure of the resolving
transaction itself repeats only its idempotent put-back.

SQLite needs none of this: a failed COMMIT there did not commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, select

from jobd.records import Claim, JobState, Settle
from jobd.store.database import Database
from jobd.store.schema import jobs
from jobd.store.writes import Writes


@dataclass
class Doubt:
    node_id: int
    settles: list[Settle]
    claims: list[Claim]
    committed: bool | None = None  # the verdict, once reached


def resolve(db: Database, writes: Writes, doubt: Doubt) -> Doubt:
    """Reach the verdict and put back what the doubtful exchange claimed.

    Returns the resolved doubt; raises StoreError (the doubt stays) when the
    store cannot be asked yet.
    """
    with db.transaction() as conn:
        if doubt.committed is None:
            doubt.committed = _committed(conn, doubt)
        if doubt.committed and doubt.claims:
            back = [Settle(c.id, JobState.QUEUED, None, uncount=True) for c in doubt.claims]
            writes.apply_settles(conn.connection.dbapi_connection, doubt.node_id, back)
    return doubt


def _committed(conn: Connection, doubt: Doubt) -> bool:
    if doubt.claims:
        first = doubt.claims[0]
        row = conn.execute(_locked(first.id)).first()
        return (
            row is not None
            and row.state == JobState.RUNNING
            and row.node_id == doubt.node_id
            and row.runs == first.attempt
        )
    if doubt.settles:
        row = conn.execute(_locked(doubt.settles[0].job_id)).first()
        return row is None or not (row.state == JobState.RUNNING and row.node_id == doubt.node_id)
    return False


def _locked(job_id: int) -> Select[Any]:
    # Waits (up to the store's lock_timeout) for the doubtful transaction to end.
    return (
        select(jobs.c.state, jobs.c.node_id, jobs.c.runs)
        .where(jobs.c.id == job_id)
        .with_for_update()
    )
