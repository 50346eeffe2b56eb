"""Waking masters at once when a job is enqueued into a SQLite store.

SQLite has no LISTEN/NOTIFY, and polling would put a floor under latency.
So each master binds a Unix datagram socket in a directory beside the
database (`jobd.db.wake/<pid>.sock`) and every enqueue sends one small
datagram to each socket there after its commit. A datagram is fire and
forget: a full or vanished socket costs the producer nothing, and the
master's poll interval remains the backstop for anything missed.

The message is `<earliest run_at> <queue>[,<queue>...]` so a master can
ignore queues it does not serve and arm a timer for delayed jobs.

Socket paths are limited to 107 bytes; a longer directory is reached as
`/proc/self/fd/<dirfd>/<name>`, which Linux resolves for bind and sendto.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time

_MAX_PATH = 100
LOOK_EVERY = 0.05  # seconds between checks for masters that started or stopped
RECENT = 1.0  # a directory changed this recently may change again within its mtime tick


def wake_dir(database: str) -> str:
    return database + ".wake"


def _address(directory: str, dir_fd: int, name: str) -> str:
    path = os.path.join(directory, name)
    return path if len(path) < _MAX_PATH else f"/proc/self/fd/{dir_fd}/{name}"


class WakeListener:
    """The master's end: a non-blocking datagram socket to select on."""

    def __init__(self, database: str) -> None:
        self.directory = wake_dir(database)
        os.makedirs(self.directory, mode=0o770, exist_ok=True)
        self._remove_stale()
        self.name = f"{os.getpid()}.sock"
        self._dir_fd = os.open(self.directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        address = _address(self.directory, self._dir_fd, self.name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.directory, self.name))
        self._sock.bind(address)
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self, at_most: int | None = None) -> list[tuple[float, list[str]]]:
        """The wake-ups waiting on the socket, up to `at_most`: (earliest run_at,
        queues). Only the read that finds the socket empty raises: the master
        reads one datagram, claims, and reads the rest after."""
        wakeups: list[tuple[float, list[str]]] = []
        while at_most is None or len(wakeups) < at_most:
            try:
                data = self._sock.recv(4096)
            except BlockingIOError:
                return wakeups
            run_at, _, queues = data.decode("utf-8", "replace").partition(" ")
            try:
                wakeups.append((float(run_at), queues.split(",")))
            except ValueError:
                continue
        return wakeups

    def check(self) -> bool:
        """A local socket cannot go silently deaf: it is there while we are."""
        return True

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.directory, self.name))
        os.close(self._dir_fd)

    def _remove_stale(self) -> None:
        """Sockets left by masters that died without cleaning up."""
        for entry in os.listdir(self.directory):
            pid = entry.removesuffix(".sock")
            if pid.isdigit() and not _pid_alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.directory, entry))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Waker:
    """The producer's end. Keeps one socket; re-lists the directory when it changes."""

    def __init__(self, database: str) -> None:
        self.directory = wake_dir(database)
        self._sock: socket.socket | None = None
        self._dir_fd = -1
        self._mtime = -1.0
        self._targets: list[str] = []
        self._next_look = 0.0
        self._pid = os.getpid()

    def wake(self, queues: set[str], earliest_run_at: float) -> None:
        if self._pid != os.getpid():
            # Forked: the socket and fd belong to the parent too; start afresh.
            self._sock, self._dir_fd, self._mtime, self._pid = None, -1, -1.0, os.getpid()
            self._targets, self._next_look = [], 0.0
        now = time.monotonic()
        if now >= self._next_look:
            self._look(now)
        if not self._targets:
            return
        message = f"{earliest_run_at:.6f} {','.join(sorted(queues))}".encode()
        assert self._sock is not None
        send = self._sock.sendto
        for address in self._targets:
            try:  # noqa: SIM105 (a suppress() object per send costs more than the send's Python)
                send(message, address)
            except OSError:  # gone, full or not ours: the poll covers it
                pass

    def _look(self, now: float) -> None:
        """Re-read the directory if masters came or went, at most every LOOK_EVERY
        seconds: a stat per enqueue was 5 us of a 50 us call. A master that
        starts is reached within LOOK_EVERY; what was queued before, its first
        claim takes."""
        self._next_look = now + LOOK_EVERY
        try:
            mtime = os.stat(self.directory).st_mtime
        except OSError:
            self._targets, self._mtime = [], -1.0  # no master has ever run here
            return
        # File times tick coarsely (a few ms): a master that binds its socket in
        # the tick of an earlier change leaves the mtime as it was, so a recent
        # mtime is read again rather than trusted.
        if mtime != self._mtime or time.time() - mtime < RECENT:
            self._refresh(mtime)

    def _refresh(self, mtime: float) -> None:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
        try:
            self._dir_fd = os.open(self.directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            names = [name for name in os.listdir(self.directory) if name.endswith(".sock")]
        except OSError:
            self._dir_fd, names = -1, []
        self._targets = [_address(self.directory, self._dir_fd, name) for name in names]
        self._mtime = mtime

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1
