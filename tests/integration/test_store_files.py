"""Who may read a SQLite store's files: the database, its -wal and its -shm."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobd.store import open_store
from jobd.store.contract import Store, StoreError
from tests.integration.jobs import new_job


@pytest.fixture(autouse=True)
def lax_umask() -> Iterator[None]:
    """The common default, which would leave the files readable by everyone."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(database: Path) -> dict[str, int]:
    """The permission bits of the database and of its -wal and -shm files."""
    files = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in files}


def open_and_write(database: Path) -> Store:
    """Create the store and write to it, then look at its files while it is open
    (SQLite removes -wal and -shm when the last connection closes)."""
    store = open_store(f"sqlite:///{database}")
    store.upgrade()
    store.enqueue([new_job()])
    return store


def test_a_new_database_and_its_wal_and_shm_are_the_owners_only(tmp_path: Path) -> None:
    database = tmp_path / "jobd.db"
    store = open_and_write(database)
    try:
        assert modes(database) == {"jobd.db": 0o600, "jobd.db-wal": 0o600, "jobd.db-shm": 0o600}
    finally:
        store.close()


def test_in_a_group_shared_directory_the_group_may_read_and_write(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o2770)  # setgid: files take the directory's group
    database = shared / "jobd.db"
    store = open_and_write(database)
    try:
        assert modes(database) == {"jobd.db": 0o660, "jobd.db-wal": 0o660, "jobd.db-shm": 0o660}
    finally:
        store.close()


def test_an_existing_databases_mode_is_left_as_it_is(tmp_path: Path) -> None:
    database = tmp_path / "jobd.db"
    open_store(f"sqlite:///{database}").upgrade()
    database.chmod(0o640)  # the operator's choice
    store = open_and_write(database)
    try:
        assert modes(database)["jobd.db"] == 0o640
    finally:
        store.close()


def test_upgrade_makes_the_databases_directory_or_says_why_not(tmp_path: Path) -> None:
    made = open_store(f"sqlite:///{tmp_path / 'new' / 'dir' / 'jobd.db'}")
    made.upgrade()
    made.close()
    assert (tmp_path / "new" / "dir" / "jobd.db").is_file()
    (tmp_path / "file").write_text("")
    blocked = open_store(f"sqlite:///{tmp_path / 'file' / 'sub' / 'jobd.db'}")
    with pytest.raises(StoreError, match=r"cannot create .*file/sub: Not a directory"):
        blocked.upgrade()
    blocked.close()
