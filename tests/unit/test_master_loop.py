"""The master loop, stepped by hand: a fake clock, fake children, an in-memory store.

Children are socketpairs whose far ends this test drives: it plays the
template (ready, forked) and the workers (hello, done). Exits are injected
as wait statuses, signals as calls to `handle_signal`. The store is
`jobd.store.memory.MemoryStore`, which the store contract suite holds to
the SQL store's claims, settles and rescue (tests/integration); a test
marked `on_sqlite` runs on a SQLite file instead, for what only a SQL store
has (the wake-up datagram a producer's enqueue sends).
"""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobd import exitcodes
from jobd.records import JobState, NewJob
from jobd.schedule import Schedule
from jobd.settings import PoolSection, Settings, StoreSection
from jobd.store.contract import Store
from jobd.store.memory import MemoryStore
from jobd.store.sql import SQLStore
from jobd.supervisor.children import Channel
from jobd.supervisor.master import Master, Phase
from jobd.wire import LineReader, decode_from_template

T0 = 1_800_000_000.0
ROUTINE = "app.jobs:work"
CATALOG = {
    ROUTINE: {"queue": "default", "max_attempts": 2, "retry_delay": 5.0, "retry_jitter": 0.0}
}


class FakeClock:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = T0

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


class FakeNotifier:
    watchdog_usec = 0

    def __init__(self) -> None:
        self.sent: list[str] = []

    def reloading(self) -> None:
        self.sent.append("RELOADING=1")

    def watchdog(self) -> None:
        self.sent.append("WATCHDOG=1")

    def ready(self, status: str) -> None:
        self.sent.append("READY=1")

    def status(self, status: str) -> None:
        self.sent.append(f"STATUS={status}")

    def stopping(self) -> None:
        self.sent.append("STOPPING=1")

    def extend_timeout(self, seconds: float) -> None:
        self.sent.append("EXTEND_TIMEOUT_USEC")


class FakeWorker:
    """The far end of a worker's socket."""

    def __init__(self, sock: socket.socket, slot: int) -> None:
        self.sock, self.slot, self.reader = sock, slot, LineReader()
        self.sock.setblocking(False)

    def say(self, **message: Any) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def write(self, data: bytes) -> None:
        """Raw bytes, as a buggy worker might write them."""
        self.sock.sendall(data)

    def orders(self) -> list[dict[str, Any]]:
        try:
            return self.reader.feed(self.sock.recv(1 << 20))
        except BlockingIOError:
            return []

    def done(self, order: dict[str, Any], ok: bool = True, **extra: Any) -> None:
        reply = {
            "op": "done",
            "id": order["id"],
            "ok": ok,
            "started": T0,
            "finished": T0 + 0.01,
            "cpu": 0.001,
            "rss": 1 << 20,
            **extra,
        }
        self.say(**reply)


class FakeTemplate:
    def __init__(self, generation: int) -> None:
        self.pid, self.generation = 500 + generation, generation
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ours.setblocking(False)
        self.workers: dict[int, FakeWorker] = {}  # the latest fork of each slot
        self.forks: list[int] = []  # every fork request, by slot
        self.failed_hooks: list[dict[str, Any]] = []  # attempts ended outside their job

    def fileno(self) -> int:
        return self.ours.fileno()

    def receive(self) -> list[dict[str, Any]] | None:
        messages = []
        while True:
            try:
                data = self.ours.recv(1 << 16)
            except BlockingIOError:
                return messages
            if not data:
                return messages or None
            messages.append(decode_from_template(data))

    def fork_worker(self, slot: int, pool: str = "default") -> Channel:
        master_end, worker_end = socket.socketpair()
        self.workers[slot] = FakeWorker(worker_end, slot)
        self.forks.append(slot)
        return Channel(master_end)

    def run_failed_hooks(self, ended: dict[str, Any]) -> None:
        self.failed_hooks.append(ended)

    def stop(self) -> None:
        self.ours.close()

    def tell(self, **message: Any) -> None:
        self.theirs.send(json.dumps(message).encode())

    def write(self, data: bytes) -> None:
        """One datagram of raw bytes, as a template that went wrong would send."""
        self.theirs.send(data)


class FakeLauncher:
    def __init__(self) -> None:
        self.templates: list[FakeTemplate] = []
        self.kills: list[tuple[int, int]] = []
        self.exits: list[tuple[int, int]] = []
        self.group_kills: list[tuple[int, int]] = []
        self.memory: dict[int, int] = {}  # pid -> the RSS the master samples

    def start_template(self, settings: Settings, generation: int) -> FakeTemplate:
        template = FakeTemplate(generation)
        self.templates.append(template)
        return template

    def kill(self, pid: int, signum: int) -> None:
        self.kills.append((pid, signum))

    def kill_group(self, pgid: int, signum: int) -> None:
        self.group_kills.append((pgid, signum))

    def rss(self, pid: int, with_children: bool = False) -> int | None:
        return self.memory.get(pid)

    def reap(self) -> list[tuple[int, int]]:
        exits, self.exits = self.exits, []
        return exits


