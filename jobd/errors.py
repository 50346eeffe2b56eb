"""Exceptions a routine may meet while it runs."""

from __future__ import annotations


class JobTimeout(Exception):
    """Raised inside a job that passed its soft time limit; catch it to clean up."""


class JobTerminated(BaseException):
    """Raised in a worker told to stop now (SIGTERM); not meant to be caught by jobs."""
