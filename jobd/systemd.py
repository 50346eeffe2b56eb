"""sd_notify for the master: readiness, status, reload, stop, watchdog.

Built on the sdnotify package, with its socket made non-blocking so a
stalled systemd can never stall the master. `NOTIFY_SOCKET` is removed
from the environment as soon as it is read: no child ever inherits it.
"""

from __future__ import annotations

import os
import time

from sdnotify import SystemdNotifier


class Notifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = SystemdNotifier() if self.enabled else None
        if self._notifier is not None and self._notifier.socket is not None:
            self._notifier.socket.setblocking(False)
        watchdog = os.environ.get("WATCHDOG_USEC")
        watchdog_pid = os.environ.get("WATCHDOG_PID")
        self.watchdog_usec = (
            int(watchdog)
            if watchdog and watchdog.isdigit() and watchdog_pid in (None, str(os.getpid()))
            else 0
        )
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            os.environ.pop(name, None)

    def send(self, *lines: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(lines))

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def extend_timeout(self, seconds: float) -> None:
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")
