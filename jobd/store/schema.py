"""The store's tables, declared once for both dialects.

Times are UTC epoch seconds in double-precision columns: one representation
in SQLite and PostgreSQL, no time-zone or parsing cost on the hot path, and
`jobd` formats them for people. Arguments, results and policies are JSON
text (never pickle: a row must not be able to run code).

Every index that the hot path touches is partial, so it holds only the rows
that can still move: the claim index holds queued jobs only and the running
index running jobs only. Claiming the next job is then an index range read
whose cost does not grow with the number of finished or queued jobs.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

# The head of the migration history (jobd/store/migrations/versions); the
# master compares it with `alembic_version` without importing Alembic.
SCHEMA_REVISION = "0005"

metadata = MetaData()

# SQLite needs exactly INTEGER for a rowid alias; PostgreSQL gets BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")

QUEUED = text("state = 'queued'")
RUNNING = text("state = 'running'")
LIVE_UNIQUE = text("unique_key IS NOT NULL AND state IN ('queued', 'running')")
FINISHED = text("state IN ('succeeded', 'failed', 'cancelled')")

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("routine", String(255), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("args", Text, nullable=False, server_default="[]"),
    Column("kwargs", Text, nullable=False, server_default="{}"),
    Column("result", Text),
    # The count toward max_attempts: given back by an uncounted put-back, reset
    # by a manual retry. `runs` only grows: the attempt number (revision 0004).
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("runs", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False),
    Column("unique_key", String(255)),
    Column("enqueued_at", Float, nullable=False),
    Column("run_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("node_id", Id),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("error_type", String(255)),
    Column("error_message", Text),
    sqlite_autoincrement=True,  # ids are never reused (revision 0003)
)

Index(
    "ix_jobs_claim",
    jobs.c.queue,
    jobs.c.priority.desc(),
    jobs.c.run_at,
    jobs.c.id,
    sqlite_where=QUEUED,
    postgresql_where=QUEUED,
)
Index("ix_jobs_running", jobs.c.node_id, sqlite_where=RUNNING, postgresql_where=RUNNING)
Index(
    "ix_jobs_unique",
    jobs.c.unique_key,
    unique=True,
    sqlite_where=LIVE_UNIQUE,
    postgresql_where=LIVE_UNIQUE,
)
Index(
    "ix_jobs_finished",
    jobs.c.state,
    jobs.c.finished_at,
    sqlite_where=FINISHED,
    postgresql_where=FINISHED,
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job_id", Id, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("routine", String(255), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("node_id", Id),
    Column("worker_pid", Integer),
    Column("started_at", Float),
    Column("finished_at", Float, nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("error_type", String(255)),
    Column("error_message", Text),
    Column("traceback", Text),
    Column("cpu_seconds", Float),
    Column("peak_rss", BigInteger),
    sqlite_autoincrement=True,  # ids are never reused (revision 0003)
)
Index("ix_attempts_job", attempts.c.job_id)
Index("ix_attempts_routine", attempts.c.routine, attempts.c.finished_at)

nodes = Table(
    "nodes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("stopped_at", Float),
    Column("info", Text, nullable=False, server_default="{}"),
    sqlite_autoincrement=True,  # ids are never reused (revision 0003)
)
LIVE_NODE = text("stopped_at IS NULL")
Index("ix_nodes_live", nodes.c.heartbeat_at, sqlite_where=LIVE_NODE, postgresql_where=LIVE_NODE)

# The policies workers registered, so that a client that never imported a
# routine still routes it to the right queue with the right attempts.
routines = Table(
    "routines",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("policy", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Which node registered which routine, and when (revision 0005): the catalog
# is what live nodes register (store/catalog.py).
routine_nodes = Table(
    "routine_nodes",
    metadata,
    Column("routine", String(255), primary_key=True),
    Column("node_id", Id, primary_key=True),
    Column("registered_at", Float, nullable=False),
)
Index("ix_routine_nodes_node", routine_nodes.c.node_id)

# One row per configured schedule (revision 0002). `fired_until` is the
# cursor: fires up to it are handled (enqueued or skipped as too old);
# `definition` is the schedule's JSON, and a new one moves the cursor to the
# time it was stored, so a changed schedule never "catches up" its past.
schedules = Table(
    "schedules",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("definition", Text, nullable=False),
    Column("defined_at", Float, nullable=False),
    Column("fired_until", Float, nullable=False),
    Column("next_fire_at", Float),
    Column("last_fire_at", Float),
    Column("last_job_id", Id),
)

# One row per fire. The primary key is the unique (schedule, fire_at) key
# that makes a fire enqueued once however many masters insert it.
schedule_fires = Table(
    "schedule_fires",
    metadata,
    Column("schedule", String(255), primary_key=True),
    Column("fire_at", Float, primary_key=True),
    Column("job_id", Id),
    Column("node_id", Id),
    Column("inserted_at", Float, nullable=False),
)
Index("ix_schedule_fires_fire_at", schedule_fires.c.fire_at)
