"""A PostgreSQL cluster of a test's own, for tests that stop and start the server.

The shared server on 5432 is never restarted by a test; `pg_createcluster`
makes a throwaway cluster (trust authentication, loopback only) on a free
port, which the test stops and starts at will and the fixture drops.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid

import psycopg


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnCluster:
    """One `pg_createcluster` cluster: `url`, `stop()`, `start()`, `drop()`."""

    VERSION = "15"

    def __init__(self) -> None:
        self.name = f"jobd_test_{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres?connect_timeout=2"

    @staticmethod
    def available() -> str | None:
        """Why no cluster can be made here, or None."""
        if shutil.which("pg_createcluster") is None:
            return "pg_createcluster is not installed"
        if os.geteuid() != 0:
            return "making a PostgreSQL cluster needs root"
        return None

    def _run(self, *argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=60)

    def create(self) -> None:
        self._run(
            "pg_createcluster", self.VERSION, self.name, "-p", str(self.port),
            "-o", "fsync=off",
            "--", "--auth=trust",
        )  # fmt: skip
        self.start()

    def start(self) -> None:
        self._ctl("start")
        with psycopg.connect(self.url, connect_timeout=10):
            pass

    def stop(self) -> None:
        """Immediate shutdown: connections are cut as in a crash or an outage."""
        self._ctl("stop", "-m", "immediate")

    def _ctl(self, action: str, *options: str) -> None:
        self._run(
            "pg_ctlcluster", "--skip-systemctl-redirect", self.VERSION, self.name, action,
            *options,
        )  # fmt: skip

    def drop(self) -> None:
        subprocess.run(
            ["pg_dropcluster", "--stop", self.VERSION, self.name],
            check=False, capture_output=True, timeout=60,
        )  # fmt: skip
