"""The master's view of its workers: one record per worker, one per job it holds.

A worker holds the job it runs and, when jobs are short, further jobs that
wait in its socket (pipelining.py). The master changes these records as
messages, exits and its own orders come in (workforce.py and the parts
that share its roster, crew.py); everything it decides from them (which
worker gets a job, whether a limit is passed) reads them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from jobd.records import Claim
from jobd.supervisor.children import Channel
from jobd.supervisor.limit_verdicts import Verdict


@dataclass(slots=True)
class InFlight:
    claim: Claim
    started: float | None = None  # wall clock, once it is at the head of the pipe
    started_mono: float | None = None
    horse: int | None = None  # pid (and process group) of its isolated process
    verdict: Verdict | None = None  # the limit the master killed it for
    kill_at: float | None = None  # monotonic: SIGKILL the horse's group after SIGTERM


@dataclass(eq=False)
class Worker:
    slot: int
    generation: int
    channel: Channel
    spawned_mono: float
    pid: int | None = None
    booted: bool = False
    retiring: bool = False  # told to stop after what it has; not replaced one-for-one
    standby: bool = False  # of a reload still booting: no jobs until it takes over
    inflight: deque[InFlight] = field(default_factory=deque)
    jobs_done: int = 0
    kill_reason: tuple[str, str] | None = None  # (outcome, message) if the master killed it
    kill_at: float | None = None  # monotonic deadline for SIGKILL after SIGTERM
    kill_rss: int | None = None  # the RSS that got it killed
    signalled: int | None = None  # the last signal the master sent it
    boot_error: str | None = None
    untrusted: bool = False  # sent a malformed message: killed, nothing more it says counts
    job_quota: int | None = None  # retire after this many jobs (max_jobs_per_worker)
    pool: str = "default"
    idle_since: float | None = None  # monotonic: when it last had nothing to do
    exited: bool = False

    @property
    def accepting(self) -> bool:
        return (
            self.booted
            and not self.retiring
            and not self.standby
            and self.kill_reason is None
            and not self.exited
        )

    @property
    def idle(self) -> bool:
        return self.accepting and not self.inflight

    @property
    def current(self) -> Claim | None:
        return self.inflight[0].claim if self.inflight else None
