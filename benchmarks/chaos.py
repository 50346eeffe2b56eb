"""Chaos: real `jobd run` nodes under random faults, then an audit of every job.

    .venv/bin/python benchmarks/chaos.py [--backend sqlite|postgres] [--jobs 10000]
        [--seconds 120] [--seed 1] [--nodes 1] [--workers 2] [--fault-every 1.0]

Enqueues `--jobs` jobs of `chaos_routines:append`, which appends one line per
run to a ledger (job, attempt, pid, node) and then works for a few
milliseconds, chosen so that the jobs take about `--seconds` to drain. While
they drain, faults are sent at random intervals drawn from `--seed`:

- worker_kill: SIGKILL to a random busy or idle worker of a random node;
- master_kill: SIGKILL to a node's master; a restart loop starts it again
  100 ms after it exits, as `Restart=on-failure` would;
- bad_reload: a broken config file (bad TOML or a bad value) and SIGHUP, then
  the good file back and SIGHUP again;
- freeze (PostgreSQL, 2 nodes or more): SIGSTOP to a whole node (its process
  group) for longer than its heartbeat window, then SIGCONT;
- pg_restart, pg_outage (PostgreSQL): the run's own cluster (made with
  pg_createcluster on a free port; the shared server is never touched) is
  stopped at once and started again, at once or after up to 2.5 windows;
- disk_full (SQLite, as root): the database lives on a tmpfs of the run's
  own, sized for the jobs (chaos_disk.py); a ballast file fills it to the
  last byte for 0.5-3 s, then is deleted.

`--enqueue-during` of the jobs (half by default) are not enqueued before the
faults but by a producer thread, in small batches through the fault window,
each job with a unique key; a batch whose call fails is sent again with the
same keys, and the failures are counted by kind (chaos_producer.py).

Then every fault is healed, the jobs drain, the nodes are stopped with
SIGTERM, and the audit checks: every job terminal, every job in the ledger,
every job the producer was told was enqueued in the store, any second job of
one unique key explained by a failed call sent again, every run beyond a
job's succeeding attempt explained by an attempt the store recorded as
killed, lost or interrupted, no traceback in any daemon's output, no process
left in any master's session. It prints a summary and
exits 1 if anything failed. `run_chaos()` is what tests/chaos runs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import heapq
import itertools
import os
import random
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_disk import SmallDisk, disk_size
from chaos_producer import Produced, Producer, audit_enqueues

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROUTINE = "chaos_routines:append"
JOBD = [sys.executable, "-c", "from jobd.cli import run; run()"]
EXPLAINING = ("killed", "lost", "interrupted")  # outcomes of a run that may have run
TERMINAL = ("succeeded", "failed", "cancelled")
HEARTBEAT = 0.2
NODE_TIMEOUT = 2.0
RESTART_SEC = 0.1

BROKEN_CONFIGS = (
    "[jobd\nthis is not TOML\n",
    None,  # the good file with a bad value (filled in per node)
)


@dataclass
class Options:
    backend: str = "sqlite"
    jobs: int = 2000
    seconds: float = 40.0
    seed: int = 1
    nodes: int = 1
    workers: int = 2
    fault_every: float = 1.0  # mean seconds between faults
    drain_timeout: float = 300.0
    root: Path | None = None  # a directory for the run (else a temporary one)
    pg_url: str | None = None  # a cluster given by the caller (tests); else one is made
    pg_cluster: Any = None  # an OwnCluster to stop and start (with pg_url)
    job_seconds: float | None = None  # each job's work (else derived from --seconds)
    enqueue_during: float = 0.0  # the fraction of the jobs the producer enqueues in the window
    disk: bool | None = None  # SQLite on a small tmpfs, and disk_full faults (None: if root)
    quiet: bool = False


@dataclass
class MasterKill:
    node: str
    at: float
    ready_at: float | None = None
    first_run_at: float | None = None
    requeued_at: float | None = None  # the last job it held was recorded lost, put back
    held_rerun_at: float | None = None  # the last of the jobs it held ran again


@dataclass
class Report:
    options: Options
    faults: Counter[str] = field(default_factory=Counter)
    jobs: int = 0
    states: Counter[str] = field(default_factory=Counter)
    lost: list[int] = field(default_factory=list)  # never in the ledger
    stuck: list[int] = field(default_factory=list)  # not terminal after the drain
    extra_runs: Counter[str] = field(default_factory=Counter)  # by explaining outcome
    unexplained: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    exits: Counter[str] = field(default_factory=Counter)  # masters' exits by code
    kills: list[MasterKill] = field(default_factory=list)
    produced: Produced = field(default_factory=Produced)
    enqueued_during: int = 0  # jobs the producer was told were in
    duplicate_enqueues: int = 0  # second jobs of a key whose first call failed
    disk_full_lines: int = 0  # the masters' log lines saying the disk is full
    disk: tuple[int, int] | None = None  # (tmpfs size, peak bytes used) on SQLite
    elapsed: float = 0.0
    drained_in: float = 0.0
    job_seconds: float = 0.0

    @property
    def failures(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} job(s) never ran: {self.lost[:10]}")
        if self.stuck:
            found.append(f"{len(self.stuck)} job(s) not terminal: {self.stuck[:10]}")
        if self.states.get("failed") or self.states.get("cancelled"):
            found.append(f"jobs ended other than succeeded: {dict(self.states)}")
        if self.unexplained:
            found.append(f"{len(self.unexplained)} unexplained run(s): {self.unexplained[:10]}")
        if self.tracebacks:
            found.append(f"traceback(s) in the daemons' output: {self.tracebacks[:3]}")
        if self.orphans:
            found.append(f"orphan process(es): {self.orphans[:10]}")
        if self.produced.unexpected:
            found.append(f"the producer failed: {self.produced.unexpected[:3]}")
        return found

    def recovery(self, attribute: str) -> tuple[float, float, int] | None:
        spans = [
            getattr(kill, attribute) - kill.at
            for kill in self.kills
            if getattr(kill, attribute) is not None
        ]
        return (statistics.median(spans), max(spans), len(spans)) if spans else None

    def table(self) -> str:
        o = self.options
        rows = [
            ("backend", f"{o.backend}, {o.nodes} node(s) x {o.workers} workers, seed {o.seed}"),
            ("jobs", f"{self.jobs:,} ({self.job_seconds * 1000:.0f} ms of work each)"),
            ("fault window / drain", f"{o.seconds:g} s / {self.drained_in:.1f} s after it"),
            ("faults sent", ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))),
            ("final states", ", ".join(f"{k} {n:,}" for k, n in sorted(self.states.items()))),
            ("lost (never ran)", str(len(self.lost))),
            ("stuck (not terminal)", str(len(self.stuck))),
            (
                "extra runs",
                f"{sum(self.extra_runs.values())}, explained by attempts recorded as "
                + (", ".join(f"{k} {n}" for k, n in sorted(self.extra_runs.items())) or "-"),
            ),
            ("unexplained runs", str(len(self.unexplained))),
            ("tracebacks", str(len(self.tracebacks))),
            ("orphan processes", str(len(self.orphans))),
            ("master exits", ", ".join(f"{k} {n}" for k, n in sorted(self.exits.items()))),
        ]
        if o.enqueue_during:
            errors = self.produced.errors
            rows += [
                ("enqueued during the faults", f"{self.enqueued_during:,} jobs in "
                 f"{self.produced.batches:,} batches"),
                ("failed enqueue calls (retried)", ", ".join(
                    f"{k} {n}" for k, n in sorted(errors.items())) or "0"),
                ("duplicate enqueues", f"{self.duplicate_enqueues} (a failed call that had "
                 "committed, sent again)"),
            ]  # fmt: skip
        if self.disk is not None:
            size, peak = self.disk
            rows.append(
                ("SQLite disk", f"tmpfs {size / 2**20:.0f} MiB, peak use {peak / 2**20:.1f} MiB; "
                 f"{self.disk_full_lines} 'disk is full' log lines")
            )  # fmt: skip
        for label, attribute in (
            ("master kill -> READY=1", "ready_at"),
            ("master kill -> node runs jobs", "first_run_at"),
            ("master kill -> its jobs put back", "requeued_at"),
            ("master kill -> its jobs rerun", "held_rerun_at"),
        ):
            found = self.recovery(attribute)
            if found is not None:
                median, worst, n = found
                rows.append((label, f"median {median:.2f} s, max {worst:.2f} s ({n} kills)"))
        width = max(len(label) for label, _ in rows)
        lines = [f"| {'':{width}} | chaos run |", f"| {'-' * width} | --- |"]
        lines += [f"| {label:{width}} | {value} |" for label, value in rows]
        verdict = self.failures
        lines.append("")
        lines.append("PASS" if not verdict else "FAIL:\n  " + "\n  ".join(verdict))
        return "\n".join(lines)


class Node:
    """One host: `jobd run` in a restart loop, with a notify socket of its own."""

    def __init__(self, name: str, home: Path, database: str, options: Options) -> None:
        self.name = name
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.config = home / "jobd.toml"
        self.good = (
            "[jobd]\n"
            f'database = "{database}"\n'
            'modules = ["chaos_routines"]\n'
            f'pythonpath = ["{HERE}"]\n'
            f'node_name = "{name}"\n'
            'log_level = "info"\n'
            f"[pool]\nmin_workers = {options.workers}\nmax_workers = {options.workers}\n"
            'graceful_timeout = "10s"\n'
            f'[store]\nheartbeat_interval = "{HEARTBEAT:g}s"\nnode_timeout = "{NODE_TIMEOUT:g}s"\n'
            'poll_interval = "1s"\n'
        )
        self.bad_value = self.good.replace(
            f"min_workers = {options.workers}", 'min_workers = "lots"'
        )
        self.config.write_text(self.good)
        self.stderr_path = home / "jobd.stderr"
        self.notify_path = str(home / "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.setblocking(False)
        self.process: subprocess.Popen[bytes] | None = None
        self.sessions: list[int] = []  # every master pid started (each leads a session)
        self.ready = False
        self.frozen = False
        self.stopping = False  # a deliberate stop: no restart
        self.restart_at: float | None = None
        self.on_ready: list[Callable[[float], None]] = []

    def start(self) -> None:
        env = {**os.environ, "NOTIFY_SOCKET": self.notify_path, "JOBD_CHAOS_NODE": self.name}
        env.pop("JOBD_CONFIG", None)
        with self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [*JOBD, "-c", str(self.config), "run"],
                start_new_session=True,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=self.home,
            )
        self.sessions.append(self.process.pid)
        self.ready = False
        self.restart_at = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def read_notices(self, now: float) -> None:
        while True:
            try:
                data = self.notify.recv(65536).decode()
            except BlockingIOError:
                return
            if "READY=1" in data.split("\n") and not self.ready:
                self.ready = True
                for callback in self.on_ready:
                    callback(now)
                self.on_ready = []

    def workers(self) -> list[int]:
        import psutil

        found = []
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children():
                with contextlib.suppress(psutil.Error):
                    if child.status() != psutil.STATUS_ZOMBIE and "jobd: worker" in " ".join(
                        child.cmdline()
                    ):
                        found.append(child.pid)
        return found

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""


class Chaos:
    def __init__(
        self, options: Options, root: Path, database: str, disk: SmallDisk | None = None
    ) -> None:
        self.options = options
        self.disk = disk
        self.root = root
        self.database = database
        self.rng = random.Random(options.seed)
        self.report = Report(options)
        self.ledger = str(root / "ledger.txt")
        self.nodes = [
            Node(f"node-{n}", root / f"node-{n}", database, options) for n in range(options.nodes)
        ]
        self.selector = selectors.DefaultSelector()
        for node in self.nodes:
            self.selector.register(node.notify, selectors.EVENT_READ, node)
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.pg_busy = False  # a restart or outage is under way (a thread runs it)
        self.pg_thread: threading.Thread | None = None
        self.producer: Producer | None = None
        self.unsent = [kind for kind, _ in self.kinds()]
        self.rng.shuffle(self.unsent)
        self.next_kind: str | None = None

    # -- the event loop ------------------------------------------------------

    def later(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.timers, (time.monotonic() + delay, next(self._seq), action))

    def step(self, timeout: float = 0.05) -> None:
        if self.timers:
            timeout = max(0.0, min(timeout, self.timers[0][0] - time.monotonic()))
        for key, _ in self.selector.select(timeout):
            key.data.read_notices(time.time())
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            heapq.heappop(self.timers)[2]()
        for node in self.nodes:
            self.supervise(node, now)

    def supervise(self, node: Node, now: float) -> None:
        """The restart loop: as systemd's Restart= would, start an exited master again."""
        if node.process is None or node.stopping or node.alive():
            return
        if node.restart_at is None:
            code = node.process.returncode
            self.report.exits[f"signal {-code}" if code < 0 else f"exit {code}"] += 1
            # After a crash 100 ms, as RestartSec=100ms; a clean exit code (a store
            # that does not answer at start-up, say) waits a second.
            node.restart_at = now + (RESTART_SEC if code < 0 else 1.0)
            node.ready = False
        if now >= node.restart_at:
            node.start()

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
            self.step()

    # -- faults --------------------------------------------------------------

    def kinds(self) -> list[tuple[str, float]]:
        kinds = [("worker_kill", 5.0), ("master_kill", 1.5), ("bad_reload", 1.0)]
        if self.options.backend == "postgres":
            kinds += [("pg_restart", 0.5), ("pg_outage", 0.5)]
            if self.options.nodes >= 2:
                kinds.append(("freeze", 0.7))
        if self.disk is not None:
            kinds.append(("disk_full", 0.7))
        return kinds

    def fault(self) -> None:
        """Send the next fault: each kind once first (in a random order), then at
        random by weight. A fault that cannot be sent now (no worker, a node frozen,
        the server already down) is tried again at the next draw."""
        if self.next_kind is None:
            if self.unsent:
                self.next_kind = self.unsent.pop()
            else:
                kinds = self.kinds()
                self.next_kind = self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        if self.send(self.next_kind):
            self.report.faults[self.next_kind] += 1
            self.next_kind = None

    def send(self, kind: str) -> bool:
        usable = [n for n in self.nodes if n.alive() and n.ready and not n.frozen]
        if kind.startswith("pg_"):
            if self.pg_busy:
                return False
            self.pg_fault(kind)
            return True
        if kind == "disk_full":
            assert self.disk is not None
            if self.disk.full:
                return False
            self.disk.fill(self.disk.mount / "jobd.db")
            self.later(self.rng.uniform(0.5, 3.0), self.disk.empty)
            return True
        if not usable:
            return False
        node = self.rng.choice(usable)
        if kind == "worker_kill":
            workers = node.workers()
            if not workers:
                return False
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.rng.choice(workers), signal.SIGKILL)
        elif kind == "master_kill":
            kill = MasterKill(node.name, time.time())
            os.kill(node.pid, signal.SIGKILL)
            node.ready = False  # not a target again before its restart is ready
            node.on_ready.append(functools.partial(setattr, kill, "ready_at"))
            self.report.kills.append(kill)
        elif kind == "bad_reload":
            broken = self.rng.choice(BROKEN_CONFIGS) or node.bad_value
            node.config.write_text(broken)
            os.kill(node.pid, signal.SIGHUP)
            self.later(self.rng.uniform(0.3, 1.5), functools.partial(self.good_reload, node))
        elif kind == "freeze":
            if any(n.frozen for n in self.nodes) or len(usable) < 2:
                return False  # one frozen host at a time, and someone left to rescue it
            node.signal_group(signal.SIGSTOP)
            node.frozen = True
            self.later(
                NODE_TIMEOUT + self.rng.uniform(0.5, 2.5), functools.partial(self.thaw, node)
            )
        return True

    def good_reload(self, node: Node) -> None:
        node.config.write_text(node.good)
        # A master still starting reads the good file itself (and a SIGHUP before
        # its handlers are installed would kill it).
        if node.alive() and node.ready and not node.frozen:
            os.kill(node.pid, signal.SIGHUP)

    def thaw(self, node: Node) -> None:
        node.signal_group(signal.SIGCONT)
        node.frozen = False

    def pg_fault(self, kind: str) -> None:
        cluster = self.options.pg_cluster
        pause = 0.0 if kind == "pg_restart" else self.rng.uniform(0.5, 2.5 * NODE_TIMEOUT)

        def run() -> None:
            try:
                cluster.stop()
                time.sleep(pause)  # the outage's length (chaos, not synchronisation)
                cluster.start()
            finally:
                self.pg_busy = False

        self.pg_busy = True
        self.pg_thread = threading.Thread(target=run, daemon=True)
        self.pg_thread.start()

    def heal(self) -> None:
        """Every fault undone: nodes thawed and on the good config, the server up."""
        if self.pg_thread is not None:
            self.pg_thread.join(60)
        if self.disk is not None:
            self.disk.empty()
        for node in self.nodes:
            if node.frozen:
                self.thaw(node)
            if node.config.read_text() != node.good:
                self.good_reload(node)

    # -- the run ---------------------------------------------------------------

    def run(self) -> Report:
        options, report = self.options, self.report
        started = time.monotonic()
        work = options.job_seconds
        if work is None:
            slots = options.nodes * options.workers
            work = max(0.0, min(0.5, 0.8 * options.seconds * slots / max(1, options.jobs) - 0.002))
        report.job_seconds = work
        try:
            for node in self.nodes:
                node.start()
            self.wait(lambda: all(n.ready for n in self.nodes), 60, "every node's READY=1")
            during = round(options.jobs * options.enqueue_during)
            ids = self.enqueue_before(options.jobs - during, work)
            if during:
                self.start_producer(during, work)
            self.fault_window()
            self.heal()
            if self.producer is not None:
                self.wait(lambda: not self.producing(), options.drain_timeout, "the producer")
                ids += list(self.producer.produced.keys.values())
                report.enqueued_during = len(self.producer.produced.keys)
            report.jobs = len(ids)
            self.drain()
        finally:
            if self.producer is not None:
                self.producer.stop.set()
                self.producer.join(30)
            self.stop_all()
        if self.disk is not None:
            self.disk.used()
            report.disk = (self.disk.size, self.disk.peak_used)
        self.audit(ids)
        report.elapsed = time.monotonic() - started
        return report

    def enqueue_before(self, count: int, work: float) -> list[int]:
        """The jobs enqueued before the faults, 5,000 a transaction; their ids."""
        import jobd

        ids: list[int] = []
        with jobd.Client(self.database) as client:
            for start in range(0, count, 5000):
                specs = [
                    jobd.JobSpec(ROUTINE, (self.ledger, work))
                    for _ in range(start, min(start + 5000, count))
                ]
                ids += [job.id for job in client.enqueue_many(specs)]
        return ids

    def start_producer(self, count: int, work: float) -> None:
        import jobd

        def spec(key: str) -> Any:
            return jobd.JobSpec(ROUTINE, (self.ledger, work), unique_key=key)

        options = self.options
        self.producer = Producer(
            self.database, spec, options.seed, count, span=0.8 * options.seconds
        )
        self.report.produced = self.producer.produced
        self.producer.start()

    def fault_window(self) -> None:
        """Faults at random intervals until the window ends or every job has ended."""
        every = self.options.fault_every
        window_end = time.monotonic() + self.options.seconds
        next_fault = time.monotonic() + self.rng.expovariate(1 / every)
        checked = time.monotonic()
        while time.monotonic() < window_end:
            self.step()
            if time.monotonic() >= next_fault:
                self.fault()
                next_fault = time.monotonic() + self.rng.expovariate(1 / every)
            if time.monotonic() - checked > 2.0:
                checked = time.monotonic()
                if self.disk is not None:
                    self.disk.used()
                if self.producing() or self.pg_busy or (self.disk and self.disk.full):
                    continue
                if self.open_jobs() == 0:
                    return  # all drained: no job left for a fault to hit

    def drain(self) -> None:
        """The faults' last actions done, then every job ended."""
        drain_started = time.monotonic()
        self.wait(
            lambda: not self.timers and all(n.ready or n.alive() for n in self.nodes),
            60,
            "the faults' last actions",
        )
        last_check = [0.0]

        def drained() -> bool:
            if time.monotonic() - last_check[0] < 0.5:
                return False
            last_check[0] = time.monotonic()
            return self.open_jobs() == 0

        self.wait(drained, self.options.drain_timeout, "every job to end")
        self.report.drained_in = time.monotonic() - drain_started

    def producing(self) -> bool:
        return self.producer is not None and self.producer.thread.is_alive()

    def open_jobs(self) -> int:
        from sqlalchemy import bindparam, text

        try:
            with self.engine().connect() as conn:
                query = text("SELECT count(*) FROM jobs WHERE state NOT IN :terminal")
                query = query.bindparams(bindparam("terminal", expanding=True))
                return int(conn.execute(query, {"terminal": list(TERMINAL)}).scalar_one())
        except Exception:  # the server is down for a fault: not drained yet
            return -1

    _engine: Any = None

    def engine(self) -> Any:
        if self._engine is None:
            from sqlalchemy import create_engine

            from jobd.store.engine import normalize_url

            self._engine = create_engine(normalize_url(self.database), pool_pre_ping=True)
        return self._engine

    def stop_all(self) -> None:
        for node in self.nodes:
            node.stopping = True
            if node.frozen:
                self.thaw(node)
            if node.alive():
                os.kill(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.report.unexplained.append(f"{node.name}: master did not stop in 30 s")
                node.signal_group(signal.SIGKILL)
                node.process.wait(5)

    # -- the audit -------------------------------------------------------------

    def audit(self, ids: list[int]) -> None:
        from sqlalchemy import text

        report = self.report
        runs: dict[int, list[tuple[int, int, str, float]]] = defaultdict(list)
        if os.path.exists(self.ledger):
            with open(self.ledger) as handle:
                for line in handle:
                    fields = line.split()
                    runs[int(fields[0])].append(
                        (int(fields[1]), int(fields[2]), fields[3], float(fields[4]))
                    )
        with self.engine().connect() as conn:
            rows = conn.execute(text("SELECT id, state, unique_key FROM jobs")).all()
            states = {row.id: row.state for row in rows}
            outcomes = {
                (row.job_id, row.attempt): row
                for row in conn.execute(
                    text(
                        "SELECT a.job_id, a.attempt, a.outcome, a.started_at, a.finished_at, "
                        "n.name AS node FROM attempts a LEFT JOIN nodes n ON n.id = a.node_id"
                    )
                )
            }
        self.engine().dispose()
        for job in self.audit_enqueues(ids, rows):
            state = states.get(job)
            report.states[state or "missing"] += 1
            if state not in TERMINAL:
                report.stuck.append(job)
            if not runs.get(job):
                report.lost.append(job)
                continue
            seen: Counter[int] = Counter()
            for attempt, pid, host, _ in runs[job]:
                seen[attempt] += 1
                row = outcomes.get((job, attempt))
                where = f"job {job} attempt {attempt} (pid {pid} on {host})"
                if seen[attempt] > 1:
                    report.unexplained.append(f"{where} ran {seen[attempt]} times")
                elif row is None:
                    report.unexplained.append(f"{where}: no attempt recorded")
                elif row.outcome == "succeeded":
                    pass
                elif row.outcome in EXPLAINING:
                    report.extra_runs[row.outcome] += 1
                else:
                    report.unexplained.append(f"{where}: recorded as {row.outcome}")
        self.recovery(runs, outcomes)
        for node in self.nodes:
            for number, line in enumerate(node.stderr().splitlines(), 1):
                if "Traceback" in line:
                    report.tracebacks.append(f"{node.name} jobd.stderr line {number}")
                if " is full (" in line:
                    report.disk_full_lines += 1
        report.orphans = self.orphans()

    def audit_enqueues(self, ids: list[int], rows: list[Any]) -> list[int]:
        """The jobs to audit (chaos_producer.audit_enqueues), its findings reported."""
        report = self.report
        found = audit_enqueues(ids, rows, report.produced)
        report.lost += found.missing
        report.duplicate_enqueues += found.duplicates
        report.unexplained += found.unexplained
        return found.jobs

    def recovery(self, runs: dict[int, list[Any]], outcomes: dict[tuple[int, int], Any]) -> None:
        kills = self.report.kills
        for kill in kills:
            after = [
                at
                for job_runs in runs.values()
                for _, _, node, at in job_runs
                if node == kill.node and kill.ready_at is not None and at >= kill.ready_at
            ]
            kill.first_run_at = min(after) if after else None
        # Each attempt lost by a killed master: when did its job run again?
        by_node: dict[str, list[MasterKill]] = defaultdict(list)
        for kill in kills:
            by_node[kill.node].append(kill)
        for (job, attempt), row in outcomes.items():
            if row.outcome != "lost":
                continue
            # Recorded (finished_at) by the restarted master as it came up, or by
            # another node after the window; a freeze's or an outage's losses are
            # recorded with no kill of that node just before them.
            held_by = [
                k
                for k in by_node.get(row.node, [])
                if k.at <= row.finished_at <= (k.ready_at or k.at) + 2 * NODE_TIMEOUT
            ]
            if not held_by:
                continue
            kill = max(held_by, key=lambda k: k.at)
            if kill.requeued_at is None or row.finished_at > kill.requeued_at:
                kill.requeued_at = row.finished_at
            rerun = [at for a, _, _, at in runs.get(job, []) if a > attempt]
            if rerun and (kill.held_rerun_at is None or min(rerun) > kill.held_rerun_at):
                kill.held_rerun_at = min(rerun)

    def orphans(self) -> list[str]:
        """Processes still in a session one of our masters led, after a deadline."""
        import psutil

        sessions = {pid for node in self.nodes for pid in node.sessions}

        def left() -> list[str]:
            found = []
            for process in psutil.process_iter(["pid", "name", "status"]):
                with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
                    if process.info["status"] == psutil.STATUS_ZOMBIE:
                        continue
                    if os.getsid(process.pid) in sessions:
                        found.append(f"{process.pid} {' '.join(process.cmdline())[:80]}")
            return found

        deadline = time.monotonic() + 15
        found = left()
        while found and time.monotonic() < deadline:
            time.sleep(0.1)  # processes that are on their way out
            found = left()
        return found

    def close(self) -> None:
        for node in self.nodes:
            if node.alive():
                node.signal_group(signal.SIGCONT)
                node.signal_group(signal.SIGKILL)
            node.notify.close()
        if self._engine is not None:
            self._engine.dispose()


def run_chaos(options: Options) -> Report:
    """One chaos run; the caller's `pg_url`/`pg_cluster`, or a cluster of its own."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # the client resolves the routine by importing it
    if options.backend == "sqlite" and options.nodes != 1:
        raise SystemExit("SQLite serves one node: --nodes 1")
    with contextlib.ExitStack() as stack:
        if options.root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jobd-chaos-")))
        else:
            root = options.root
            root.mkdir(parents=True, exist_ok=True)
        disk = None
        if options.backend == "sqlite":
            if options.disk is None:
                options.disk = os.geteuid() == 0
            where = root
            if options.disk:
                size = disk_size(options.jobs)
                disk = stack.enter_context(SmallDisk(root / "disk", size))
                where = disk.mount
            database = f"sqlite:///{where / 'jobd.db'}"
        else:
            if options.pg_url is None:
                cluster = stack.enter_context(own_cluster())
                options.pg_url, options.pg_cluster = cluster.url, cluster
            database = options.pg_url
        from jobd.store import open_store

        store = open_store(database)
        store.upgrade()
        store.close()
        chaos = Chaos(options, root, database, disk)
        try:
            return chaos.run()
        finally:
            chaos.close()


@contextlib.contextmanager
def own_cluster() -> Iterator[Any]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.pgcluster import OwnCluster

    why = OwnCluster.available()
    if why is not None:
        raise SystemExit(f"no PostgreSQL cluster of the run's own: {why}")
    cluster = OwnCluster()
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=120.0, help="the fault window")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nodes", type=int, default=None, help="1 on SQLite, 2 on PostgreSQL")
    parser.add_argument("--workers", type=int, default=2, help="workers per node")
    parser.add_argument("--fault-every", type=float, default=1.0, help="mean seconds apart")
    parser.add_argument("--job-ms", type=float, default=None, help="each job's work")
    parser.add_argument(
        "--enqueue-during",
        type=float,
        default=0.5,
        help="the fraction of the jobs enqueued during the faults (0 to 1)",
    )
    parser.add_argument(
        "--no-disk", action="store_true", help="SQLite: no small tmpfs, no disk_full faults"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=900.0, help="seconds for the jobs to end after"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the run's files here")
    args = parser.parse_args()
    if not 0 <= args.enqueue_during <= 1:
        parser.error(f"--enqueue-during must be between 0 and 1, not {args.enqueue_during:g}")
    nodes = args.nodes or (1 if args.backend == "sqlite" else 2)
    options = Options(
        backend=args.backend,
        jobs=args.jobs,
        seconds=args.seconds,
        seed=args.seed,
        nodes=nodes,
        workers=args.workers,
        fault_every=args.fault_every,
        root=args.keep,
        job_seconds=None if args.job_ms is None else args.job_ms / 1000,
        enqueue_during=args.enqueue_during,
        drain_timeout=args.drain_timeout,
        disk=False if args.no_disk else None,
    )
    report = run_chaos(options)
    print(report.table())
    print(f"\n(total {report.elapsed:.1f} s)")
    if report.unexplained or report.tracebacks:
        for line in (report.unexplained + report.tracebacks)[:20]:
            print("  ", line)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
