"""The SQLite store on a real full disk: a small tmpfs, mounted for the test.

Mounting needs root; elsewhere the tests are skipped and say why.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobd.store import open_store
from jobd.store.contract import StoreError
from tests.integration.jobs import new_job

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting a small tmpfs to fill needs root"
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs at a fresh directory, unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> None:
    """Write zeros into `directory` until the file system says it is full."""
    chunk = b"\0" * 65536
    with open(directory / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with open(directory / "crumbs", "wb", buffering=0) as crumbs:
        try:
            while True:
                crumbs.write(b"\0")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    assert os.statvfs(directory).f_bavail == 0


def test_opening_a_store_on_a_full_disk_says_the_disk_is_full(small_disk: Path) -> None:
    url = f"sqlite:///{small_disk / 'jobd.db'}"
    setup = open_store(url, timeout=2)
    setup.upgrade()
    setup.enqueue([new_job()])
    setup.close()  # the last connection: SQLite removes the -wal and -shm files
    fill(small_disk)

    store = open_store(url, timeout=2)
    with pytest.raises(StoreError, match=f"the disk holding {small_disk} is full"):
        store.check_schema()
    store.close()


def test_an_enqueue_on_a_full_disk_says_the_disk_is_full(small_disk: Path) -> None:
    url = f"sqlite:///{small_disk / 'jobd.db'}"
    store = open_store(url, timeout=2)
    store.upgrade()
    fill(small_disk)
    big = "x" * 200_000  # more than the WAL file has room for
    with pytest.raises(StoreError, match=f"the disk holding {small_disk} is full"):
        store.enqueue([new_job(args=json.dumps([big])) for _ in range(20)])
    store.close()


def test_upgrading_a_store_on_a_full_disk_says_the_disk_is_full(small_disk: Path) -> None:
    fill(small_disk)
    store = open_store(f"sqlite:///{small_disk / 'jobd.db'}", timeout=2)
    with pytest.raises(StoreError, match=f"the disk holding {small_disk} is full"):
        store.upgrade()
    store.close()
