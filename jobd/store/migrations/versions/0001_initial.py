"""The initial schema: jobs, attempts, nodes, routines.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
QUEUED = sa.text("state = 'queued'")
RUNNING = sa.text("state = 'running'")
LIVE_UNIQUE = sa.text("unique_key IS NOT NULL AND state IN ('queued', 'running')")
FINISHED = sa.text("state IN ('succeeded', 'failed', 'cancelled')")
LIVE_NODE = sa.text("stopped_at IS NULL")


def _index(
    name: str, columns: list[str | sa.TextClause], where: sa.TextClause, unique: bool = False
) -> None:
    op.create_index(
        name,
        "jobs" if not name.startswith("ix_nodes") else "nodes",
        columns,
        unique=unique,
        sqlite_where=where,
        postgresql_where=where,
    )


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("routine", sa.String(255), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("args", sa.Text, nullable=False, server_default="[]"),
        sa.Column("kwargs", sa.Text, nullable=False, server_default="{}"),
        sa.Column("result", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("unique_key", sa.String(255)),
        sa.Column("enqueued_at", sa.Float, nullable=False),
        sa.Column("run_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("node_id", Id),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("error_type", sa.String(255)),
        sa.Column("error_message", sa.Text),
    )
    _index("ix_jobs_claim", ["queue", sa.text("priority DESC"), "run_at", "id"], QUEUED)
    _index("ix_jobs_running", ["node_id"], RUNNING)
    _index("ix_jobs_unique", ["unique_key"], LIVE_UNIQUE, unique=True)
    _index("ix_jobs_finished", ["state", "finished_at"], FINISHED)

    op.create_table(
        "attempts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("job_id", Id, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("routine", sa.String(255), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("node_id", Id),
        sa.Column("worker_pid", sa.Integer),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("error_type", sa.String(255)),
        sa.Column("error_message", sa.Text),
        sa.Column("traceback", sa.Text),
        sa.Column("cpu_seconds", sa.Float),
        sa.Column("peak_rss", sa.BigInteger),
    )
    op.create_index("ix_attempts_job", "attempts", ["job_id"])
    op.create_index("ix_attempts_routine", "attempts", ["routine", "finished_at"])

    op.create_table(
        "nodes",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
        sa.Column("stopped_at", sa.Float),
        sa.Column("info", sa.Text, nullable=False, server_default="{}"),
    )
    _index("ix_nodes_live", ["heartbeat_at"], LIVE_NODE)

    op.create_table(
        "routines",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("routines", "nodes", "attempts", "jobs"):
        op.drop_table(table)
