"""Fixtures shared by every test directory.

PostgreSQL tests run against the real server on 127.0.0.1:5432 (database
`test`), each in a schema of its own that is dropped afterwards. Where no
server answers they are skipped with the reason, unless
JOBD_TEST_POSTGRES=required (as .ci/run sets it): then they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BASE = os.environ.get("JOBD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin() -> object:
    import psycopg

    return psycopg.connect(PG_BASE, connect_timeout=3, autocommit=True)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobd.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, private schema."""
    try:
        admin = _pg_admin()
    except Exception as exc:
        if os.environ.get("JOBD_TEST_POSTGRES") == "required":
            pytest.fail(f"PostgreSQL required but not reachable at {PG_BASE}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_BASE}: {exc}")
    schema = f"jobd_test_{uuid.uuid4().hex[:12]}"
    with admin:  # type: ignore[attr-defined]
        admin.execute(f"CREATE SCHEMA {schema}")  # type: ignore[attr-defined]
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        # A new connection: the test may have restarted the server meanwhile.
        with _pg_admin() as admin:  # type: ignore[attr-defined]
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


MEMORY_URL = "memory://"  # jobd.store.memory.MemoryStore's


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Both dialects: the store contract runs on each. A test that holds for the
    in-memory store too asks for "memory" as well (tests/integration/jobs.py)."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    if request.param == "memory":
        return MEMORY_URL
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def own_pg() -> Iterator[object]:
    """A PostgreSQL cluster of this test's own (tests/pgcluster.py), dropped afterwards."""
    from tests.pgcluster import OwnCluster

    why = OwnCluster.available()
    if why is not None:
        if os.environ.get("JOBD_TEST_POSTGRES") == "required":
            pytest.fail(f"PostgreSQL required but no cluster of a test's own: {why}")
        pytest.skip(why)
    cluster = OwnCluster()
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.drop()
