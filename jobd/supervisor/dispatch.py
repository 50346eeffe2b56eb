"""The master's exchange with the store, and what it keeps between two exchanges.

Each exchange settles the attempts that ended and claims jobs for the pools'
free workers, in one store transaction (`Store.exchange_many`), then hands
the claimed jobs to workers. Between exchanges this keeps:

- the settles to send (a failed exchange keeps them, in order, for the next);
- the claimed jobs that fit in no worker yet (`held`), which go to the next
  worker of their pool that becomes idle, or back to the queue on a drain;
- the pools whose last claim found fewer ready jobs than asked (`dry`): no
  claim for them until a wake-up, a poll, a timer or a requeue says there
  may be more;
- the backoff after store failures: claims pause (0.1 s doubling to 5 s)
  while supervision goes on;
- the counters `jobd status` and the log show.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from jobd.records import Attempt, Claim, ClaimRequest, JobState, Settle
from jobd.settings import PoolSpec
from jobd.store.contract import Store, StoreError
from jobd.supervisor.outcomes import never_started

log = logging.getLogger("jobd.master")

BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0


class Hands(Protocol):
    """Where claimed jobs go: the workforce's handout (handout.py)."""

    @property
    def pools(self) -> Mapping[str, PoolSpec]: ...

    def capacity(self, pool: str) -> int: ...

    def any_idle(self, pool: str) -> bool: ...

    def assign(self, claim: Claim, pool: str) -> bool: ...

    def send_assigned(self) -> None: ...


class Dispatch:
    def __init__(self) -> None:
        self.settles: list[Settle] = []
        self.held: list[tuple[str, Claim]] = []  # (pool, claim)
        self.dry: set[str] = set()
        self.failures = 0
        self.retry_at = 0.0  # monotonic: no exchange before
        self.counters = {"succeeded": 0, "failed": 0, "retried": 0, "exchanges": 0, "claimed": 0}

    def mark_ready(self, pools: Iterable[PoolSpec], queues: Iterable[str] | None = None) -> None:
        """There may be ready jobs again (in `queues`, or anywhere)."""
        if queues is None:
            self.dry.clear()
            return
        wanted = set(queues)
        for pool in pools:
            if not wanted.isdisjoint(pool.queues):
                self.dry.discard(pool.name)

    def exchange(
        self, store: Store, node_id: int, hands: Hands, claiming: bool, now: float, mono: float
    ) -> None:
        """Settle what ended and (when `claiming`) claim for every pool's free workers, in
        one transaction; hand the claimed jobs out. A store error keeps the settles."""
        self._hand_out_held(hands)
        requests, names = self._requests(hands) if claiming else ([], [])
        if (not self.settles and not requests) or self.backing_off(mono):
            return
        settles, self.settles = self.settles, []
        try:
            claimed = store.exchange_many(node_id, settles, requests, now)
        except StoreError as exc:
            self._failed(settles, exc, mono)
            return
        for pool, claim in self._claimed(names, requests, claimed):
            if not hands.assign(claim, pool):
                self.held.append((pool, claim))
        hands.send_assigned()

    def _hand_out_held(self, hands: Hands) -> None:
        waiting, self.held = self.held, []
        for pool, claim in waiting:
            if not (hands.any_idle(pool) and hands.assign(claim, pool)):
                self.held.append((pool, claim))
        hands.send_assigned()

    def _requests(self, hands: Hands) -> tuple[list[ClaimRequest], list[str]]:
        """One claim request per pool that has free workers and may have ready jobs."""
        requests, names = [], []
        for name, pool in hands.pools.items():
            if name in self.dry:
                continue
            held = sum(1 for owner, _ in self.held if owner == name)
            limit = hands.capacity(name) - held
            if limit > 0:
                requests.append(ClaimRequest(pool.queues, limit, pool.weights))
                names.append(name)
        return requests, names

    def backing_off(self, mono: float) -> bool:
        return mono < self.retry_at

    def _claimed(
        self,
        names: Sequence[str],
        requests: Sequence[ClaimRequest],
        claimed: Sequence[list[Claim]],
    ) -> list[tuple[str, Claim]]:
        """A successful exchange: the claims to hand out, by pool, in order."""
        if self.failures:
            log.info("the store is reachable again")
            self.failures = 0
        self.counters["exchanges"] += 1
        out = []
        for name, request, claims in zip(names, requests, claimed, strict=True):
            self.counters["claimed"] += len(claims)
            if len(claims) < request.limit:
                self.dry.add(name)
            out += [(name, claim) for claim in claims]
        return out

    def _failed(self, settles: list[Settle], exc: StoreError, mono: float) -> None:
        """A failed exchange: its settles go first next time; claims pause a while."""
        self.settles = settles + self.settles
        self.failures += 1
        backoff = min(BACKOFF_FIRST * 2 ** (self.failures - 1), BACKOFF_MAX)
        self.retry_at = mono + backoff
        if self.failures == 1 or self.failures % 20 == 0:
            log.warning("store unavailable (claims paused, retry in %.1fs): %s", backoff, exc)

    def return_held(self) -> None:
        """Claimed jobs no worker took (draining, stopping): back, uncounted."""
        self.settles.extend(never_started(claim) for _, claim in self.held)
        self.held = []

    def settle(self, claim: Claim, attempt: Attempt, settle: Settle) -> None:
        """An attempt ended and its job goes where `settle` says (next exchange)."""
        self.settles.append(settle)
        if settle.state is JobState.QUEUED and not settle.uncount:
            self.counters["retried"] += 1
        elif settle.state.value in self.counters:
            self.counters[settle.state.value] += 1
        if settle.state in (JobState.FAILED, JobState.QUEUED) and attempt.outcome not in (
            "succeeded",
            "interrupted",
        ):
            log.warning(
                "job %s (%s) attempt %s/%s: %s%s",
                claim.id, claim.routine, claim.counted, claim.max_attempts,
                attempt.outcome,
                f": {attempt.error_type}: {attempt.error_message}" if attempt.error_type else "",
            )  # fmt: skip

    def summary(self) -> str:
        """The counters, for the log line of a stop."""
        c = self.counters
        return (
            f"{c['succeeded']} succeeded, {c['failed']} failed, {c['retried']} retried; "
            f"{c['claimed']} claimed in {c['exchanges']} transactions"
        )

    def never_started(self, claim: Claim) -> None:
        self.settles.append(never_started(claim))

    def give_up(self, mono: float) -> bool | None:
        """Stopping with settles the store would not take: wait (None) while it may come
        back, then drop them (True: they were dropped; False: there were none)."""
        if not self.settles:
            return False
        if self.backing_off(mono) or self.failures <= 10:
            return None
        log.error(
            "%d attempt results could not be recorded; those jobs will be "
            "put back when this node is found dead",
            len(self.settles),
        )
        self.settles = []
        return True