def killed_by(signum: int) -> int:
    return signum  # a wait status whose low bits are the signal


def exited_with(code: int) -> int:
    return code << 8


class Harness:
    def __init__(
        self, store: Store, reload: Any = None, schedules: tuple[Schedule, ...] = (), **pool: Any
    ) -> None:
        self.clock = FakeClock()
        self.launcher = FakeLauncher()
        self.notifier = FakeNotifier()
        settings = Settings(
            pool=PoolSection(
                **{
                    "min_workers": 2,
                    "max_workers": 2,
                    "graceful_timeout": 10.0,
                    "boot_timeout": 5.0,
                    **pool,
                }
            ),
            store=StoreSection(poll_interval=1.0, heartbeat_interval=60.0),
            schedules=schedules,
        )
        self.store = store
        self.master = Master(
            settings,
            store,
            launcher=self.launcher,
            clock=self.clock,
            notifier=self.notifier,  # type: ignore[arg-type]
            signals=False,
            reload=reload,
        )

    @property
    def template(self) -> FakeTemplate:
        return self.launcher.templates[-1]

    def step(self) -> None:
        self.master.step(0.05)

    def boot(self) -> list[FakeWorker]:
        self.master.start()
        self.template.tell(op="ready", catalog=CATALOG)
        self.step()
        workers = list(self.template.workers.values())
        for n, worker in enumerate(workers):
            self.template.tell(op="forked", slot=worker.slot, pid=1000 + n)
            worker.say(op="hello", pid=1000 + n)
        self.step()
        return workers

    def enqueue(self, max_attempts: int = 2) -> int:
        job = NewJob(
            ROUTINE, "default", 0, "[1]", "{}", self.clock.wall, self.clock.wall, max_attempts
        )
        return self.store.enqueue([job])[0].job.id

    def orders(self, workers: list[FakeWorker]) -> list[tuple[FakeWorker, dict[str, Any]]]:
        self.step()
        return [(w, order) for w in workers for order in w.orders()]


# The test needs a store on a SQLite file rather than the in-memory one.
on_sqlite = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if getattr(request, "param", "memory") == "memory":
        yield MemoryStore()
        return
    s = SQLStore(f"sqlite:///{tmp_path / 'jobd.db'}", timeout=2)
    s.upgrade()
    yield s
    s.close()


@pytest.fixture
def harness(store: Store) -> Iterator[Harness]:
    h = Harness(store)
    yield h
    h.master.close()


def test_ready_only_when_min_workers_said_hello(harness: Harness) -> None:
    harness.master.start()
    assert harness.template.workers == {}  # nothing forked before the template is ready
    harness.template.tell(op="ready", catalog=CATALOG)
    harness.step()
    assert sorted(harness.template.workers) == [1, 2]
    first, second = harness.template.workers.values()
    first.say(op="hello", pid=1000)
    harness.step()
    assert harness.master.phase is Phase.STARTING and "READY=1" not in harness.notifier.sent
    second.say(op="hello", pid=1001)
    harness.step()
    assert harness.master.phase is Phase.RUNNING and "READY=1" in harness.notifier.sent
    assert harness.store.routine_policies()[ROUTINE]["max_attempts"] == 2


def test_a_job_goes_to_an_idle_worker_and_its_result_is_recorded(harness: Harness) -> None:
    workers = harness.boot()
    job_id = harness.enqueue()
    harness.master.mark_ready()
    ((worker, order),) = harness.orders(workers)
    assert (order["op"], order["id"], order["routine"], order["args"]) == (
        "run",
        job_id,
        ROUTINE,
        [1],
    )
    worker.done(order, result='{"ok": true}')
    harness.step()
    job = harness.store.get_job(job_id)
    assert (job.state, job.result) == ("succeeded", {"ok": True})


@on_sqlite  # the datagram: the memory store has no wake source, as the contract allows
def test_a_wake_up_is_claimed_before_reaping_and_the_timers(harness: Harness) -> None:
    # The producer's datagram goes to the claim first: the housekeeping of the
    # step comes after the job is on its way (docs/performance.md).
    workers = harness.boot()
    claimed_when_reaping: list[int] = []
    reap = harness.launcher.reap

    def watched() -> list[tuple[int, int]]:
        claimed_when_reaping.append(harness.master.counters["claimed"])
        return reap()

    harness.launcher.reap = watched  # type: ignore[method-assign]
    job_id = harness.enqueue()  # the store's datagram wakes the master
    ((_worker, order),) = harness.orders(workers)
    assert order["id"] == job_id
    assert claimed_when_reaping == [1]


