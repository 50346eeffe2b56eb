"""Weighted shares of claims between the queues of one pool.

Smooth weighted round robin (the order nginx uses for its upstreams): each
pick adds every non-empty queue's weight to its credit, takes the next job
of the queue with the most credit, and charges that queue the total. With
weights 3 and 1 the picks go A A B A A A B A ... while both have ready
jobs; a queue that runs dry gives its share to the others. Within a queue,
jobs keep their claim order (priority, then run_at, then id).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def weighted_merge(queues: Sequence[Sequence[T]], weights: Sequence[float], limit: int) -> list[T]:
    """Up to `limit` items from `queues` (each in order), shared by `weights`."""
    positions = [0] * len(queues)
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
