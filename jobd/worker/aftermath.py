"""`job_failed` hooks for attempts that ended outside their job.

A hard limit, a cancel, a kill from outside or a stop ends an attempt by
ending its worker, which can then run nothing. The master tells the
worker template, which has the application (and its hooks) imported; the
template forks a short-lived child that runs each hook's `job_failed` with
a `JobKilled` naming how the attempt ended, logging as the job did. Forked
like a worker (through an intermediate child, so the master reaps it), and
bounded: past `HOOKS_TIMEOUT` the child is ended by SIGALRM.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from typing import Any

from jobd import logs
from jobd.errors import JobKilled
from jobd.hooks import JobContext, WorkerInfo, registered_hooks, set_current_job
from jobd.settings import Settings

log = logging.getLogger("jobd.worker")

HOOKS_TIMEOUT = 30  # seconds a child running failed hooks may take


def fork_failed_hooks(
    ctl: socket.socket, ended: dict[str, Any], settings: Settings, generation: int
) -> None:
    """In the template: run the hooks in a grandchild, unless there are none."""
    if not registered_hooks():
        return
    intermediate = os.fork()
    if intermediate == 0:
        try:
            if os.fork() == 0:
                ctl.close()  # the template's end: its death must still show as EOF
                _run(ended, settings, generation)
        finally:
            os._exit(0)
    os.waitpid(intermediate, 0)


def _run(ended: dict[str, Any], settings: Settings, generation: int) -> None:
    signal.alarm(HOOKS_TIMEOUT)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    worker = ended["worker"]
    logs.setup(settings.jobd.log_level, "worker", int(worker["slot"]))
    job = JobContext(
        worker=WorkerInfo(int(worker["slot"]), int(worker["pid"] or 0), generation),
        **ended["job"],
    )
    error = JobKilled(str(ended["outcome"]), str(ended["error_type"]), str(ended["message"]))
    set_current_job(job)
    for hooks in registered_hooks():
        try:
            hooks.job_failed(job, error)
        except Exception:
            log.exception("hook %s.job_failed failed", type(hooks).__qualname__)
    logging.shutdown()
