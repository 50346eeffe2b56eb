"""Exceptions a routine may meet while it runs, and the worker's refusal of a job."""

from __future__ import annotations


class JobTimeout(Exception):
    """Raised inside a job that passed its soft time limit; catch it to clean up."""


class JobTerminated(BaseException):
    """Raised in a worker told to stop now (SIGTERM); not meant to be caught by jobs."""


class JobKilled(Exception):
    """What `job_failed` hooks get for an attempt that ended outside its job: a
    hard time or memory limit, a cancel, a kill from outside, its worker's
    death, a stop. The hooks run in a fresh child of the worker template, since
    the worker itself is gone (docs/routines.md, hooks)."""

    def __init__(self, outcome: str, error_type: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome  # time_limit_exceeded, memory_limit_exceeded, cancelled, killed, ...
        self.error_type = error_type  # SIGKILL, SIGTERM, WorkerExit, NodeLost, ...


class UnregisteredRoutine(LookupError):
    """A job names a routine that the modules this node loads did not register.

    Workers run only routines registered when they booted (by jobd itself and
    the modules in `modules`); they never import a module a job names. The
    master fails such a job at once, without retries: running it again on a
    node with the same code cannot succeed (`jobd jobs retry` after a deploy).
    """
