"""Schema versions: Alembic migrations, and the cheap check the master runs.

`check_revision` reads `alembic_version` directly and compares it with
`SCHEMA_REVISION`, so starting the daemon or a CLI command never imports
Alembic (0.16 s and 7 MB); only `jobd db upgrade` does.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, inspect, text

from jobd.store.contract import SchemaError
from jobd.store.schema import SCHEMA_REVISION, metadata

MIGRATIONS = Path(__file__).with_name("migrations")


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def check_revision(conn: Connection, database: str) -> None:
    revision = current_revision(conn)
    if revision is None:
        raise SchemaError(f"{database} has no jobd schema: run `jobd db upgrade`")
    if revision != SCHEMA_REVISION:
        older = revision.isdigit() and revision < SCHEMA_REVISION
        if not older and revision not in known_revisions():
            raise SchemaError(f"{database}: {unknown_revision(revision)}")
        raise SchemaError(
            f"{database} has schema revision {revision}, older than this jobd's "
            f"{SCHEMA_REVISION}: run `jobd db upgrade`"
        )
    missing = sorted(set(metadata.tables) - set(inspect(conn).get_table_names()))
    if missing:
        raise SchemaError(
            f"{database} is at revision {revision} but has no table {', '.join(missing)}: "
            "restore it from a backup (`jobd db upgrade` does not recreate dropped tables)"
        )


def alembic_config(conn: Connection) -> object:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def known_revisions() -> set[str]:
    """The revisions this jobd's migrations know (their files are named for them)."""
    return {path.name.split("_", 1)[0] for path in (MIGRATIONS / "versions").glob("[0-9]*.py")}


def unknown_revision(revision: str) -> str:
    if revision.isdigit() and revision > SCHEMA_REVISION:
        return (
            f"the database has schema revision {revision}, newer than this jobd "
            f"({SCHEMA_REVISION}): upgrade jobd, it cannot be downgraded from here"
        )
    return (
        f"the database has schema revision {revision!r}, which no jobd release made: "
        "it is not a jobd database, or was altered by hand"
    )


UPGRADE_LOCK = 7300001  # the PostgreSQL advisory lock key of `jobd db upgrade`


def upgrade(conn: Connection) -> tuple[str | None, str]:
    """Migrate to the head revision in one transaction; (before, after).

    Concurrent upgrades are safe: SQLite's BEGIN IMMEDIATE and a PostgreSQL
    advisory lock (held here around the whole upgrade, and taken again in
    env.py for migrations run by Alembic's own command line) let one run at
    a time, and the second finds nothing left to do, and says so.
    """
    from alembic import command

    postgres = conn.dialect.name == "postgresql"
    if postgres:
        with conn.begin():  # a session lock: it outlives the transactions below
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": UPGRADE_LOCK})
    try:
        with conn.begin():
            before = current_revision(conn) if inspect(conn).has_table("alembic_version") else None
        if before is not None and before not in known_revisions():
            raise SchemaError(unknown_revision(before))
        command.upgrade(alembic_config(conn), "head")  # type: ignore[arg-type]
        conn.commit()
        with conn.begin():
            after = current_revision(conn)
    except BaseException:
        if postgres:
            conn.invalidate()  # ends the session, and the lock with it
        raise
    if postgres:
        with conn.begin():
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": UPGRADE_LOCK})
    assert after is not None
    return before, after
