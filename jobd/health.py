"""`jobd health`: is jobd doing its work? Pure verdicts on facts the store reads.

Five checks, each with a threshold in `[health]`:

- **master**: some node (a `jobd run`) has a heartbeat newer than
  `node_stale_after` and, if it runs on this host, its master process is
  still there;
- **nodes**: every node heartbeats: none has a heartbeat older than
  `node_stale_after` (a master cut off from the database, or dead and not
  yet rescued), none of this host's nodes has lost its master process (seen
  at once, not a heartbeat window later), and none was declared dead by
  another node within `failure_window` without coming back or being
  restarted since;
- **ready_jobs**: no job has been ready (queued, `run_at` passed) for
  longer than `ready_max_age`: workers down, or saturated;
- **running_jobs**: no job is `running` on a node that is dead (stopped,
  unknown, or its heartbeat older than `node_stale_after`): its worker is
  gone and no master has put it back yet;
- **failure_rate**: of the attempts that finished in the last
  `failure_window`, at most `failure_rate` failed (judged only from
  `failure_min_attempts` attempts on).

`jobd health` exits 0 when all pass and 1 when any fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobd.processes import process_alive
from jobd.records import HealthFacts, iso
from jobd.settings import HealthSection
from jobd.units import format_duration


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    summary: str  # one line for people
    details: dict[str, Any] = field(default_factory=dict)  # for --json

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "summary": self.summary, **self.details}


def evaluate(
    facts: HealthFacts, limits: HealthSection, now: float, gone: frozenset[int] = frozenset()
) -> list[Check]:
    """The five checks, in a fixed order. `gone`: the ids of nodes whose master
    process is known to have ended (checked on their own host) though their
    heartbeat may still look fresh."""
    return [
        _master(facts, limits, now, gone),
        _nodes(facts, limits, now, gone),
        _ready_jobs(facts, limits, now),
        _running_jobs(facts),
        _failure_rate(facts, limits),
    ]


def healthy(checks: list[Check]) -> bool:
    return all(check.ok for check in checks)


def _ago(seconds: float) -> str:
    return f"{format_duration(max(seconds, 0.0))} ago"


def gone_here(facts: HealthFacts, hostname: str) -> frozenset[int]:
    """The nodes of `hostname` whose recorded master pid no longer runs."""
    return frozenset(
        node.id
        for node in facts.nodes
        if node.hostname == hostname and not process_alive(node.pid, node.started_at)
    )


def _master(facts: HealthFacts, limits: HealthSection, now: float, gone: frozenset[int]) -> Check:
    stale_before = now - limits.node_stale_after
    live = [n for n in facts.nodes if n.heartbeat_at >= stale_before and n.id not in gone]
    details: dict[str, Any] = {
        "live_nodes": [node.id for node in live],
        "threshold_seconds": limits.node_stale_after,
    }
    if live:
        newest = max(live, key=lambda node: node.heartbeat_at)
        names = ", ".join(f"{node.name} (node {node.id})" for node in live)
        details["last_heartbeat"] = iso(newest.heartbeat_at)
        return Check("master", True, f"{len(live)} live: {names}", details)
    if not facts.nodes:
        return Check("master", False, "no master is running (no live node)", details)
    ended = [node for node in facts.nodes if node.id in gone]
    if ended:
        names = ", ".join(f"{n.name} (node {n.id}, pid {n.pid})" for n in ended)
        return Check("master", False, f"no master is running: {names} ended", details)
    newest = max(facts.nodes, key=lambda node: node.heartbeat_at)
    details["last_heartbeat"] = iso(newest.heartbeat_at)
    return Check(
        "master",
        False,
        f"no heartbeat within {format_duration(limits.node_stale_after)}: the last was "
        f"{_ago(now - newest.heartbeat_at)} ({newest.name}, node {newest.id})",
        details,
    )


def _nodes(facts: HealthFacts, limits: HealthSection, now: float, gone: frozenset[int]) -> Check:
    stale_before = now - limits.node_stale_after
    stale = [n for n in facts.nodes if n.heartbeat_at < stale_before or n.id in gone]
    problems = [
        f"{node.name} (node {node.id} on {node.hostname}): "
        + (
            f"its master (pid {node.pid}) has ended"
            if node.id in gone
            else f"no heartbeat for {format_duration(max(now - node.heartbeat_at, 0.0))}"
        )
        for node in stale
    ]
    for node in facts.lost:
        rescued = node.rescued_at if node.rescued_at is not None else now
        problems.append(
            f"{node.name} (node {node.id} on {node.hostname}): declared dead {_ago(now - rescued)}"
            f", no heartbeat since {iso(node.heartbeat_at)}"
        )
    details: dict[str, Any] = {
        "stale": [
            {"id": n.id, "name": n.name, "hostname": n.hostname,
             "heartbeat_age": round(max(now - n.heartbeat_at, 0.0), 3)}
            for n in stale
        ],
        "lost": [
            {"id": n.id, "name": n.name, "hostname": n.hostname,
             "rescued_at": iso(n.rescued_at), "last_heartbeat": iso(n.heartbeat_at)}
            for n in facts.lost
        ],
        "threshold_seconds": limits.node_stale_after,
    }  # fmt: skip
    if problems:
        shown = "; ".join(problems[:5])
        more = "" if len(problems) <= 5 else f" and {len(problems) - 5} more"
        return Check("nodes", False, f"{shown}{more}", details)
    return Check("nodes", True, f"{len(facts.nodes)} heartbeating", details)


def _ready_jobs(facts: HealthFacts, limits: HealthSection, now: float) -> Check:
    ages = {queue: now - run_at for queue, run_at in facts.oldest_ready.items()}
    details: dict[str, Any] = {
        "oldest_ready_age": {queue: round(max(age, 0.0), 3) for queue, age in sorted(ages.items())},
        "threshold_seconds": limits.ready_max_age,
    }
    if not ages:
        return Check("ready_jobs", True, "no job is waiting", details)
    queue = max(ages, key=lambda name: ages[name])
    waited = f"the oldest ready job has waited {format_duration(max(ages[queue], 0.0))} ({queue})"
    if ages[queue] > limits.ready_max_age:
        late = sorted(name for name, age in ages.items() if age > limits.ready_max_age)
        return Check(
            "ready_jobs",
            False,
            f"{waited}, over {format_duration(limits.ready_max_age)} in {', '.join(late)}: "
            "workers down or saturated",
            details,
        )
    return Check("ready_jobs", True, waited, details)


def _running_jobs(facts: HealthFacts) -> Check:
    details: dict[str, Any] = {
        "orphaned": facts.orphaned_count,
        "jobs": [{"id": job, "node_id": node} for job, node in facts.orphaned],
    }
    if not facts.orphaned_count:
        return Check("running_jobs", True, "every running job's node is alive", details)
    shown = ", ".join(f"#{job} (node {node})" for job, node in facts.orphaned[:5])
    more = "" if facts.orphaned_count <= 5 else f" and {facts.orphaned_count - 5} more"
    return Check(
        "running_jobs",
        False,
        f"{facts.orphaned_count} running jobs on dead nodes: {shown}{more}",
        details,
    )


def _failure_rate(facts: HealthFacts, limits: HealthSection) -> Check:
    rate = facts.failures / facts.attempts if facts.attempts else 0.0
    details: dict[str, Any] = {
        "attempts": facts.attempts,
        "failures": facts.failures,
        "rate": round(rate, 4),
        "threshold": limits.failure_rate,
        "window_seconds": limits.failure_window,
    }
    window = format_duration(limits.failure_window)
    counted = f"{facts.failures} of {facts.attempts} attempts failed in the last {window}"
    if facts.attempts < limits.failure_min_attempts:
        return Check(
            "failure_rate",
            True,
            f"{counted} (fewer than {limits.failure_min_attempts}: not judged)",
            details,
        )
    summary = f"{counted} ({rate:.1%}, limit {limits.failure_rate:.0%})"
    return Check("failure_rate", rate <= limits.failure_rate, summary, details)
