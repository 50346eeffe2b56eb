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


def test_a_title_or_log_line_cannot_carry_a_newline_or_nul() -> None:
    from setproctitle import getproctitle, setproctitle

    from jobd.processes import one_line

    forged = "app:job\nERROR jobd: forged line\x00"
    safe = one_line(forged)
    assert "\n" not in safe and "\x00" not in safe
    assert safe == "app:job\\x0aERROR jobd: forged line\\x00"
    before = getproctitle()
    try:
        setproctitle(f"jobd: worker 1 busy {safe}")  # raises ValueError on a NUL
    finally:
        setproctitle(before)
