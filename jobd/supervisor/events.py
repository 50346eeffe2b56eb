"""What the workforce tells the master: events, applied by the master's loop.

The workforce (workforce.py) owns the processes and learns of everything
that happens to them; what concerns jobs, the store or the master's phase
it does not act on itself but reports here, and the master applies each
event in its step, before the step's store exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobd.records import Attempt, Claim
from jobd.settings import Settings


@dataclass(slots=True)
class AttemptEnded:
    """An attempt ran to an end (reported by its worker, or its worker died)."""

    claim: Claim
    attempt: Attempt
    result_json: str | None = None


@dataclass(slots=True)
class NeverStarted:
    """A job waited in a worker's pipe when the worker went away: back, uncounted."""

    claim: Claim


@dataclass(frozen=True)
class Booted:
    """Workers of the running generation have booted (how many, so far)."""

    count: int


@dataclass(frozen=True)
class BootFailed:
    """The running generation cannot boot: the master stops (exit code 3)."""

    reason: str


@dataclass(frozen=True)
class CatalogReady:
    """The running generation's routines and their effective policies."""

    catalog: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ReloadCommitted:
    """A reload's generation took over: these settings are the running ones."""

    settings: Settings


@dataclass(frozen=True)
class ReloadFailed:
    """A reload's generation could not boot; the running one stays."""

    reason: str


Event = (
    AttemptEnded
    | NeverStarted
    | Booted
    | BootFailed
    | CatalogReady
    | ReloadCommitted
    | (ReloadFailed)
)
