"""Alembic environment: runs on the connection jobd hands over (see migrate.py)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from jobd.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)

with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # One upgrade at a time when several hosts run `jobd db upgrade` at once.
        connection.execute(text("SELECT pg_advisory_xact_lock(7300001)"))  # migrate.UPGRADE_LOCK
    context.run_migrations()
