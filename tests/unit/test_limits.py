"""Pure verdicts on running attempts."""

from __future__ import annotations

import signal

from jobd.policy import Policy
from jobd.supervisor.limits import memory_verdict, time_verdict


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
