"""The running generation's routines, as the master knows them: policies, not code.

The template imports the application and reports each routine's effective
policy (and whether it has a `failed` hook); the master never imports it.
Until the first template is ready, the catalog the workers registered in
the store stands in. Where a job goes after an attempt is decided here, by
the routine's policy (outcomes.py holds the pure decision).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from jobd.policy import Policy, policy_from_json
from jobd.records import Attempt, Claim, Settle
from jobd.supervisor.outcomes import after_attempt, death_attempt

# For the rescue of a dead node: (the dead node, why it is dead) -> the decision
# for each of its running jobs.
Decider = Callable[[int, str], Callable[[Claim], Settle]]


class Catalog:
    def __init__(self) -> None:
        self.policies: dict[str, Policy] = {}
        self.failed_hooks: set[str] = set()
        self.rand = random.Random()  # the jitter of retry delays

    def use(self, catalog: Mapping[str, Mapping[str, Any]]) -> None:
        self.policies = {name: policy_from_json(p) for name, p in catalog.items()}
        self.failed_hooks = {name for name, p in catalog.items() if p.get("failed_hook")}

    def policy(self, routine: str) -> Policy:
        return self.policies.get(routine) or Policy()

    def after(
        self, claim: Claim, attempt: Attempt, now: float, result_json: str | None = None
    ) -> Settle:
        """Where the job goes after `attempt` (outcomes.after_attempt, by its policy)."""
        return after_attempt(
            claim, attempt, self.policy(claim.routine), now, self.rand.random(), result_json,
            failed_hook=claim.routine in self.failed_hooks,
        )  # fmt: skip

    def for_dead_node(self, now: float) -> Decider:
        """Each job of a dead node: its attempt was lost; retried or failed by policy."""

        def for_node(dead: int, why: str) -> Callable[[Claim], Settle]:
            def decide(claim: Claim) -> Settle:
                return self.after(
                    claim, death_attempt(claim, dead, None, None, now, "lost", why), now
                )

            return decide

        return for_node
