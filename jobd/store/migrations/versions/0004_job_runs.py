"""jobs.runs: a job's run number, which only grows (the attempt number).

`jobs.attempts` counts toward max_attempts: an uncounted put-back (a drain
that interrupted the job, a job that waited in a dead worker's pipe) gives
it back and `jobd jobs retry` resets it, so as the attempt number it named
two runs alike. `runs` grows at every claim and is never given back or
reset: the attempt number recorded in `attempts`, and the token a settle
must match.

Existing jobs start from the highest attempt number recorded for them, or
their count if higher (a running job's current run is not recorded yet).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("runs", sa.Integer(), nullable=False, server_default="0"))
    greatest = "greatest" if op.get_bind().dialect.name == "postgresql" else "max"
    op.execute(
        "UPDATE jobs SET runs = "
        f"{greatest}(attempts, coalesce((SELECT max(a.attempt) FROM attempts a "
        "WHERE a.job_id = jobs.id), 0))"
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("runs")
