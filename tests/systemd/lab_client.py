"""The application's side in the lab: enqueue jobs, read them back (JSON on stdout).

Runs as the producer user (group jobd), outside the unit, with the jobd
installed in /opt/jobd, through the public `jobd.Client`:

    lab_client.py enqueue ROUTINE KWARGS_JSON_LIST   -> {"ids": [...], "cgroup": "..."}
    lab_client.py jobs ID...                         -> {"ID": {state, attempts, ...}}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jobd
from jobd.client import JobSpec

CONFIG = "/etc/jobd/jobd.toml"


def enqueue(routine: str, kwargs_list: str) -> dict[str, Any]:
    specs = [JobSpec(routine, (), kwargs) for kwargs in json.loads(kwargs_list)]
    with jobd.Client(config=CONFIG) as client:
        jobs = client.enqueue_many(specs)
    cgroup = Path("/proc/self/cgroup").read_text().strip()
    return {"ids": [job.id for job in jobs], "cgroup": cgroup}


def jobs(ids: list[str]) -> dict[str, Any]:
    found = {}
    with jobd.Client(config=CONFIG) as client:
        for job_id in map(int, ids):
            job = client.get(job_id)
            found[str(job_id)] = {
                "state": job.state,
                "attempts": job.attempts,
                "enqueued_at": job.enqueued_at,
                "started_at": job.started_at,
                "result": job.result,
                "outcomes": [a.outcome for a in client.attempts(job_id)],
            }
    return found


def main(argv: list[str]) -> None:
    command, *args = argv
    result = enqueue(*args) if command == "enqueue" else jobs(args)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