def test_the_scheduler_waits_for_the_pool_and_the_first_claims(harness: Harness) -> None:
    # Its first pass imports croniter and syncs every schedule (tens of ms):
    # jobs queued before the start go to the booted workers first.
    job_id = harness.enqueue()
    harness.master.start()
    assert harness.master.scheduler is not None
    passes: list[tuple[Phase, int]] = []
    tick = harness.master.scheduler.tick

    def watched(now: float) -> float | None:
        passes.append((harness.master.phase, harness.master.counters["claimed"]))
        return tick(now)

    harness.master.scheduler.tick = watched  # type: ignore[method-assign]
    harness.template.tell(op="ready", catalog=CATALOG)
    harness.step()
    assert passes == []  # booting: no pass yet
    for n, worker in enumerate(harness.template.workers.values()):
        harness.template.tell(op="forked", slot=worker.slot, pid=1000 + n)
        worker.say(op="hello", pid=1000 + n)
    harness.step()
    assert passes[0] == (Phase.RUNNING, 1)
    orders = [o for w in harness.template.workers.values() for o in w.orders()]
    assert [o["id"] for o in orders] == [job_id]


def test_a_fired_schedule_is_dispatched_in_the_same_step(store: Store) -> None:
    every = Schedule("tick", ROUTINE, every=10)
    harness = Harness(store, schedules=(every,))
    try:
        workers = harness.boot()
        assert harness.orders(workers) == []
        harness.clock.advance(10)
        ((_worker, order),) = harness.orders(workers)  # one step: fired, claimed, sent
        assert order["routine"] == ROUTINE
    finally:
        harness.master.close()


def test_a_worker_killed_mid_job_records_the_signal_and_retries(harness: Harness) -> None:
    workers = harness.boot()
    job_id = harness.enqueue()
    harness.master.mark_ready()
    ((worker, _order),) = harness.orders(workers)
    pid = 1000 + workers.index(worker)
    harness.launcher.exits.append((pid, killed_by(signal.SIGKILL)))
    harness.step()
    job = harness.store.get_job(job_id)
    assert (job.state, job.run_at) == ("queued", T0 + 5.0)  # retry_delay 5s, no jitter
    (attempt,) = harness.store.job_attempts(job_id)
    assert (attempt.outcome, attempt.error_type, attempt.worker_pid) == ("killed", "SIGKILL", pid)
    assert len(harness.template.forks) == 3  # the slot was forked again


def test_pipelined_jobs_of_a_dead_worker_go_back_uncounted(store: Store) -> None:
    harness = Harness(store, min_workers=1, max_workers=1)
    (worker,) = harness.boot()
    harness.master.workforce.runtimes.observe(
        ROUTINE, "default", 0.0001
    )  # short jobs may queue in a pipe
    ids = [harness.enqueue() for _ in range(3)]
    harness.master.mark_ready()
    orders = [order for _, order in harness.orders([worker])]
    assert [o["id"] for o in orders] == ids
    harness.launcher.exits.append((1000, killed_by(signal.SIGKILL)))
    harness.step()
    first, *rest = (harness.store.get_job(i) for i in ids)
    assert (first.state, first.attempts) == ("queued", 1)
    assert [(j.state, j.attempts) for j in rest] == [("queued", 0), ("queued", 0)]
    harness.master.close()


def test_a_worker_that_does_not_boot_in_time_is_killed_and_stops_the_master(
    harness: Harness,
) -> None:
    harness.master.start()
    harness.template.tell(op="ready", catalog=CATALOG)
    harness.step()
    for n, worker in enumerate(harness.template.workers.values()):
        harness.template.tell(op="forked", slot=worker.slot, pid=1000 + n)
    harness.step()
    harness.clock.advance(5.1)
    harness.step()
    assert (1000, signal.SIGKILL) in harness.launcher.kills
    assert harness.master.exit_code == exitcodes.BOOT_ERROR


def test_a_template_import_error_exits_3(harness: Harness) -> None:
    harness.master.start()
    harness.template.tell(op="boot_error", error="importing modules failed: ModuleNotFoundError")
    harness.step()
    assert harness.master.phase is Phase.DONE
    assert harness.master.exit_code == exitcodes.BOOT_ERROR


def test_sigterm_drains_then_kills_and_requeues_uncounted(harness: Harness) -> None:
    workers = harness.boot()
    job_id = harness.enqueue()
    harness.master.mark_ready()
    ((worker, _order),) = harness.orders(workers)
    harness.master.handle_signal(signal.SIGTERM)
    harness.step()
    assert "STOPPING=1" in harness.notifier.sent
    assert all(any(o["op"] == "stop" for o in w.orders()) for w in workers)
    idle = next(w for w in workers if w is not worker)
    harness.launcher.exits.append((1000 + workers.index(idle), exited_with(0)))
    harness.step()
    harness.clock.advance(10.1)  # graceful_timeout
    harness.step()
    busy_pid = 1000 + workers.index(worker)
    assert (busy_pid, signal.SIGTERM) in harness.launcher.kills
    harness.clock.advance(1.1)  # the kill grace
    harness.step()
    assert (busy_pid, signal.SIGKILL) in harness.launcher.kills
    harness.launcher.exits.append((busy_pid, killed_by(signal.SIGKILL)))
    harness.step()
    job = harness.store.get_job(job_id)
    assert (job.state, job.attempts) == ("queued", 0)
    assert harness.master.phase is Phase.DONE and harness.master.exit_code == 0


