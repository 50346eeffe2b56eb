"""Weighted shares of claims between a pool's queues."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from jobd.store.fairness import weighted_merge


def test_weights_three_to_one_interleave() -> None:
    a = [f"a{i}" for i in range(10)]
    b = [f"b{i}" for i in range(10)]
    picked = weighted_merge([a, b], [3, 1], 8)
    assert Counter(p[0] for p in picked) == {"a": 6, "b": 2}
    assert picked[:4].count("b0") == 1  # b is not left for last
    assert [p for p in picked if p[0] == "a"] == a[:6]  # order within a queue kept


def test_one_claim_at_a_time_keeps_the_shares_with_the_credit_carried() -> None:
    # One worker: every claim asks for one job. Both queues always have jobs.
    a, b = [f"a{i}" for i in range(100)], [f"b{i}" for i in range(100)]
    credit = [0.0, 0.0]
    picked = []
    for _ in range(20):
        taken = weighted_merge([a, b], [3, 1], 1, credit)
        picked += taken
        (a if taken[0][0] == "a" else b).remove(taken[0])
    assert Counter(p[0] for p in picked) == {"a": 15, "b": 5}
    assert all("b" in "".join(picked[i : i + 4]) for i in range(0, 20, 4))  # b every 4th
    # Without the carried credit the heaviest queue took every claim.
    assert weighted_merge([a, b], [3, 1], 1) == [a[0]]


def test_a_queue_that_runs_dry_gives_its_share_away() -> None:
    assert weighted_merge([["a0"], ["b0", "b1", "b2"]], [9, 1], 4) == ["a0", "b0", "b1", "b2"]


def test_nothing_ready() -> None:
    assert weighted_merge([[], []], [1, 1], 5) == []


@given(
    st.lists(st.integers(0, 30), min_size=1, max_size=4),
    st.lists(st.integers(1, 10), min_size=4, max_size=4),
    st.integers(0, 60),
)
def test_never_more_than_asked_nor_than_ready(
    sizes: list[int], weights: list[int], limit: int
) -> None:
    queues = [[(q, i) for i in range(n)] for q, n in enumerate(sizes)]
    picked = weighted_merge(queues, weights[: len(queues)], limit)
    assert len(picked) == min(limit, sum(sizes))
    assert len(set(picked)) == len(picked)
    for q, items in enumerate(queues):
        mine = [p for p in picked if p[0] == q]
        assert mine == items[: len(mine)]
