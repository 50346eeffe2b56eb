"""Schedules and their fires.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("defined_at", sa.Float, nullable=False),
        sa.Column("fired_until", sa.Float, nullable=False),
        sa.Column("next_fire_at", sa.Float),
        sa.Column("last_fire_at", sa.Float),
        sa.Column("last_job_id", Id),
    )
    # The primary key is the unique (schedule, fire_at) key: a fire is
    # inserted once however many masters try.
    op.create_table(
        "schedule_fires",
        sa.Column("schedule", sa.String(255), primary_key=True),
        sa.Column("fire_at", sa.Float, primary_key=True),
        sa.Column("job_id", Id),
        sa.Column("node_id", Id),
        sa.Column("inserted_at", sa.Float, nullable=False),
    )
    op.create_index("ix_schedule_fires_fire_at", "schedule_fires", ["fire_at"])


def downgrade() -> None:
    for table in ("schedule_fires", "schedules"):
        op.drop_table(table)
