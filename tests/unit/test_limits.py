"""Pure verdicts on running attempts."""

from __future__ import annotations

import os
import signal

from jobd.policy import Policy
from jobd.supervisor.limit_verdicts import memory_verdict, time_verdict


def test_time_verdict() -> None:
    policy = Policy(time_limit=10.0)
    assert time_verdict(9.99, policy) is None
    verdict = time_verdict(10.0, policy)
    assert verdict is not None
    assert (verdict.outcome, verdict.signal) == ("time_limit_exceeded", signal.SIGTERM)
    assert verdict.message == "ran 10s, over its time limit of 10s"
    assert time_verdict(1e9, Policy()) is None


def test_memory_verdict() -> None:
    policy = Policy(memory_limit=512 << 20)
    assert memory_verdict(512 << 20, policy) is None
    assert memory_verdict(None, policy) is None  # the process is already gone
    verdict = memory_verdict(600 << 20, policy)
    assert verdict is not None
    assert (verdict.outcome, verdict.signal, verdict.rss) == (
        "memory_limit_exceeded",
        signal.SIGKILL,
        600 << 20,
    )
    assert verdict.message == "RSS 600M over its memory limit of 512M"
    assert memory_verdict(1 << 40, Policy()) is None


def test_a_forked_child_measures_its_own_memory() -> None:
    # The meter's descriptors name /proc/self as resolved at open: a child
    # forked after the parent opened them must open its own (at-fork hook).
    from jobd.worker.limits import METER

    METER.current()  # opened in this process
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: grow by 64 MiB, report the growth it measures
        try:
            before = METER.current()
            ballast = b"x" * (64 << 20)  # written, so resident
            os.write(write_end, str(METER.current() - before).encode())
            del ballast
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        growth = int(reader.read())
    os.waitpid(pid, 0)
    assert growth >= 60 << 20
