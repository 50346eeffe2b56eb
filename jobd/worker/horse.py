"""`isolation = "process"`: each attempt in a fresh child of the worker.

The child ("horse", the word RQ uses) is forked from the worker, so the
application is already imported: about a millisecond. It runs in its own
process group, so a hard limit kills it with everything it started
(`killpg`), and it dies with the worker (PR_SET_PDEATHSIG). The worker
tells the master the horse's pid before the job starts, waits for it with
`wait4`, and reports the kernel's account of the attempt: CPU seconds and
peak RSS of the horse. Whatever the job leaks dies with the horse.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

from jobd.processes import classify, set_parent_death_signal
from jobd.wire import (
    Done,
    FromWorker,
    Horse,
    JobError,
    Malformed,
    decode_from_worker,
    encode_done,
    encode_horse,
)


def run_in_horse(job_id: int, run: Callable[[], bytes], send: Callable[[bytes], None]) -> bytes:
    """Run `run` (the attempt, returning its `done` line) in a horse; `send` tells the master.

    The worker's runner passes its inline run as a callable, so this module
    needs nothing from worker/execute.py (no import cycle).
    """
    import time

    read_end, write_end = os.pipe()
    started = time.time()
    pid = os.fork()
    if pid == 0:  # the horse
        os.close(read_end)
        _horse(run, write_end)
    os.close(write_end)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also done in the child: whoever runs first, the group exists
    send(encode_horse(Horse(job_id, pid)))
    data = _read_all(read_end)
    _, status, usage = os.wait4(pid, 0)
    cpu, peak = usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024
    reply: FromWorker | None = None
    if data:
        # The horse wrote its done line with encode_done: read it back as the
        # master will, and give it the kernel's account of the attempt.
        with contextlib.suppress(Malformed):  # then it ended without a result
            reply = decode_from_worker(data)
        if isinstance(reply, Done):
            reply.cpu, reply.rss = cpu, peak
            return encode_done(reply)
    ended = classify(pid, status)
    error = JobError(
        ended.describe() if ended.signal else "HorseExit",
        f"the job's process (pid {pid}) ended without a result: {ended.describe()}",
    )
    return encode_done(
        Done(job_id, False, started, time.time(), cpu, peak, outcome="killed", error=error)
    )


def _horse(run: Callable[[], bytes], write_end: int) -> None:
    code = 0
    try:
        os.setpgid(0, 0)
        set_parent_death_signal(signal.SIGKILL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a hard limit ends the horse
        reply = run()
        view = memoryview(reply)
        while view:
            view = view[os.write(write_end, view) :]
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)
