"""Attempt numbers never repeat for one job, on SQLite and on PostgreSQL.

`jobs.attempts` is the count toward max_attempts: an uncounted put-back (an
interrupted drain, a job that waited in a dead worker's pipe) gives it back,
and `jobd jobs retry` resets it. The attempt number a claim carries and the
`attempts` table records is the job's run number (`jobs.runs`), which only
grows; it is also the token a settle must match, so a settle of an older run
changes nothing.
"""

from __future__ import annotations

from jobd.records import ClaimRequest, JobState, Settle
from jobd.store.contract import Store
from tests.integration.jobs import NOW, also_in_memory, attempt_for, claim, new_job


def numbers(store: Store, job_id: int) -> list[tuple[int, str]]:
    return [(a.attempt, a.outcome) for a in store.job_attempts(job_id)]


@also_in_memory
def test_a_drained_job_runs_again_under_a_new_attempt_number(store: Store, node: int) -> None:
    (job,) = store.enqueue([new_job(max_attempts=2)])
    (first,) = claim(store, node)
    interrupted = Settle(
        first.id, JobState.QUEUED, attempt_for(first, node, "interrupted"), run_at=NOW, uncount=True
    )
    (second,) = claim(store, node, settles=[interrupted])
    assert (second.attempt, second.counted) == (2, 1)  # a new run, the same count
    failed = Settle(second.id, JobState.QUEUED, attempt_for(second, node, "error"), run_at=NOW)
    (third,) = claim(store, node, settles=[failed])
    assert (third.attempt, third.counted) == (3, 2)
    done = Settle(third.id, JobState.SUCCEEDED, attempt_for(third, node), result_json="1")
    claim(store, node, limit=0, settles=[done])
    assert numbers(store, job.job.id) == [(1, "interrupted"), (2, "error"), (3, "succeeded")]
    stored = store.get_job(job.job.id)
    assert (stored.state, stored.attempts, stored.runs) == ("succeeded", 2, 3)


@also_in_memory
def test_a_job_given_back_unstarted_keeps_its_numbers_apart(store: Store, node: int) -> None:
    (job,) = store.enqueue([new_job()])
    (first,) = claim(store, node)
    never_started = Settle(first.id, JobState.QUEUED, None, uncount=True)
    (second,) = claim(store, node, settles=[never_started])
    assert (second.attempt, second.counted) == (2, 1)
    done = Settle(second.id, JobState.SUCCEEDED, attempt_for(second, node), result_json="1")
    claim(store, node, limit=0, settles=[done])
    assert numbers(store, job.job.id) == [(2, "succeeded")]


@also_in_memory
def test_a_retried_job_continues_its_attempt_numbers(store: Store, node: int) -> None:
    (job,) = store.enqueue([new_job(max_attempts=1)])
    (first,) = claim(store, node)
    failed = Settle(first.id, JobState.FAILED, attempt_for(first, node, "error"))
    claim(store, node, limit=0, settles=[failed])
    store.retry(job.job.id, NOW)
    assert (store.get_job(job.job.id).attempts, store.get_job(job.job.id).runs) == (0, 1)
    (again,) = claim(store, node)
    assert (again.attempt, again.counted) == (2, 1)  # its one attempt again, run 2
    done = Settle(again.id, JobState.SUCCEEDED, attempt_for(again, node), result_json="1")
    claim(store, node, limit=0, settles=[done])
    assert numbers(store, job.job.id) == [(1, "error"), (2, "succeeded")]


@also_in_memory
def test_a_settle_of_an_earlier_run_is_stale_after_a_put_back_and_a_reclaim(
    store: Store, node: int
) -> None:
    """Same node, same count: only the run number tells the two claims apart."""
    (job,) = store.enqueue([new_job()])
    (first,) = claim(store, node)
    back = Settle(first.id, JobState.QUEUED, None, uncount=True)
    (second,) = claim(store, node, settles=[back])
    assert second.counted == first.counted == 1
    late = Settle(first.id, JobState.SUCCEEDED, attempt_for(first, node), result_json='"late"')
    claim(store, node, limit=0, settles=[late])
    stored = store.get_job(job.job.id)
    assert (stored.state, stored.result, stored.runs) == ("running", None, 2)
    done = Settle(second.id, JobState.SUCCEEDED, attempt_for(second, node), result_json='"ok"')
    claim(store, node, limit=0, settles=[done])
    assert (store.get_job(job.job.id).state, store.get_job(job.job.id).result) == (
        "succeeded",
        "ok",
    )


@also_in_memory
def test_a_weighted_claim_carries_the_run_number_too(store: Store, node: int) -> None:
    (job,) = store.enqueue([new_job(queue="heavy")])
    request = ClaimRequest(("heavy", "light"), 1, (3.0, 1.0))
    ((first,),) = store.exchange_many(node, [], [request], NOW)
    back = Settle(first.id, JobState.QUEUED, None, uncount=True)
    ((second,),) = store.exchange_many(node, [back], [request], NOW)
    assert (first.attempt, first.counted, second.attempt, second.counted) == (1, 1, 2, 1)
    assert store.get_job(job.job.id).runs == 2
