"""Weighted shares of claims between the queues of one pool.

Smooth weighted round robin (the order nginx uses for its upstreams): each
pick adds every non-empty queue's weight to its credit, takes the next job
of the queue with the most credit, and charges that queue the total. With
weights 3 and 1 the picks go A A B A A A B A ... while both have ready
jobs; a queue that runs dry gives its share to the others. Within a queue,
jobs keep their claim order (priority, then run_at, then id).

The credit is the pool's, kept by the store across claims. Started afresh at
every claim it made the first pick always the heaviest queue's, so a pool
whose workers claim one job at a time (one worker, or workers freed one by
one) served the lighter queues nothing while the heaviest had jobs: weights
3 and 1 with one worker gave the second queue 0 of the first 20 claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def weighted_merge(
    queues: Sequence[Sequence[T]],
    weights: Sequence[float],
    limit: int,
    credit: list[float] | None = None,
) -> list[T]:
    """Up to `limit` items from `queues` (each in order), shared by `weights`.

    `credit`, one number per queue, carries the round robin from one call to
    the next (updated in place); without it each call starts afresh.
    """
    positions = [0] * len(queues)
    if credit is None:
        credit = [0.0] * len(queues)
    picked: list[T] = []
    while len(picked) < limit:
        open_queues = [i for i, q in enumerate(queues) if positions[i] < len(q)]
        if not open_queues:
            break
        total = sum(weights[i] for i in open_queues)
        for i in open_queues:
            credit[i] += weights[i]
        best = max(open_queues, key=lambda i: credit[i])
        credit[best] -= total
        picked.append(queues[best][positions[best]])
        positions[best] += 1
    return picked
