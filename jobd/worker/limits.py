"""Limits a worker applies to one attempt, and what it measures of it.

The soft time limit is an interval timer: SIGALRM raises `jobd.JobTimeout`
inside the job, which may catch it to clean up. The `resource` limits are
the process's soft limits, lowered for the attempt and restored after it
(lowering and raising a soft limit up to the hard one needs no privilege):

- RLIMIT_AS (address_space_limit): an allocation past it fails, and Python
  raises MemoryError in the job. It counts reserved address space, not
  memory in use, so runtimes that reserve big arenas up front (numpy with
  OpenBLAS, JVMs, Go) hit it early; `memory_limit` (RSS, watched by the
  master) is the better fit for them.
- RLIMIT_CPU (cpu_time_limit): the limit counts the whole process's CPU
  time, so it is set to what the worker used so far plus the job's
  allowance; past it the kernel sends SIGXCPU and the worker dies of it.
- RLIMIT_NOFILE (open_files_limit): opening more descriptors fails (EMFILE).

Peak RSS per attempt: the kernel's high-water mark is reset
(`/proc/self/clear_refs`, "5") when the worker boots and after each reply,
and read after the job (getrusage's ru_maxrss), about 4 us per job. The
reset comes after the reply rather than before the next job: it is a
syscall off the path from a job's arrival to its start (measured 29 us
there after an idle pause), and between two jobs a worker only waits.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
from collections.abc import Iterator
from typing import Any

from jobd.errors import JobTimeout
from jobd.policy import Policy

_PAGE = os.sysconf("SC_PAGE_SIZE")


class Meter:
    """Per-process measurement of memory: peak per attempt, current RSS."""

    def __init__(self) -> None:
        self._clear = -1
        self._statm = -1

    def _open(self) -> None:
        # /proc/self is resolved at open time: each process opens its own.
        with contextlib.suppress(OSError):
            self._clear = os.open("/proc/self/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
        self._statm = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)

    def forget(self) -> None:
        """In a forked child: the descriptors are the parent's /proc/self."""
        for fd in (self._clear, self._statm):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._clear = self._statm = -1

    def reset_peak(self) -> None:
        if self._statm < 0:
            self._open()
        if self._clear >= 0:
            with contextlib.suppress(OSError):
                os.write(self._clear, b"5")

    def peak(self) -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def current(self) -> int:
        if self._statm < 0:
            self._open()
        return int(os.pread(self._statm, 64, 0).split()[1]) * _PAGE


METER = Meter()
# Not a getpid() per call (a syscall each): the child is told it was forked.
os.register_at_fork(after_in_child=METER.forget)


def _raise_timeout(signum: int, frame: Any) -> None:
    raise JobTimeout("the job passed its soft time limit")


@contextlib.contextmanager
def applied(policy: Policy) -> Iterator[None]:
    """The attempt's soft time limit and resource limits, undone on exit."""
    restore: list[tuple[int, tuple[int, int]]] = []
    try:
        if policy.address_space_limit:
            restore.append(_lower(resource.RLIMIT_AS, policy.address_space_limit))
        if policy.open_files_limit:
            restore.append(_lower(resource.RLIMIT_NOFILE, policy.open_files_limit))
        if policy.cpu_time_limit:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            used = usage.ru_utime + usage.ru_stime
            restore.append(_lower(resource.RLIMIT_CPU, math.ceil(used + policy.cpu_time_limit)))
        if policy.soft_time_limit:
            signal.signal(signal.SIGALRM, _raise_timeout)
            signal.setitimer(signal.ITIMER_REAL, policy.soft_time_limit)
        yield
    finally:
        if policy.soft_time_limit:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for which, old in reversed(restore):
            resource.setrlimit(which, old)


def _lower(which: int, soft: int) -> tuple[int, tuple[int, int]]:
    old = resource.getrlimit(which)
    hard = old[1]
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))
    return which, old
