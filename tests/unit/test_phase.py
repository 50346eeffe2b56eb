"""The master's lifecycle rules (jobd/supervisor/phase.py), step by step."""

from __future__ import annotations

from jobd import exitcodes
from jobd.supervisor.phase import Lifecycle, Phase


def test_starting_waits_for_the_pool_then_runs_once() -> None:
    life = Lifecycle(boot_deadline=10.0)
    assert life.deadlines() == [10.0]
    assert not life.boot_overdue(9.9) and life.boot_overdue(10.0)
    assert life.ready() and life.phase is Phase.RUNNING
    assert not life.ready(), "ready only once"
    assert life.deadlines() == [] and not life.boot_overdue(11.0)


def test_a_drain_happens_once_and_its_deadline_fires_once() -> None:
    life = Lifecycle(boot_deadline=10.0)
    life.ready()
    assert life.drain(exitcodes.OK, deadline=40.0)
    assert life.phase is Phase.DRAINING and life.winding_down
    assert not life.drain(exitcodes.FAILURE, deadline=99.0), "a second drain changes nothing"
    assert life.exit_code == exitcodes.OK and life.deadlines() == [40.0]
    assert not life.drain_overdue(39.0)
    assert life.drain_overdue(40.0) and not life.drain_overdue(41.0)


def test_stop_now_follows_a_drain_but_not_itself() -> None:
    life = Lifecycle(boot_deadline=10.0)
    life.drain(exitcodes.OK, deadline=40.0)
    assert life.stop() and life.phase is Phase.STOPPING and life.winding_down
    assert not life.stop()
    assert not life.drain(exitcodes.OK, deadline=50.0), "no drain after stopping"


def test_a_boot_failure_while_starting_drains_with_exit_3_once() -> None:
    life = Lifecycle(boot_deadline=10.0)
    assert life.boot_failed() and life.phase is Phase.RUNNING  # so that drain applies
    assert life.drain(exitcodes.BOOT_ERROR, deadline=40.0)
    assert life.exit_code == exitcodes.BOOT_ERROR
    assert not life.boot_failed(), "said once"


def test_finish_keeps_the_worst_exit_code() -> None:
    life = Lifecycle(boot_deadline=10.0)
    life.drain(exitcodes.BOOT_ERROR, deadline=40.0)
    life.finish(dropped=True)
    assert life.phase is Phase.DONE and life.exit_code == exitcodes.BOOT_ERROR
    other = Lifecycle(boot_deadline=10.0)
    other.drain(exitcodes.OK, deadline=40.0)
    other.finish(dropped=True)
    assert other.exit_code == exitcodes.FAILURE
