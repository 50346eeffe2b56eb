"""The no-op routine jobd's benchmark runs (workers import it by this name)."""

import harness

import jobd


@jobd.routine
def noop(x: int) -> None:
    harness.record(x)
