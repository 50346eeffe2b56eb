"""Process helpers the master, the workers and the CLI share: how a child ended,
whether a recorded process still runs, prctl, and text safe for titles and logs.

`classify` turns a wait status into an `Exit` (a pure function: the master
classifies its workers' deaths, a worker its isolated job's). The two
prctl(2) calls go through ctypes because the stdlib has no prctl.
"""

from __future__ import annotations

import ctypes
import os
import signal
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# The interpreter's own symbols, libc's among them. ctypes.util.find_library
# runs `ldconfig -p` in a subprocess to find the file: 5-10 ms on the master's
# and the template's start (both import this module).
_libc = ctypes.CDLL(None, use_errno=True)


# Control characters (newline, NUL, escape...) shown as \xNN: a routine name
# or an error message from user code must not forge a log line or make
# setproctitle raise (it refuses NUL).
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(32), 127)}


def one_line(text: str) -> str:
    """`text` safe for a process title or one log line: control characters escaped."""
    return text.translate(_CONTROL)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}, {value}) failed")


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send `signum` to this process when its parent dies."""
    _prctl(PR_SET_PDEATHSIG, signum)


def set_child_subreaper() -> None:
    """Orphaned descendants (workers forked by the template) become our children."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


@dataclass(frozen=True)
class Exit:
    """How a child process ended, from its wait status."""

    pid: int
    code: int | None
    signal: int | None

    def describe(self) -> str:
        if self.signal is not None:
            try:
                return signal.Signals(self.signal).name
            except ValueError:
                return f"signal {self.signal}"
        return f"exit code {self.code}"


def classify(pid: int, status: int) -> Exit:
    """A wait status as an Exit: a signal that killed it, or its exit code."""
    if os.WIFSIGNALED(status):
        return Exit(pid, None, os.WTERMSIG(status))
    return Exit(pid, os.waitstatus_to_exitcode(status), None)


def process_alive(pid: int, since: float) -> bool:
    """Is `pid` still the process that was running at `since` (epoch seconds)?

    A pid reused by a process started later is not it. When the kernel will not
    say (no permission), the answer is yes: nothing is judged dead on a guess.
    """
    import psutil  # not at import time: the workers import this module

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= since + 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True
