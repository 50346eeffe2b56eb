"""The SQLite store on a real full disk: a small tmpfs, mounted for the test.

Mounting needs root; elsewhere the tests are skipped and say why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobd.store import open_store
from jobd.store.contract import StoreError
from tests.integration.jobs import new_job
from tests.smalldisk import SmallDisk, needs_root, small_disk

pytestmark = needs_root


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 2 MiB tmpfs at a fresh directory, unmounted at the end."""
    with small_disk(tmp_path / "disk", 2 << 20) as mounted:
        yield mounted


def test_opening_a_store_on_a_full_disk_says_the_disk_is_full(disk: SmallDisk) -> None:
    url = f"sqlite:///{disk.mount / 'jobd.db'}"
    setup = open_store(url, timeout=2)
    setup.upgrade()
    setup.enqueue([new_job()])
    setup.close()  # the last connection: SQLite removes the -wal and -shm files
    disk.fill()

    store = open_store(url, timeout=2)
    with pytest.raises(StoreError, match=f"the disk holding {disk.mount} is full"):
        store.check_schema()
    store.close()


def test_an_enqueue_on_a_full_disk_says_the_disk_is_full(disk: SmallDisk) -> None:
    url = f"sqlite:///{disk.mount / 'jobd.db'}"
    store = open_store(url, timeout=2)
    store.upgrade()
    disk.fill()
    big = "x" * 200_000  # more than the WAL file has room for
    with pytest.raises(StoreError, match=f"the disk holding {disk.mount} is full"):
        store.enqueue([new_job(args=json.dumps([big])) for _ in range(20)])
    store.close()


def test_upgrading_a_store_on_a_full_disk_says_the_disk_is_full(disk: SmallDisk) -> None:
    disk.fill()
    store = open_store(f"sqlite:///{disk.mount / 'jobd.db'}", timeout=2)
    with pytest.raises(StoreError, match=f"the disk holding {disk.mount} is full"):
        store.upgrade()
    store.close()
