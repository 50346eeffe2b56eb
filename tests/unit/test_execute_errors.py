"""A job's exception whose str() raises is still the job's own recorded error."""

from __future__ import annotations

import json
import os

from jobd.hooks import JobContext, WorkerInfo
from jobd.worker.execute import failure_reply


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def test_an_exception_whose_str_raises_is_recorded_with_its_own_type() -> None:
    worker = WorkerInfo(slot=1, pid=os.getpid(), generation=1)
    job = JobContext(7, "app:broken", "default", 1, 3, 0.0, worker)
    try:
        raise Unprintable
    except Unprintable as exc:
        reply = json.loads(failure_reply(job, exc, 1.0, 2.0, 0.0, 0))
    assert reply["ok"] is False and reply["outcome"] == "error"
    assert reply["error"]["type"].endswith("Unprintable")
    assert "RuntimeError" in reply["error"]["message"]