def test_repeated_crashes_back_off_before_respawning(harness: Harness) -> None:
    workers = harness.boot()
    for n in range(2):
        harness.launcher.exits.append((1000 + n, exited_with(1)))
    harness.step()
    forked = len(harness.template.forks)
    assert harness.master.workforce.respawn.not_before > harness.clock.mono
    harness.step()
    assert len(harness.template.forks) == forked  # still backing off
    harness.clock.advance(harness.master.workforce.respawn.not_before - harness.clock.mono + 0.01)
    harness.step()
    assert len(harness.template.forks) > forked
    assert workers  # the first generation was booted


def test_workers_killed_while_serving_jobs_are_replaced_at_once(store: Store) -> None:
    # An OOM killer or an operator, not a crash loop: no backoff however often.
    harness, (worker,) = booted_with(store, CATALOG, min_workers=1, max_workers=1)
    for n in range(6):
        harness.enqueue(max_attempts=10)
        harness.master.mark_ready()
        ((_, order),) = harness.orders([worker])
        if n % 2:  # after a finished job, idle: it had served
            worker.done(order)
            harness.step()
        forked = len(harness.template.forks)
        harness.launcher.exits.append((1000 + n, killed_by(signal.SIGKILL)))
        harness.step()
        assert harness.master.workforce.respawn.allows(harness.clock.mono), f"death {n + 1}"
        assert len(harness.template.forks) == forked + 1
        worker = harness.template.workers[worker.slot]
        harness.template.tell(op="forked", slot=worker.slot, pid=1001 + n)
        worker.say(op="hello", pid=1001 + n)
        harness.step()
    harness.master.close()


def test_a_worker_killed_while_booting_after_start_up_is_replaced(harness: Harness) -> None:
    slot = harness.boot()[0].slot
    harness.launcher.exits.append((1000, killed_by(signal.SIGKILL)))
    harness.step()
    harness.template.tell(op="forked", slot=slot, pid=1100)
    harness.step()
    harness.launcher.exits.append((1100, killed_by(signal.SIGKILL)))  # while it boots
    harness.step()
    assert harness.master.phase is Phase.RUNNING and harness.master.exit_code == exitcodes.OK
    harness.clock.advance(harness.master.workforce.respawn.not_before - harness.clock.mono)
    harness.step()
    assert harness.template.forks.count(slot) == 3  # forked again


def test_no_claims_while_the_store_fails_but_supervision_goes_on(harness: Harness) -> None:
    workers = harness.boot()
    harness.enqueue()
    harness.store.close()
    harness.master.store = BrokenStore()  # type: ignore[assignment]
    harness.master.mark_ready()
    harness.step()
    assert harness.master.dispatch.failures == 1
    harness.launcher.exits.append((1000, killed_by(signal.SIGKILL)))
    harness.step()
    assert 1000 not in harness.master.workforce.by_pid  # the death was still handled
    assert all(w.orders() == [] for w in workers)


class BrokenStore:
    def exchange_many(self, *args: object) -> list[object]:
        from jobd.store.contract import StoreError

        raise StoreError("database is locked")

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"unexpected store call {name}")


LIMITED = {
    ROUTINE: {"queue": "default", "max_attempts": 1, "time_limit": 10.0, "memory_limit": 100 << 20}
}


def booted_with(
    store: Store, catalog: dict[str, Any], **pool: Any
) -> tuple[Harness, list[FakeWorker]]:
    harness = Harness(store, **pool)
    harness.master.start()
    harness.template.tell(op="ready", catalog=catalog)
    harness.step()
    workers = list(harness.template.workers.values())
    for n, worker in enumerate(workers):
        harness.template.tell(op="forked", slot=worker.slot, pid=1000 + n)
        worker.say(op="hello", pid=1000 + n)
    harness.step()
    return harness, workers


def test_a_hard_time_limit_escalates_from_sigterm_to_sigkill(store: Store) -> None:
    harness, (worker,) = booted_with(store, LIMITED, min_workers=1, max_workers=1)
    job_id = harness.enqueue(max_attempts=1)
    harness.master.mark_ready()
    harness.orders([worker])
    harness.clock.advance(9.9)
    harness.step()
    assert harness.launcher.kills == []
    harness.clock.advance(0.2)
    harness.step()
    assert harness.launcher.kills == [(1000, signal.SIGTERM)]
    harness.clock.advance(3.1)  # kill_grace (3s by default)
    harness.step()
    assert harness.launcher.kills[-1] == (1000, signal.SIGKILL)
    harness.launcher.exits.append((1000, killed_by(signal.SIGKILL)))
    harness.step()
    (attempt,) = store.job_attempts(job_id)
    assert (attempt.outcome, attempt.error_type) == ("time_limit_exceeded", "SIGKILL")
    assert attempt.error_message == "ran 10s, over its time limit of 10s"
    assert store.get_job(job_id).state == "failed"
    harness.master.close()


