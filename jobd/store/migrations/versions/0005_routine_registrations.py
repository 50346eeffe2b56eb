"""routine_nodes: which node registered which routine, and when.

The routine catalog kept every routine any node ever registered, so after
a deploy removed one, producers could still enqueue it and `jobd routines`
still listed it. With one row per (routine, node), the catalog is what
live nodes register (store/catalog.py).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "routine_nodes",
        sa.Column("routine", sa.String(255), primary_key=True),
        sa.Column("node_id", Id, primary_key=True),
        sa.Column("registered_at", sa.Float, nullable=False),
    )
    op.create_index("ix_routine_nodes_node", "routine_nodes", ["node_id"])


def downgrade() -> None:
    op.drop_index("ix_routine_nodes_node", table_name="routine_nodes")
    op.drop_table("routine_nodes")
