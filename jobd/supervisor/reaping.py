"""Reaping: every exited child matched to its worker, and each dead worker buried.

The reaper asks the launcher for every exit (`waitpid` until none is left)
and matches each to its worker by pid; an exit that comes before the
template said which worker it forked waits in `unmatched` until it does.
Burying a worker takes it off the roster, kills what it left in its
process group, records the attempt it was running and puts back the jobs
that waited behind it (events for the master), has its generation's
template run the job_failed hooks it could not, and returns what its death
means (deaths.py judges) for the workforce to apply.
"""

from __future__ import annotations

import logging
import signal

from jobd.processes import Exit, classify
from jobd.supervisor.crew import Crew
from jobd.supervisor.deaths import Unexpected, failed_hooks_order, judge_unexpected, lost_attempt
from jobd.supervisor.events import AttemptEnded, NeverStarted
from jobd.supervisor.reloads import Reloads
from jobd.supervisor.workers import Worker

log = logging.getLogger("jobd.master")

UNMATCHED_KEPT = 1000  # orphans adopted from jobs are reaped too, and forgotten


class Reaper:
    def __init__(self, crew: Crew, reloads: Reloads) -> None:
        self.crew = crew
        self.reloads = reloads
        self.unmatched: dict[int, Exit] = {}

    def reap(self) -> list[tuple[Worker, Exit]]:
        """The workers that exited since the last call, with how."""
        dead = []
        template_pids = None
        for pid, status in self.crew.launcher.reap():
            exited = classify(pid, status)
            worker = self.crew.by_pid.get(pid)
            if worker is not None:
                dead.append((worker, exited))
                continue
            if template_pids is None:
                template_pids = self.reloads.generations.template_pids()
            if pid in template_pids:
                log.debug("worker template (pid %s) exited: %s", pid, exited.describe())
            else:
                self.unmatched[pid] = exited
                while len(self.unmatched) > UNMATCHED_KEPT:
                    self.unmatched.pop(next(iter(self.unmatched)))
        return dead

    def bury(self, worker: Worker, exited: Exit) -> Unexpected | None:
        """A dead worker (whose last words were read) off the roster, its jobs settled;
        what its death means if the master did not ask for it."""
        self.crew.remove(worker)
        worker.exited = True
        # Whatever its jobs started and left in its process group goes with it
        # (a detached daemon, in a session of its own, is the job's choice).
        self.crew.launcher.kill_group(exited.pid, signal.SIGKILL)
        serving = worker.jobs_done > 0 or bool(worker.inflight)
        self._lost_jobs(worker, exited)
        if worker.kill_reason is not None or worker.retiring:
            return None
        proven = self.reloads.generation(worker.generation).proven
        return judge_unexpected(worker, exited, serving, proven)

    def _lost_jobs(self, worker: Worker, exited: Exit) -> None:
        """The attempt a dead worker was running, and the jobs that waited behind it;
        the job_failed hooks it could not run go to its generation's template."""
        crew = self.crew
        attempt = lost_attempt(worker, exited, crew.node_id, crew.clock.time())
        if attempt is None:
            return
        claim = worker.inflight.popleft().claim
        crew.events.append(AttemptEnded(claim, attempt))
        template = self.reloads.generation(worker.generation).template
        if template is not None:
            template.run_failed_hooks(failed_hooks_order(worker, claim, attempt))
        while worker.inflight:
            crew.events.append(NeverStarted(worker.inflight.popleft().claim))
