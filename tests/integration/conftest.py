"""Fixtures of the integration tests: a migrated store on each dialect, a node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobd.store import open_store
from jobd.store.sql import SQLStore
from tests.integration.jobs import NOW


@pytest.fixture
def store(db_url: str) -> Iterator[SQLStore]:
    s = open_store(db_url, timeout=5)
    s.upgrade()
    yield s
    s.close()


@pytest.fixture
def node(store: SQLStore) -> int:
    return store.register_node("test", "host-a", 1234, NOW)
