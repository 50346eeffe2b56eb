"""The chaos run's small disk for SQLite: a tmpfs it mounts, and a ballast to fill it.

The database (and its -wal and -shm files) lives alone on a tmpfs sized for
the run, so that the `disk_full` fault can fill the file system for real,
with a ballast file, and give the space back by deleting it. The ledger and
the nodes' files stay on the ordinary disk: a full disk must cost jobd its
store, not cost the audit its evidence. Mounting needs root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from pathlib import Path

MIB = 1 << 20
CHUNKS = (MIB, 64 << 10, 4 << 10, 512, 1)  # smaller and smaller, to the last byte


def disk_size(jobs: int) -> int:
    """Bytes for `jobs` jobs and their attempts, the WAL and room to spare.

    Measured: a 100,000-job chaos run used at most 38.8 MiB (jobs, attempts,
    their indexes and a 4 MiB WAL), under 400 bytes a job; 1 KiB a job allows
    for that more than twice over, and 32 MiB for a WAL that checkpoints
    could not keep short."""
    return 32 * MIB + jobs * 1024


class SmallDisk:
    """A tmpfs of `size` bytes at `mount`; `fill()` and `empty()` for the fault."""

    def __init__(self, mount: Path, size: int) -> None:
        self.mount = mount
        self.size = size
        self.ballast = mount / "ballast"
        self.mounted = False
        self.peak_used = 0  # bytes in use at the fullest check (the ballast not counted)

    def __enter__(self) -> SmallDisk:
        self.mount.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.mount)],
            check=True,
            capture_output=True,
        )
        self.mounted = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.mount)], check=False, capture_output=True)
            self.mounted = False

    def used(self) -> int:
        """Bytes in use, the ballast not counted."""
        stat = os.statvfs(self.mount)
        ballast = self.ballast.stat().st_size if self.ballast.exists() else 0
        used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize - ballast
        self.peak_used = max(self.peak_used, used)
        return used

    def fill(self, database: Path | None = None) -> int:
        """Write the ballast until the file system has no byte left; its size.

        The WAL of `database` is first checkpointed and truncated to nothing
        (as SQLite does itself when the last connection closes): a WAL kept at
        its full size has room for a few hundred more transactions, and the
        fault would bite only when a short one happened to outlast it."""
        if database is not None:
            truncate_wal(database)
        self.used()
        written = 0
        with open(self.ballast, "ab", buffering=0) as ballast:
            for size in CHUNKS:
                chunk = b"\0" * size
                while True:
                    try:
                        count = ballast.write(chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
                    written += count or 0
        return written

    def empty(self) -> None:
        """The space back: the ballast deleted."""
        with contextlib.suppress(FileNotFoundError):
            self.ballast.unlink()

    @property
    def full(self) -> bool:
        return self.ballast.exists()


def truncate_wal(database: Path) -> None:
    """Checkpoint `database` and truncate its WAL, if no reader is in the way."""
    with (
        contextlib.suppress(sqlite3.Error),
        contextlib.closing(sqlite3.connect(database, timeout=0.5, isolation_level=None)) as conn,
    ):
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
