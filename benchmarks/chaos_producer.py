"""The chaos run's producer: jobs enqueued while the faults land.

A thread with a `jobd.Client` of its own enqueues its share of the jobs in
small batches, spread over the fault window. Every job has a unique key
(`chaos-<seed>-<n>`), so a batch whose call failed (the server down, the
disk full, the database locked) is sent again with the same keys: a key
whose first call did commit comes back as the job already queued, or, if
that job already ended, makes a second job the audit can see as a duplicate
enqueue (two jobs, one key) rather than mistake for a lost one. Failures are
counted by kind; anything but a `StoreError` is a fault of the client.

A thread, not a process: the chaos loop forks nothing after it starts, and
the Client is documented as safe to share between threads (one connection
each).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

RETRY_PAUSE = 0.2  # between two tries of a failed batch (chaos pacing, not synchronisation)


def error_kind(message: str) -> str:
    """A store failure's kind, from its one line."""
    lowered = message.lower()
    if " is full" in lowered:
        return "disk full"
    if "locked" in lowered or "busy" in lowered:
        return "database locked"
    if any(
        word in lowered
        for word in ("connect", "server closed", "terminat", "shut down", "shutdown", "eof")
    ):
        return "server down"
    return "other: " + message[:80]


@dataclass
class Produced:
    """What the producer was told and what it went through."""

    keys: dict[str, int] = field(default_factory=dict)  # unique key -> the job id returned
    errors: Counter[str] = field(default_factory=Counter)  # failed calls, by kind
    retried_keys: set[str] = field(default_factory=set)  # keys sent again after a failure
    batches: int = 0
    unexpected: list[str] = field(default_factory=list)  # not a StoreError: the client's fault


class Producer:
    def __init__(
        self,
        database: str,
        spec: Any,
        seed: int,
        count: int,
        span: float,
        batch: int = 20,
        give_up_after: float = 300.0,
    ) -> None:
        self.database = database
        self.spec = spec  # a function: unique key -> JobSpec
        self.seed = seed
        self.count = count
        self.span = span  # seconds over which the batches are spread
        self.batch = batch
        self.give_up_after = give_up_after
        self.produced = Produced()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="chaos-producer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def run(self) -> None:
        import jobd

        keys = [f"chaos-{self.seed}-{n}" for n in range(self.count)]
        batches = [keys[i : i + self.batch] for i in range(0, len(keys), self.batch)]
        interval = self.span / max(1, len(batches))
        started = time.monotonic()
        client: Any = None
        try:
            client = jobd.Client(self.database, timeout=2.0)
            for number, batch in enumerate(batches):
                due = started + number * interval
                if self.stop.wait(max(0.0, due - time.monotonic())):
                    return
                self.send(client, batch)
        except Exception as exc:  # the client itself would not open: say so
            self.produced.unexpected.append(f"{type(exc).__name__}: {exc}")
        finally:
            if client is not None:
                client.close()

    def send(self, client: Any, batch: list[str]) -> None:
        """One batch, tried again with the same keys until it is in (or time is up)."""
        from jobd.store.contract import StoreError

        produced = self.produced
        deadline = time.monotonic() + self.give_up_after
        while not self.stop.is_set():
            try:
                jobs = client.enqueue_many([self.spec(key) for key in batch])
            except StoreError as exc:
                produced.errors[error_kind(str(exc))] += 1
                produced.retried_keys.update(batch)
            except Exception as exc:
                produced.unexpected.append(f"{type(exc).__name__}: {exc}")
                return
            else:
                produced.keys.update(zip(batch, (job.id for job in jobs), strict=True))
                produced.batches += 1
                return
            if time.monotonic() > deadline or self.stop.wait(RETRY_PAUSE):
                produced.unexpected.append(f"batch {batch[0]}.. not in after retries")
                return


@dataclass
class EnqueueAudit:
    jobs: list[int]  # every job to audit: those enqueued, and the explained duplicates
    missing: list[int]  # ids the producer was told of that the store has not (with its key)
    duplicates: int  # second jobs of a key whose call failed and was sent again
    unexplained: list[str]  # jobs in the store that no one was told of


def audit_enqueues(ids: list[int], rows: list[Any], produced: Produced) -> EnqueueAudit:
    """What the store holds against what the enqueuers were told.

    `ids`: every job id an enqueue call returned; `rows`: every job in the store
    (`id`, `unique_key`). A key the producer was told was in must name a job
    with that key. A job no call returned is a duplicate enqueue when its key
    was sent again after a failed call (that call had committed after all, and
    its job had ended before the retry, so the key was free again); any other
    is a job enqueued by no one."""
    by_id = {row.id: row for row in rows}
    missing = [
        job
        for key, job in produced.keys.items()
        if job not in by_id or by_id[job].unique_key != key
    ]
    wanted = set(ids)
    extra: list[int] = []
    unexplained: list[str] = []
    for row in rows:
        if row.id in wanted:
            continue
        if row.unique_key in produced.retried_keys:
            extra.append(row.id)  # it must run and end all the same
        else:
            unexplained.append(f"job {row.id} ({row.unique_key or 'no key'}) enqueued by no one")
    return EnqueueAudit(ids + extra, missing, len(extra), unexplained)