def test_a_memory_limit_kills_at_once_and_records_the_rss(store: Store) -> None:
    harness, (worker,) = booted_with(store, LIMITED, min_workers=1, max_workers=1)
    job_id = harness.enqueue(max_attempts=1)
    harness.master.mark_ready()
    harness.orders([worker])
    harness.launcher.memory[1000] = 90 << 20
    harness.clock.advance(0.3)
    harness.step()
    assert harness.launcher.kills == []
    harness.launcher.memory[1000] = 150 << 20
    harness.clock.advance(0.3)
    harness.step()
    assert harness.launcher.kills == [(1000, signal.SIGKILL)]
    harness.launcher.exits.append((1000, killed_by(signal.SIGKILL)))
    harness.step()
    (attempt,) = store.job_attempts(job_id)
    assert (attempt.outcome, attempt.peak_rss) == ("memory_limit_exceeded", 150 << 20)
    harness.master.close()


def test_an_isolated_attempt_is_killed_as_its_process_group(store: Store) -> None:
    harness, (worker,) = booted_with(store, LIMITED, min_workers=1, max_workers=1)
    job_id = harness.enqueue(max_attempts=1)
    harness.master.mark_ready()
    ((_, order),) = harness.orders([worker])
    worker.say(op="horse", id=order["id"], pid=4242)
    harness.clock.advance(10.1)
    harness.step()
    assert harness.launcher.group_kills == [(4242, signal.SIGTERM)]
    assert harness.launcher.kills == []  # the worker itself lives on
    harness.clock.advance(3.1)
    harness.step()
    assert harness.launcher.group_kills[-1] == (4242, signal.SIGKILL)
    worker.done(order, ok=False, outcome="killed", error={"type": "SIGKILL", "message": "died"})
    harness.step()
    (attempt,) = store.job_attempts(job_id)
    assert (attempt.outcome, attempt.error_type) == ("time_limit_exceeded", "SIGKILL")
    harness.master.close()


def test_workers_are_retired_after_their_quota_and_replaced(store: Store) -> None:
    harness, (worker,) = booted_with(
        store, CATALOG, min_workers=1, max_workers=1, max_jobs_per_worker=1
    )
    harness.enqueue()
    harness.master.mark_ready()
    ((_, order),) = harness.orders([worker])
    worker.done(order)
    harness.step()
    assert {"op": "stop"} in worker.orders()
    assert len(harness.template.forks) == 2  # the replacement, forked at once
    harness.master.close()


def test_workers_over_max_worker_rss_are_retired(store: Store) -> None:
    harness, (worker,) = booted_with(
        store, CATALOG, min_workers=1, max_workers=1, max_worker_rss=50 << 20
    )
    harness.enqueue()
    harness.enqueue()
    harness.master.mark_ready()
    orders = [order for _, order in harness.orders([worker])]
    worker.done(orders[0], rss_now=40 << 20)
    harness.step()
    (second,) = worker.orders()
    assert second["op"] == "run"  # under the limit: the next job, no stop
    worker.done(second, rss_now=60 << 20)
    harness.step()
    assert {"op": "stop"} in worker.orders()
    harness.master.close()


# -- reload (SIGHUP) and pool bounds (SIGTTIN/SIGTTOU) ---------------------------


def settings_with(**pool: Any) -> Settings:
    return Settings(
        pool=PoolSection(**{"min_workers": 2, "max_workers": 4, "boot_timeout": 5.0, **pool}),
        store=StoreSection(poll_interval=1.0, heartbeat_interval=60.0),
    )


def boot_generation(harness: Harness, first_pid: int) -> list[FakeWorker]:
    """Play the newest template: ready, then fork and hello every worker it is asked for."""
    template = harness.template
    template.tell(op="ready", catalog=CATALOG)
    harness.step()
    workers = list(template.workers.values())
    for n, worker in enumerate(workers):
        template.tell(op="forked", slot=worker.slot, pid=first_pid + n)
        worker.say(op="hello", pid=first_pid + n)
    harness.step()
    return workers


def test_reload_boots_a_new_generation_then_retires_the_old(store: Store) -> None:
    harness = Harness(store, reload=lambda: settings_with(min_workers=3))
    old = harness.boot()
    harness.master.handle_signal(signal.SIGHUP)
    assert "RELOADING=1" in harness.notifier.sent
    assert len(harness.launcher.templates) == 2
    harness.notifier.sent.clear()
    new = boot_generation(harness, 2000)
    assert len(new) == 3
    assert all({"op": "stop"} in w.orders() for w in old)  # finish what they hold, then exit
    assert "READY=1" in harness.notifier.sent
    assert harness.master.settings.pool.min_workers == 3
    job_id = harness.enqueue()
    harness.master.mark_ready()
    ((worker, order),) = harness.orders(new + old)
    assert worker in new and order["id"] == job_id
    harness.master.close()


