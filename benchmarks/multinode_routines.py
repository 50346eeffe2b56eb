"""The no-op routine `benchmarks/multinode.py` runs (workers import it by this name)."""

import jobd


@jobd.routine
def noop() -> None:
    pass
