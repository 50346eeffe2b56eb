"""Routines for tests/integration/test_client.py."""

from __future__ import annotations

import jobd


@jobd.routine(queue="emails", priority=2, max_attempts=4)
def send(to: str, subject: str = "") -> None:
    """A routine whose policy differs from the defaults everywhere a job shows it."""


@jobd.routine(unique=True)
def refresh(key: str) -> None:
    """Deduplicated: one live job per set of arguments."""


@jobd.routine
def plain(*args: object, **kwargs: object) -> None:
    """Takes anything."""
