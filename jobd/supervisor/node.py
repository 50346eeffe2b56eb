"""This master as a node of the store: it joins, heartbeats and leaves.

The store work of each is in duties.py. This keeps what lasts from one
heartbeat to the next (the node's identity, and from when it may judge
other nodes by their heartbeats: `duties.heartbeat`) and turns a store
failure into a log line, so the master gets a decision (a `Beat`) or none.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from jobd.store.contract import Store, StoreError
from jobd.supervisor import duties
from jobd.supervisor.catalog import Decider

log = logging.getLogger("jobd.master")


class Node:
    def __init__(self, name: str | None) -> None:
        hostname = socket.gethostname()
        self.me = duties.Identity(0, name or hostname, hostname)
        self.judge_from = 0.0  # store clock: no judging others' heartbeats before

    @property
    def id(self) -> int:
        return self.me.id

    def join(
        self,
        store: Store,
        window: float,
        now: float,
        decider: Decider,
        failed_hooks: duties.FailedHooks | None = None,
    ) -> int:
        """Register this master (refusing a live namesake) and rescue at once the
        earlier incarnations of this node on this host; how many were rescued."""
        self.me = duties.join(store, self.me, window, now)
        return duties.rescue_dead_local_nodes(store, self.me, now, decider, failed_hooks)

    def beat(
        self,
        store: Store,
        window: float,
        now: float,
        info: dict[str, Any],
        decider: Decider,
        failed_hooks: duties.FailedHooks | None = None,
    ) -> duties.Beat | None:
        """One heartbeat's store work (duties.heartbeat); None if the store failed."""
        try:
            beat = duties.heartbeat(
                store, self.me, window, now, info, decider, self.judge_from, failed_hooks
            )
        except StoreError as exc:
            log.warning("heartbeat: %s", exc)
            return None
        self.judge_from = beat.judge_from
        return beat

    def leave(self, store: Store, now: float) -> None:
        duties.leave(store, self.me, now)
