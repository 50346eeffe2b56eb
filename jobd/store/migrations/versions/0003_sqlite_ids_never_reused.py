"""SQLite: job, attempt and node ids are never reused (AUTOINCREMENT).

Without it SQLite hands out max(id) + 1, so after a cleanup deleted the newest
jobs the next job got an id that a producer, a log line or an attempt row
already used for another job. PostgreSQL's sequences never go back: nothing
to do there.

SQLite cannot add AUTOINCREMENT to a table, so each table is rebuilt: created
again from its own stored DDL with the keyword added, its rows copied with
their ids (which also seeds sqlite_sequence with the largest), and its indexes
created again from their stored DDL (partial indexes stay partial).

Revision ID: 0003
Revises: 0002
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("jobs", "attempts", "nodes")
KEY = re.compile(r"(\bid\s+INTEGER\s+NOT\s+NULL)(.*?)(PRIMARY KEY \(id\))", re.S | re.I)


def _with_autoincrement(ddl: str) -> str:
    """`CREATE TABLE t (id INTEGER NOT NULL, ..., PRIMARY KEY (id))` with the key inline."""
    match = KEY.search(ddl)
    if match is None:
        raise RuntimeError(f"unexpected table definition: {ddl}")
    inline = f"{match.group(1)} PRIMARY KEY AUTOINCREMENT{match.group(2)}"
    rest = ddl[match.end() :]
    return ddl[: match.start()] + inline.rstrip().rstrip(",") + rest


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for table in TABLES:
        (ddl,) = bind.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"),
            {"t": table},
        ).one()
        if "AUTOINCREMENT" in ddl.upper():
            continue
        indexes = [
            row.sql
            for row in bind.execute(
                sa.text(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t "
                    "AND sql IS NOT NULL"
                ),
                {"t": table},
            )
        ]
        new = _with_autoincrement(ddl).replace(f"CREATE TABLE {table}", "CREATE TABLE rebuilt", 1)
        bind.execute(sa.text(new))
        bind.execute(sa.text(f"INSERT INTO rebuilt SELECT * FROM {table}"))
        bind.execute(sa.text(f"DROP TABLE {table}"))
        bind.execute(sa.text(f"ALTER TABLE rebuilt RENAME TO {table}"))
        for index in indexes:
            bind.execute(sa.text(index))


def downgrade() -> None:
    """Nothing to undo that matters: AUTOINCREMENT tables work as before."""
