"""A small tmpfs the tests of a full disk mount and fill (root only).

The one implementation is the chaos run's (benchmarks/chaos_disk.py): a
tmpfs of a given size, a ballast that fills it to the last byte (after
truncating a database's WAL, which would otherwise leave room for more
transactions) and `empty()` that gives the space back.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

from chaos_disk import SmallDisk  # noqa: E402

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting a small tmpfs to fill needs root"
)


@contextmanager
def small_disk(at: Path, size: int) -> Iterator[SmallDisk]:
    """A tmpfs of `size` bytes mounted at `at` (made), unmounted at the end."""
    with SmallDisk(at, size) as disk:
        yield disk


__all__ = ["SmallDisk", "needs_root", "small_disk"]
