"""Signals as events in the master's selector loop.

Handlers only append the signal number to a list; `signal.set_wakeup_fd`
writes a byte to a non-blocking socketpair so `select()` returns at once.
All the work (reaping, logging, database calls) happens in the loop. The
list, not the bytes, is the record: bytes can be dropped when the pipe is
full, appends cannot.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from types import FrameType

log = logging.getLogger("jobd.master")

HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGCHLD,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR2,  # only acted on with JOBD_DEBUG_HANG=1 (a watchdog test)
)


class SignalWatch:
    def __init__(self, signals: tuple[signal.Signals, ...] = HANDLED) -> None:
        self.pending: list[int] = []
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        self._old_handlers = {signum: signal.signal(signum, self._record) for signum in signals}

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)

    def fileno(self) -> int:
        return self._read.fileno()

    def take(self) -> list[int]:
        """The signals received since the last call, in order."""
        try:
            while self._read.recv(4096):
                pass
        except BlockingIOError:
            pass
        taken, self.pending = self.pending, []
        return taken

    def close(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._old_fd)
        self._read.close()
        self._write.close()


def hang_if_debugging() -> None:
    """SIGUSR2 with JOBD_DEBUG_HANG=1: the loop stops answering (the watchdog's test)."""
    if os.environ.get("JOBD_DEBUG_HANG") != "1":
        return
    log.warning("SIGUSR2 with JOBD_DEBUG_HANG=1: the loop stops answering (debug)")
    while True:
        time.sleep(3600)
