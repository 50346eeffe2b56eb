"""The two prctl(2) calls jobd needs; ctypes because the stdlib has no prctl."""

from __future__ import annotations

import ctypes

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# The interpreter's own symbols, libc's among them. ctypes.util.find_library
# runs `ldconfig -p` in a subprocess to find the file: 5-10 ms on the master's
# and the template's start (both import this module).
_libc = ctypes.CDLL(None, use_errno=True)


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