def test_new_workers_take_no_jobs_before_their_generation_takes_over(store: Store) -> None:
    harness = Harness(store, reload=lambda: settings_with(min_workers=2))
    old = harness.boot()
    harness.master.handle_signal(signal.SIGHUP)
    template = harness.template
    template.tell(op="ready", catalog=CATALOG)
    harness.step()
    first, _second = template.workers.values()
    template.tell(op="forked", slot=first.slot, pid=2000)
    first.say(op="hello", pid=2000)  # one of two: not yet
    harness.step()
    harness.enqueue()
    harness.master.mark_ready()
    ((worker, _order),) = harness.orders([*old, first])
    assert worker in old
    harness.master.close()


def test_a_config_error_on_reload_keeps_everything_running(store: Store) -> None:
    from jobd.settings import ConfigError

    def broken() -> Settings:
        raise ConfigError("jobd.toml: pool.min_workers: 'x' is not an integer")

    harness = Harness(store, reload=broken)
    old = harness.boot()
    harness.master.handle_signal(signal.SIGHUP)
    assert harness.notifier.sent[-2:] == ["RELOADING=1", "READY=1"]
    assert len(harness.launcher.templates) == 1
    assert "reload failed: jobd.toml: pool.min_workers" in harness.master.status_line()
    assert all(w.orders() == [] for w in old)
    harness.master.close()


def test_an_import_error_in_the_new_code_keeps_the_old_generation(store: Store) -> None:
    harness = Harness(store, reload=lambda: settings_with(min_workers=2))
    old = harness.boot()
    harness.master.handle_signal(signal.SIGHUP)
    harness.template.tell(op="boot_error", error="importing modules failed: SyntaxError")
    harness.step()
    assert "reload failed: importing modules failed: SyntaxError" in harness.master.status_line()
    assert harness.master.phase.value == "running"
    assert all(w.orders() == [] for w in old)  # nobody was told to stop
    job_id = harness.enqueue()
    harness.master.mark_ready()
    ((_worker, order),) = harness.orders(old)
    assert order["id"] == job_id
    harness.master.close()


def test_sigttin_and_sigttou_move_the_pool_bounds(harness: Harness) -> None:
    workers = harness.boot()
    harness.master.handle_signal(signal.SIGTTIN)
    assert harness.master.sizes.bounds("default") == (3, 3)
    assert len(harness.template.forks) == 3
    harness.master.handle_signal(signal.SIGTTOU)
    harness.master.handle_signal(signal.SIGTTOU)
    assert harness.master.sizes.bounds("default") == (1, 1)
    stopped = [w.slot for w in workers if {"op": "stop"} in w.orders()]
    assert stopped == [2]  # the unbooted third went first, then the highest idle one


# -- autoscaling and pools --------------------------------------------------------


def scaled_harness(store: Store, pools: dict[str, dict[str, Any]] | None = None) -> Harness:
    from jobd.settings import PoolSpec

    harness = Harness(
        store, min_workers=1, max_workers=4, scale_interval=1.0, scale_cooldown=5.0,
        idle_timeout=3.0, max_step=2, scale_up_threshold=2.0,
    )  # fmt: skip
    if pools:
        section = harness.master.settings.pool
        specs = tuple(
            PoolSpec(name=name, weights=None, **{
                **{k: getattr(section, k) for k in (
                    "queues", "min_workers", "max_workers", "scale_up_threshold", "clear_within",
                    "max_step", "scale_interval", "scale_cooldown", "hysteresis", "idle_timeout",
                )},
                **values,
            })
            for name, values in pools.items()
        )  # fmt: skip
        import dataclasses

        settings = dataclasses.replace(harness.master.settings, pools=specs)
        harness.master.close()
        harness = Harness.__new__(Harness)
        harness.clock, harness.launcher, harness.notifier = (
            FakeClock(),
            FakeLauncher(),
            FakeNotifier(),
        )
        harness.store = store
        harness.master = Master(
            settings, store, launcher=harness.launcher, clock=harness.clock,
            notifier=harness.notifier, signals=False,  # type: ignore[arg-type]
        )  # fmt: skip
    return harness


def hello_all(harness: Harness, first_pid: int = 1000) -> list[FakeWorker]:
    template = harness.template
    fresh = [w for slot, w in template.workers.items() if not getattr(w, "booted", False)]
    for n, worker in enumerate(fresh):
        template.tell(op="forked", slot=worker.slot, pid=first_pid + n)
        worker.say(op="hello", pid=first_pid + n)
        worker.booted = True  # type: ignore[attr-defined]
    harness.step()
    return fresh


