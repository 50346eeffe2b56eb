"""Fixtures of the integration tests: a store on each dialect (migrated), or in
memory where a test asks for it too (`also_in_memory`, jobs.py); a node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobd.store import open_store
from jobd.store.contract import Store
from jobd.store.memory import MemoryStore
from tests.conftest import MEMORY_URL
from tests.integration.jobs import NOW


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s: Store = MemoryStore() if db_url == MEMORY_URL else open_store(db_url, timeout=5)
    s.upgrade()
    yield s
    s.close()


@pytest.fixture
def node(store: Store) -> int:
    return store.register_node("test", "host-a", 1234, NOW)
