"""The real `jobd run` in a subprocess, as a test harness.

The daemon runs in a new session (its own process group, killed whole in a
finalizer), with NOTIFY_SOCKET pointing at a datagram socket this harness
owns, so tests wait for READY=1 and STOPPING=1 like systemd does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

import jobd
from jobd.store import open_store
from tests.waiting import wait_until

HERE = Path(__file__).parent
JOBD = [sys.executable, "-c", "from jobd.cli import run; run()"]


class Daemon:
    def __init__(
        self, tmp_path: Path, database: str | None = None, **sections: dict[str, Any]
    ) -> None:
        self.dir = tmp_path
        self.database = database or f"sqlite:///{tmp_path / 'jobd.db'}"
        self.events = str(tmp_path / "events.jsonl")
        self.config = tmp_path / "jobd.toml"
        merged: dict[str, dict[str, Any]] = {
            "jobd": {
                "database": self.database,
                "modules": ["jobd_test_routines"],
                "pythonpath": [str(HERE)],
                "log_level": "debug",
            },
            "pool": {"min_workers": 2, "max_workers": 2, "graceful_timeout": "10s"},
            "store": {"poll_interval": "1s", "heartbeat_interval": "200ms"},
        }
        for name, values in sections.items():
            merged.setdefault(name, {}).update(values)
        self.config.write_text(_toml(merged))
        self.process: subprocess.Popen[bytes] | None = None
        self.notices: list[str] = []
        self._notify: socket.socket | None = None
        self.stderr_path = tmp_path / "jobd.stderr"
        self._clients: list[jobd.Client] = []

    # -- lifecycle -------------------------------------------------------------

    def upgrade(self) -> None:
        store = open_store(self.database)
        store.upgrade()
        store.close()

    def start(
        self,
        wait_ready: bool = True,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        command: list[str] | None = None,
    ) -> Daemon:
        self.upgrade()
        notify_path = str(self.dir / f"notify-{len(self.notices)}-{time.monotonic_ns()}.sock")
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(notify_path)
        self._notify.setblocking(False)
        self.notices = []
        full_env = {
            **os.environ,
            "NOTIFY_SOCKET": notify_path,
            "JOBD_TEST_HOOK_EVENTS": self.events,
        }
        full_env.update(env or {})
        full_env.pop("JOBD_CONFIG", None)
        self.process = subprocess.Popen(
            [*(command or JOBD), "-c", str(self.config), "run"],
            start_new_session=True,
            cwd=cwd,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr_path.open("ab"),
        )
        if wait_ready:
            self.wait_notice("READY=1")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def read_notices(self) -> list[str]:
        assert self._notify is not None
        while True:
            try:
                self.notices.extend(self._notify.recv(65536).decode().split("\n"))
            except BlockingIOError:
                return self.notices

    def wait_notice(self, line: str, timeout: float = 20.0) -> None:
        def seen() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"jobd exited with {self.process.returncode} before {line!r}:\n{self.stderr()}"
                )
            return line in self.read_notices()

        wait_until(seen, timeout, what=f"{line} from jobd")

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"jobd did not exit within {timeout}s:\n{self.stderr()}") from None

    def stop(self, timeout: float = 20.0) -> int:
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill_all(self) -> None:
        """Finalizer: the whole process group, whatever state it is in."""
        for client in self._clients:
            client.close()
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        if self._notify is not None:
            self._notify.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    # -- looking inside ----------------------------------------------------------

    def client(self) -> jobd.Client:
        client = jobd.Client(self.database)
        self._clients.append(client)
        return client

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """`jobd -c <this daemon's config> ARGV...`, run to its end."""
        return subprocess.run(
            [*JOBD, "-c", str(self.config), *argv],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={k: v for k, v in os.environ.items() if k != "JOBD_CONFIG"},
        )

    def workers(self) -> list[psutil.Process]:
        """The master's live worker processes (its children titled as workers)."""
        found = []
        for child in psutil.Process(self.pid).children():
            with contextlib.suppress(psutil.Error):
                if child.status() != psutil.STATUS_ZOMBIE and "jobd: worker" in " ".join(
                    child.cmdline()
                ):
                    found.append(child)
        return found

    def events_seen(self, event: str | None = None) -> list[dict[str, Any]]:
        if not os.path.exists(self.events):
            return []
        with open(self.events) as handle:
            lines = [json.loads(line) for line in handle if line.strip()]
        return [line for line in lines if event is None or line["event"] == event]

    def wait_event(self, event: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        return wait_until(
            lambda: (found := self.events_seen(event)) and len(found) >= count and found,
            timeout,
            what=f"{count} x {event}",
        )

    def wait_state(self, job_id: int, *states: str, timeout: float = 15.0) -> jobd.Job:
        client = self.client()
        return wait_until(
            lambda: (job := client.get(job_id)).state in states and job,
            timeout,
            what=f"job {job_id} in {states}",
        )

    def gate(self, name: str = "gate") -> str:
        """A closed gate: jobs given its path wait until `open_gate(path)`."""
        return str(self.dir / name)


def open_gate(path: str) -> None:
    Path(path).touch()


def _toml(data: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)