def work_until_empty(harness: Harness) -> None:
    """Play every worker: answer each run order until no job is left."""
    for _ in range(100):
        harness.step()
        orders = [(w, o) for w in harness.template.workers.values() for o in w.orders()]
        runs = [(w, o) for w, o in orders if o["op"] == "run"]
        if not runs and not harness.store.count_queued(("default",)):
            return
        for worker, order in runs:
            worker.done(order)
    raise AssertionError("jobs still left")


def test_a_backlog_grows_the_pool_fast_and_idleness_shrinks_it_slowly(store: Store) -> None:
    harness = scaled_harness(store)
    harness.master.start()
    harness.template.tell(op="ready", catalog=CATALOG)
    harness.step()
    hello_all(harness, 1000)
    assert len(harness.template.forks) == 1  # starts at the minimum
    for _ in range(20):
        harness.enqueue()
    harness.clock.advance(1.0)
    harness.step()  # 20 ready, threshold 2/worker: grow by max_step
    assert harness.master.sizes.target("default") == 3
    hello_all(harness, 1100)
    harness.clock.advance(1.0)
    harness.step()
    assert harness.master.sizes.target("default") == 4  # the bound
    hello_all(harness, 1200)
    work_until_empty(harness)
    # all done, the workers idle: they may go only after idle_timeout and the cooldown
    harness.clock.advance(1.0)
    harness.step()
    assert harness.master.sizes.target("default") == 4  # idle, but not for long enough
    harness.clock.advance(5.0)
    harness.step()
    assert harness.master.sizes.target("default") < 4
    stopped = [w for w in harness.template.workers.values() if {"op": "stop"} in w.orders()]
    assert stopped, "idle workers retire"
    harness.master.close()


def test_each_pool_claims_for_its_own_workers(store: Store) -> None:
    harness = scaled_harness(
        store,
        {
            "bulk": {"queues": ("bulk",), "max_workers": 1},
            "emails": {"queues": ("emails",), "max_workers": 1},
        },
    )
    harness.master.start()
    harness.template.tell(op="ready", catalog=CATALOG)
    harness.step()
    workers = hello_all(harness, 1000)
    assert len(workers) == 2
    now = harness.clock.wall
    store.enqueue([NewJob(ROUTINE, "bulk", 0, "[1]", "{}", now, now, 1) for _ in range(50)])
    email = store.enqueue([NewJob(ROUTINE, "emails", 0, "[2]", "{}", now, now, 1)])[0].job.id
    harness.master.mark_ready()
    harness.step()
    claimed = {w.slot: [o["id"] for o in w.orders() if o["op"] == "run"] for w in workers}
    assert sorted(len(ids) for ids in claimed.values()) == [1, 1]  # one each, despite the flood
    assert email in [i for ids in claimed.values() for i in ids]
    harness.master.close()


