"""jobd: a systemd-native job-processing daemon over a durable SQL queue.

The public API:

    @jobd.routine(queue="images", max_attempts=5, time_limit="5m")
    def resize(path: str) -> None: ...

    client = jobd.Client(config="/etc/jobd/jobd.toml")
    client.enqueue(resize, "/img/1.png")

Importing jobd does not import SQLAlchemy: the workers never need it.
"""

from jobd.client import Client, JobSpec, UnknownRoutine
from jobd.errors import JobKilled, JobTimeout
from jobd.hooks import Hooks, JobContext, WorkerInfo, add_hooks, current_job
from jobd.records import Job, JobState
from jobd.routines import JobFailure, Routine, routine

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Hooks",
    "Job",
    "JobContext",
    "JobFailure",
    "JobKilled",
    "JobSpec",
    "JobState",
    "JobTimeout",
    "Routine",
    "UnknownRoutine",
    "WorkerInfo",
    "add_hooks",
    "current_job",
    "routine",
]
