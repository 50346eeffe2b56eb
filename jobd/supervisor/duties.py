"""The master's duties as a node: the rescue of dead nodes' jobs, and heartbeat gaps.

A rerun happens only when the run that held a job is provably dead, and
there are two proofs:

- on its own host, a node is dead when its master's pid no longer exists
  (or now belongs to a younger process), so a restarted master puts the
  running jobs of its earlier incarnations (same host name, same node name)
  back at once instead of waiting for a timeout;
- anywhere, a node is dead when its heartbeat is older than
  `store.node_timeout`: every heartbeat, each master rescues such nodes, on
  any host (the store makes sure that happens once).

Nodes with other names on the same host are treated as other hosts (the
heartbeat rule): several masters may share a host name but not a pid
namespace (containers), and a pid is only proof inside its own namespace.

Each attempt a rescue records as `lost` gets the application's `job_failed`
hooks, as an attempt a worker's death ended does: the rescuer's template runs
them (`failed_hooks`), once the rescue has committed, so a rescue another node
won, or one that failed, runs none.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobd.processes import process_alive
from jobd.records import Claim, Pulse, Settle
from jobd.settings import ConfigError
from jobd.store.contract import Store, StoreError
from jobd.supervisor.catalog import Decider
from jobd.supervisor.deaths import rescued_hooks_order
from jobd.units import format_duration

log = logging.getLogger("jobd.master")

# Hands an order for the job_failed hooks of a lost attempt to a template.
FailedHooks = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Identity:
    """This node: its id in the store, its name and its host."""

    id: int
    name: str
    hostname: str


class NodeConflict(ConfigError):
    """Another live master already is this node (same name, same host)."""


def refuse_namesake(store: Store, name: str, hostname: str, window: float, now: float) -> None:
    """Raise NodeConflict if a live master on this host already runs as node `name`:
    two masters of one node would each take the other's running jobs for lost.

    Live means: not stopped, a heartbeat within `window`, and its master's pid
    alive since it started (a pid is proof on its own host only, hence the host
    name must match too).
    """
    for other in store.nodes():
        if (other.hostname, other.name) != (hostname, name) or other.heartbeat_at < now - window:
            continue
        if process_alive(other.pid, other.started_at):
            raise NodeConflict(
                f"node {name!r} is already running on {hostname} (master pid {other.pid}, "
                f"node {other.id}): stop it, or give this master its own jobd.node_name"
            )


def join(store: Store, me: Identity, window: float, now: float) -> Identity:
    """Register this master as a node (refusing a live namesake); its identity."""
    refuse_namesake(store, me.name, me.hostname, window, now)
    node_id = store.register_node(me.name, me.hostname, os.getpid(), now)
    return Identity(node_id, me.name, me.hostname)


def rescue(
    store: Store,
    node_id: int,
    now: float,
    decide: Callable[[Claim], Settle],
    timeout: float | None,
    failed_hooks: FailedHooks | None,
) -> list[Settle]:
    """`store.rescue_node`, then the job_failed hooks of the attempts it lost."""
    held: dict[int, Claim] = {}

    def deciding(claim: Claim) -> Settle:
        held[claim.id] = claim
        return decide(claim)

    settles = store.rescue_node(node_id, now, deciding, timeout=timeout)
    if failed_hooks is not None:
        for settle in settles:
            attempt = settle.attempt
            if attempt is not None and attempt.outcome == "lost" and settle.job_id in held:
                failed_hooks(rescued_hooks_order(held[settle.job_id], attempt))
    return settles


def rescue_dead_local_nodes(
    store: Store,
    me: Identity,
    now: float,
    decider: Decider,
    failed_hooks: FailedHooks | None = None,
) -> int:
    """Earlier incarnations of this node whose master pid is gone: rescued at once.
    How many nodes were rescued."""
    rescued = 0
    for other in store.nodes():
        if other.id == me.id or (other.hostname, other.name) != (me.hostname, me.name):
            continue
        if process_alive(other.pid, other.started_at):
            continue
        why = f"node {other.id} (master pid {other.pid}) died while the job ran"
        settles = rescue(store, other.id, now, decider(other.id, why), None, failed_hooks)
        log.warning(
            "node %s (pid %s) is dead: %d of its running jobs put back or failed",
            other.id, other.pid, len(settles),
        )  # fmt: skip
        rescued += 1
    return rescued


def rescue_stale_nodes(
    store: Store,
    me: Identity,
    window: float,
    now: float,
    decider: Decider,
    failed_hooks: FailedHooks | None = None,
) -> int:
    """Nodes, on any host, whose heartbeat is older than `window` (store.node_timeout).
    How many of them had running jobs that were put back."""
    rescued = 0
    for other in store.dead_nodes(now, window, exclude=me.id):
        why = (
            f"node {other.id} ({other.name} on {other.hostname}, master pid {other.pid}) "
            f"stopped heartbeating for over {format_duration(window)} while the job ran"
        )
        settles = rescue(store, other.id, now, decider(other.id, why), window, failed_hooks)
        if not settles:  # it held nothing, or another node got to it first
            log.info(
                "node %s (%s on %s) has not heartbeated for over %s: dead",
                other.id, other.name, other.hostname, format_duration(window),
            )  # fmt: skip
            continue
        log.warning(
            "node %s (%s on %s) has not heartbeated for over %s: %d of its running jobs "
            "put back or failed",
            other.id, other.name, other.hostname, format_duration(window), len(settles),
        )  # fmt: skip
        rescued += 1
    return rescued


def notice_gap(node_id: int, pulse: Pulse | None, window: float) -> None:
    """A heartbeat after a long silence: other nodes may have taken this node's jobs.

    Nothing to undo: this node's settles apply only to jobs still running on it
    in the attempt they report, so a job rescued and run elsewhere keeps that
    run's outcome; this node's late results are recorded as attempts only.
    """
    if pulse is None:
        return
    if pulse.was_stopped_at is not None:
        log.warning(
            "node %s was declared dead by another node (no heartbeat for over %s) and is "
            "live again: the jobs it was running were put back and may run twice",
            node_id, format_duration(window),
        )  # fmt: skip
    elif pulse.at - pulse.previous > window:
        log.warning(
            "node %s could not record a heartbeat for %s (over store.node_timeout, %s): "
            "other nodes may have put its running jobs back",
            node_id, format_duration(pulse.at - pulse.previous), format_duration(window),
        )  # fmt: skip


@dataclass(frozen=True)
class Beat:
    """What a heartbeat's store work decided: the jobs to stop, how many nodes were
    rescued (their jobs may be ready again), and from when (on the store's clock)
    this node may judge other nodes by their heartbeats."""

    cancels: list[int]
    rescued: int
    judge_from: float


def heartbeat(
    store: Store,
    me: Identity,
    window: float,
    now: float,
    info: dict[str, Any],
    decider: Decider,
    judge_from: float = 0.0,
    failed_hooks: FailedHooks | None = None,
) -> Beat:
    """A heartbeat's store work: record that this node lives (and what it runs), read
    the cancel requests for its running jobs, rescue dead nodes.

    A node that could not heartbeat for over half the window was cut off, most
    likely with everyone else (the database restarted or was unreachable): the
    others' heartbeats are as old as its own, for the same reason, and they may
    simply not have reconnected yet. So it judges no other node by its heartbeat
    until one full window after its own reconnection; dead masters on this host
    are still seen at once by their pid. (Judging at once after a global outage
    took live nodes for dead and ran their jobs a second time.)
    """
    pulse = store.heartbeat(me.id, now, info)
    notice_gap(me.id, pulse, window)
    if pulse is not None and pulse.at - pulse.previous > window / 2:
        judge_from = max(judge_from, pulse.at + window)
        log.warning(
            "node %s was cut off from the store for %s: other nodes are judged by their "
            "heartbeats again after %s, once they too have had time to reconnect",
            me.id, format_duration(pulse.at - pulse.previous), format_duration(window),
        )  # fmt: skip
    cancels = store.cancel_requests(me.id)
    rescued = rescue_dead_local_nodes(store, me, now, decider, failed_hooks)
    if pulse is None or pulse.at >= judge_from:
        rescued += rescue_stale_nodes(store, me, window, now, decider, failed_hooks)
    return Beat(cancels, rescued, judge_from)


def leave(store: Store, me: Identity, now: float) -> None:
    """Mark this node stopped, its jobs settled (a store that cannot is logged)."""
    try:
        store.stop_node(me.id, now)
    except StoreError as exc:
        log.warning("could not mark node %s stopped: %s", me.id, exc)
