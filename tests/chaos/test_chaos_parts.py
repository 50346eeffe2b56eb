"""The chaos suite's parts on their own: the enqueue audit, the error kinds,
and the small disk the disk_full fault fills (a real tmpfs, root only)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from jobd.store import open_store
from jobd.store.contract import StoreError
from tests.integration.jobs import new_job

BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

from chaos_disk import SmallDisk  # noqa: E402
from chaos_producer import Produced, audit_enqueues, error_kind  # noqa: E402


def row(job: int, key: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(id=job, unique_key=key)


def test_the_enqueue_audit_finds_missing_duplicate_and_unexplained_jobs() -> None:
    produced = Produced(keys={"k1": 3, "k2": 4, "k3": 9}, retried_keys={"k2"})
    rows = [row(1), row(2), row(3, "k1"), row(4, "k2"), row(5, "k2"), row(6, "k3"), row(7)]
    found = audit_enqueues([1, 2, 3, 4, 9], rows, produced)
    assert found.missing == [9]  # told of, not in the store
    assert found.duplicates == 1 and found.jobs == [1, 2, 3, 4, 9, 5]  # k2 sent again
    assert found.unexplained == [
        "job 6 (k3) enqueued by no one",  # k3 never failed: a second job is no retry's
        "job 7 (no key) enqueued by no one",
    ]


def test_an_audit_of_what_was_enqueued_finds_nothing() -> None:
    produced = Produced(keys={"k1": 2})
    found = audit_enqueues([1, 2], [row(1), row(2, "k1")], produced)
    assert (found.missing, found.duplicates, found.unexplained) == ([], 0, [])


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("x.db: the disk holding /x is full (database or disk is full)", "disk full"),
        ("postgresql://h/db: connection failed: Connection refused", "server down"),
        ("postgresql://h/db: server closed the connection unexpectedly", "server down"),
        ("sqlite:///x/jobd.db: database is locked", "database locked"),
        ("something else", "other: something else"),
    ],
)
def test_enqueue_errors_are_counted_by_kind(message: str, kind: str) -> None:
    assert error_kind(message) == kind


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs to fill needs root")
def test_the_small_disk_fills_to_the_last_byte_and_empties(tmp_path: Path) -> None:
    with SmallDisk(tmp_path / "disk", 8 << 20) as disk:
        url = f"sqlite:///{disk.mount / 'jobd.db'}"
        store = open_store(url, timeout=2)
        try:
            store.upgrade()
            store.enqueue([new_job()])
            assert disk.fill(disk.mount / "jobd.db") > 0 and disk.full
            assert os.statvfs(disk.mount).f_bavail == 0
            with pytest.raises(StoreError, match="is full"):  # the truncated WAL cannot grow
                store.enqueue([new_job()])
            disk.empty()
            assert not disk.full
            store.enqueue([new_job()])
            assert 0 < disk.used() <= disk.peak_used
        finally:
            store.close()
    assert not disk.mounted
