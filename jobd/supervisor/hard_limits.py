"""The hard limits, watched while jobs run: wall time and resident memory.

Every step the master asks `HardLimits` what is due: a running attempt
past its `time_limit`, or (sampled every `memory_check_interval`, and only
while some running job has a `memory_limit`) past its `memory_limit`. The
verdicts themselves are the pure functions of limit_verdicts.py.

An isolated attempt (`isolation = "process"`) is killed here as its process
group, SIGTERM then SIGKILL after `kill_grace`, and its worker lives on; an
inline attempt's worker is returned to the workforce, which terminates it
(the worker is replaced) and records why.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterable

from jobd.policy import Policy
from jobd.processes import one_line
from jobd.settings import LimitsSection
from jobd.supervisor.children import Launcher
from jobd.supervisor.limit_verdicts import Verdict, memory_verdict, time_verdict
from jobd.supervisor.workers import InFlight, Worker

log = logging.getLogger("jobd.master")


class HardLimits:
    def __init__(self, launcher: Launcher, policy: Callable[[str], Policy]) -> None:
        self.launcher = launcher
        self.policy = policy
        self.next_memory_check = 0.0

    def deadlines(self, workers: Iterable[Worker]) -> list[float]:
        """When a limit may next be passed (monotonic)."""
        due = []
        watching_memory = False
        for worker in workers:
            head = worker.inflight[0] if worker.inflight else None
            if head is None or head.started_mono is None:
                continue
            if head.kill_at is not None:
                due.append(head.kill_at)
            policy = self.policy(head.claim.routine)
            if policy.time_limit is not None and head.verdict is None:
                due.append(head.started_mono + policy.time_limit)
            watching_memory = watching_memory or policy.memory_limit is not None
        if watching_memory:
            due.append(self.next_memory_check)
        return due

    def check(
        self, workers: Iterable[Worker], mono: float, limits: LimitsSection
    ) -> list[tuple[Worker, Verdict, float]]:
        """Kill isolated attempts past a limit; the inline ones' workers to terminate,
        with the verdict and the grace before SIGKILL."""
        sample_memory = mono >= self.next_memory_check
        if sample_memory:
            self.next_memory_check = mono + limits.memory_check_interval
        terminate = []
        for worker in workers:
            head = worker.inflight[0] if worker.inflight else None
            if head is None or head.started_mono is None or worker.kill_reason is not None:
                continue
            if head.kill_at is not None and mono >= head.kill_at and head.horse is not None:
                self.launcher.kill_group(head.horse, signal.SIGKILL)
                head.kill_at = None
            if head.verdict is not None:
                continue
            verdict = self._verdict(worker, head, mono, sample_memory)
            if verdict is None:
                continue
            claim = head.claim
            log.warning(
                "job %s (%s): %s; killing it", claim.id, one_line(claim.routine), verdict.message
            )
            grace = limits.kill_grace if verdict.signal == signal.SIGTERM else 0.0
            if head.horse is not None:  # isolated: the job's process group, not the worker
                head.verdict = verdict
                self.launcher.kill_group(head.horse, verdict.signal)
                if grace > 0:
                    head.kill_at = mono + grace
                continue
            worker.kill_rss = verdict.rss
            terminate.append((worker, verdict, grace))
        return terminate

    def _verdict(
        self, worker: Worker, head: InFlight, mono: float, sample_memory: bool
    ) -> Verdict | None:
        assert head.started_mono is not None
        policy = self.policy(head.claim.routine)
        verdict = time_verdict(mono - head.started_mono, policy)
        if verdict is None and sample_memory and policy.memory_limit is not None:
            watched = head.horse or worker.pid
            if watched is not None:
                rss = self.launcher.rss(watched, with_children=head.horse is not None)
                verdict = memory_verdict(rss, policy)
        return verdict
