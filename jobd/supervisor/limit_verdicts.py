"""Pure verdicts on a running attempt: has it passed a hard limit?

The master gathers the inputs (how long the attempt has run, the RSS it
sampled) and acts on the verdict: SIGTERM then SIGKILL after `kill_grace`
for a time limit (the job may clean up on SIGTERM), SIGKILL at once for a
memory limit (more memory is exactly what must not be given). The worker
is replaced; with `isolation = "process"` only the job's process group is
killed.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from jobd.policy import Policy
from jobd.records import Attempt
from jobd.units import format_duration, format_size


@dataclass(frozen=True)
class Verdict:
    outcome: str
    message: str
    signal: int
    rss: int | None = None

    def apply(self, attempt: Attempt) -> None:
        """An attempt the master killed for this verdict says so (its error type keeps
        how the process ended: the signal)."""
        attempt.outcome = self.outcome
        attempt.error_message = self.message
        if self.rss is not None:
            attempt.peak_rss = max(attempt.peak_rss or 0, self.rss)


def time_verdict(elapsed: float, policy: Policy) -> Verdict | None:
    if policy.time_limit is None or elapsed < policy.time_limit:
        return None
    return Verdict(
        "time_limit_exceeded",
        f"ran {format_duration(elapsed)}, over its time limit of "
        f"{format_duration(policy.time_limit)}",
        signal.SIGTERM,
    )


def memory_verdict(rss: int | None, policy: Policy) -> Verdict | None:
    if policy.memory_limit is None or rss is None or rss <= policy.memory_limit:
        return None
    return Verdict(
        "memory_limit_exceeded",
        f"RSS {format_size(rss)} over its memory limit of {format_size(policy.memory_limit)}",
        signal.SIGKILL,
        rss,
    )