def test_queue_counts_stop_at_the_cap_and_the_status_says_so(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobd.supervisor import autoscaler

    # 4 workers * threshold 2 = 8 ready jobs already ask for every worker.
    monkeypatch.setattr(autoscaler, "LOAD_CAP_MIN", 1)
    harness = scaled_harness(store)
    assert autoscaler.load_cap(harness.master.workforce.pools.values()) == 8
    harness.master.start()
    harness.template.tell(op="ready", catalog=CATALOG)
    harness.step()
    hello_all(harness, 1000)
    for _ in range(20):
        harness.enqueue()
    harness.clock.advance(1.0)
    harness.step()
    assert (harness.master.queues.queued, harness.master.queues.capped) == (8, True)
    assert "8+ queued" in harness.master.status_line()
    assert harness.master.sizes.target("default") == 3  # the decision is the uncapped one
    harness.master.close()


# -- a worker's malformed message ----------------------------------------------------

MALFORMED_DONE = {
    "truncated": b'{"op":"done","id":%d,"ok":true,"started":1.0,"fin\n',
    "not UTF-8": b'{"op":"done","id":%d,"ok":true,"result":"\xff"}\n',
    "a wrong type": b'{"op":"done","id":%d,"ok":true,"started":"now","finished":2.0}\n',
    "a missing field": b'{"op":"done","id":%d,"ok":true,"started":1.0}\n',
    "an unknown kind": b'{"op":"finished","id":%d}\n',
}


@pytest.mark.parametrize("kind", list(MALFORMED_DONE))
def test_a_malformed_done_kills_its_worker_and_records_the_attempt(
    harness: Harness, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    workers = harness.boot()
    job_id = harness.enqueue(max_attempts=2)
    harness.master.mark_ready()
    ((worker, order),) = harness.orders(workers)
    pid = 1000 + workers.index(worker)
    good = json.dumps({"op": "done", "id": job_id, "ok": True, "started": T0, "finished": T0})
    caplog.clear()
    # a valid done right behind the bad line: nothing after it is trusted
    worker.write(MALFORMED_DONE[kind] % job_id + good.encode() + b"\n")
    harness.step()
    (line,) = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert f"pid {pid}" in line.getMessage() and line.levelname == "ERROR"
    assert (pid, signal.SIGKILL) in harness.launcher.kills
    assert harness.store.get_job(job_id).state == "running"
    harness.launcher.exits.append((pid, killed_by(signal.SIGKILL)))
    harness.step()
    (attempt,) = harness.store.job_attempts(job_id)
    assert (attempt.outcome, attempt.error_type) == ("killed", "SIGKILL")
    assert attempt.error_message is not None
    assert attempt.error_message.startswith("malformed message: ")
    job = harness.store.get_job(job_id)
    assert (job.state, job.run_at) == ("queued", T0 + 5.0)  # retried by its policy
    # the master goes on: the next job is served and recorded
    other = harness.enqueue()
    harness.master.mark_ready()
    ((server, order),) = harness.orders([w for w in workers if w is not worker])
    assert order["id"] == other
    server.done(order)
    harness.step()
    assert harness.store.get_job(other).state == "succeeded"
    assert len(harness.template.forks) == 3  # the killed worker's slot was forked again


def test_a_malformed_last_attempt_fails_the_job(harness: Harness) -> None:
    workers = harness.boot()
    job_id = harness.enqueue(max_attempts=1)
    harness.master.mark_ready()
    ((worker, _order),) = harness.orders(workers)
    pid = 1000 + workers.index(worker)
    worker.write(b"\x00\x01 not a message\n")
    harness.step()
    assert (pid, signal.SIGKILL) in harness.launcher.kills
    harness.launcher.exits.append((pid, killed_by(signal.SIGKILL)))
    harness.step()
    assert harness.store.get_job(job_id).state == "failed"
    (attempt,) = harness.store.job_attempts(job_id)
    assert attempt.outcome == "killed"
    assert attempt.error_message == (
        "malformed message: not JSON (Expecting value: line 1 column 1 (char 0)): "
        "\\x00\\x01 not a message"
    )


def test_an_idle_workers_garbage_costs_only_that_worker(harness: Harness) -> None:
    workers = harness.boot()
    workers[0].write(b'{"op":"hello","pid":"one"}\n')
    harness.step()
    assert harness.launcher.kills == [(1000, signal.SIGKILL)]
    harness.launcher.exits.append((1000, killed_by(signal.SIGKILL)))
    harness.step()
    assert harness.master.phase is Phase.RUNNING
    assert len(harness.template.forks) == 3


def test_a_malformed_last_line_of_a_dead_worker_sends_no_signal(harness: Harness) -> None:
    # Read after the worker was reaped: its pid may already be another process's.
    workers = harness.boot()
    job_id = harness.enqueue()
    harness.master.mark_ready()
    ((worker, _order),) = harness.orders(workers)
    pid = 1000 + workers.index(worker)
    worker.write(b'{"op":"done","id":%d,"ok":tru\n' % job_id)
    harness.launcher.exits.append((pid, exited_with(1)))
    harness.master.workforce.reap()  # reaped before the selector saw the line
    harness.step()
    assert harness.launcher.kills == []
    (attempt,) = harness.store.job_attempts(job_id)
    assert (attempt.outcome, attempt.error_type) == ("killed", "WorkerExit")
    assert harness.store.get_job(job_id).state == "queued"


def test_a_template_stopped_earlier_in_the_step_is_not_read(store: Store) -> None:
    # The new generation takes over (its last hello) in the step in which the
    # old template is also readable: the take-over stops it, and its turn in
    # the same step's events must not read it.
    harness = Harness(store, reload=lambda: settings_with(min_workers=2))
    harness.boot()
    old_template = harness.template
    harness.master.handle_signal(signal.SIGHUP)
    template = harness.template
    template.tell(op="ready", catalog=CATALOG)
    harness.step()
    first, second = template.workers.values()
    template.tell(op="forked", slot=first.slot, pid=2000)
    template.tell(op="forked", slot=second.slot, pid=2001)
    first.say(op="hello", pid=2000)
    harness.step()
    second.say(op="hello", pid=2001)  # the take-over, first in the step's events
    old_template.tell(op="forked", slot=99, pid=3000)
    harness.step()
    assert harness.master.workforce.generation == 2
    harness.master.close()


@pytest.mark.parametrize(
    "garbage",
    [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"op": "forked", "slot": 1}', b'{"op": "ready"}'],
    ids=["truncated", "not-utf8", "not-an-object", "missing-pid", "missing-catalog"],
)
def test_a_malformed_message_from_the_template_never_stops_the_master(
    harness: Harness, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    workers = harness.boot()
    assert harness.master.phase is Phase.RUNNING
    first = harness.template
    first.write(garbage)
    harness.step()  # raised out of step() before
    assert "template of generation 1: malformed message" in caplog.text
    assert first.ours.fileno() == -1  # stopped: nothing it says later is read
    # The workers it forked live on and serve the next job.
    job_id = harness.enqueue()
    harness.master.mark_ready()
    ((worker, order),) = harness.orders(workers)
    worker.done(order, result="1")
    harness.step()
    harness.step()
    assert harness.store.get_job(job_id).state == JobState.SUCCEEDED
