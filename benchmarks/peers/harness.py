"""Shared harness for the peer adapters (stdlib + psutil only).

Every adapter (``huey_bench.py``, ``celery_bench.py``, ...) runs in its peer's
own virtualenv, subclasses :class:`Peer` with the few calls that differ
between job systems (empty the backend, enqueue one job, enqueue many, the
worker command line) and hands it to :func:`main`, which runs the workloads
the same way for every peer and prints one JSON object per workload.

How progress is seen, uniformly for all peers: every job is a no-op routine
taking one integer whose body is :func:`record`.  It appends one line
``<start time> <arg> <pid> <ppid>`` to a progress file opened with
``O_APPEND`` (one small ``write`` per line, so lines never interleave).  The
harness polls that file's line count with a deadline; a hang ends in an
error, never in a wait forever.  Times come from ``time.time()`` in the job,
so polling granularity does not enter any figure.

Workloads (names as printed in the ``workload`` field):

- ``enqueue-one``: N jobs from one producer, one API call per job.
- ``enqueue-bulk``: N jobs through the peer's bulk API, or null with a note.
- ``drain``: the N jobs of ``enqueue-one`` are queued, then the workers are
  launched; rate from the first job's start and from the launch.
- ``cold-start``: one job queued, then the workers are launched; seconds from
  the launch to that job's start.
- ``memory``: RSS of the supervising process and of each worker, booted and
  idle (after the cold-start job and a warm-up that reached both workers).
- ``latency``: jobs enqueued at a fixed gap into idle booted workers; the job
  receives ``time.time()`` in microseconds as its argument, so latency is
  (job start - enqueue) on one wall clock.
- ``scale``: drain rate of the first N jobs with a small and with a large
  backlog queued behind them (all the same no-op routine).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROGRESS_ENV = "BENCH_PROGRESS"
PEERS_DIR = Path(__file__).resolve().parent
WORKERS = 2  # worker processes, each running one job at a time
POLL_S = 0.005  # harness poll period of the progress file
STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL the process group after this
SCALE_CAP_S = 180.0  # scale: rate over the jobs done by then if fewer than N
ALL_WORKLOADS = (
    "enqueue-one",
    "enqueue-bulk",
    "drain",
    "cold-start",
    "memory",
    "latency",
    "scale",
)

# --------------------------------------------------------------------------
# Job side: runs inside the peers' worker processes.


class _ProgressFile:
    """The job process's descriptor of the progress file, opened on first use."""

    fd = -1
    pid = 0  # the process that opened ``fd`` (a forked child reopens)


def record(arg: int) -> None:
    """The body of every benchmark job: append one progress line."""
    now = time.time()
    pid = os.getpid()
    if _ProgressFile.pid != pid:
        _ProgressFile.fd = os.open(
            os.environ[PROGRESS_ENV],
            os.O_WRONLY | os.O_APPEND | os.O_CREAT,
            0o644,
        )
        _ProgressFile.pid = pid
    os.write(_ProgressFile.fd, f"{now:.6f} {int(arg)} {pid} {os.getppid()}\n".encode())


# --------------------------------------------------------------------------
# Harness side.


class BenchError(RuntimeError):
    """A workload could not complete (timeout, dead worker, lost jobs)."""


@dataclass(frozen=True)
class Line:
    """One progress line: a job's start time (epoch s), argument, pid, ppid."""

    ts: float
    arg: int
    pid: int
    ppid: int

    @classmethod
    def parse(cls, raw: bytes) -> Line:
        ts, arg, pid, ppid = raw.split()
        return cls(float(ts), int(arg), int(pid), int(ppid))


class Workers:
    """The peer's worker command(s), each in its own session (process group).

    ``stop`` (also run on exit from the ``with`` block, error or not) sends
    SIGTERM to every group, waits a grace period, then SIGKILLs the groups, so
    no child a peer forked outlives the workload.
    """

    def __init__(self, commands: Sequence[Sequence[str]], env: dict[str, str], log: Path):
        self.commands = [list(c) for c in commands]
        self.env = env
        self.log = log
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> float:
        """Launch every command; return the wall-clock launch time."""
        launched = time.time()
        with self.log.open("ab") as log:
            for cmd in self.commands:
                self.procs.append(
                    subprocess.Popen(
                        cmd,
                        env=self.env,
                        cwd=PEERS_DIR,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        return launched

    def check(self) -> None:
        """Raise if a launched command has exited."""
        for proc in self.procs:
            if proc.poll() is not None:
                raise BenchError(
                    f"worker command exited with {proc.returncode}: {' '.join(proc.args)}\n"
                    f"{self.log_tail()}"
                )

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM each group, wait, then SIGKILL the groups and any process
        forked below them that left the group (an rq work horse calls setpgrp)."""
        descendants = self._descendants()
        for proc in self.procs:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        for child in descendants:
            with contextlib.suppress(Exception):
                child.kill()  # psutil checks the pid still names the same process
        self.procs.clear()

    def _descendants(self) -> list[Any]:  # psutil.Process, imported lazily
        import psutil

        found = []
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                found += psutil.Process(proc.pid).children(recursive=True)
        return found


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Progress:
    """Reads the progress file the jobs append to."""

    def __init__(self, path: Path):
        self.path = path
        path.write_bytes(b"")

    def mark(self) -> int:
        """Offset of the end of the file: only lines after it count next."""
        return self.path.stat().st_size

    def wait(
        self,
        count: int,
        *,
        since: int = 0,
        timeout: float,
        workers: Workers | None = None,
        partial: bool = False,
    ) -> list[Line]:
        """Poll until ``count`` lines exist after ``since``; return them all.

        At the deadline: raise, or with ``partial`` return the lines so far.
        """
        deadline = time.monotonic() + timeout
        next_check = 0.0
        buf = bytearray()
        seen = 0
        with self.path.open("rb") as f:
            f.seek(since)
            while True:
                chunk = f.read()
                if chunk:
                    buf += chunk
                    seen += chunk.count(b"\n")
                now = time.monotonic()
                if seen >= count or (partial and now > deadline):
                    return _parse(buf)
                if now > deadline:
                    tail = workers.log_tail() if workers else ""
                    raise BenchError(
                        f"timeout: {seen}/{count} jobs done after {timeout:.0f}s\n{tail}"
                    )
                if workers is not None and now >= next_check:
                    workers.check()
                    next_check = now + 0.5
                time.sleep(POLL_S)


def _parse(buf: bytes | bytearray) -> list[Line]:
    """The complete lines in ``buf``."""
    end = buf.rfind(b"\n")
    if end < 0:
        return []
    return [Line.parse(raw) for raw in bytes(buf[:end]).split(b"\n")]


class Peer:
    """What an adapter tells the harness about one job system."""

    name = "peer"
    #: How the peer is set up (published next to its figures).
    settings = ""
    #: Distributions whose versions are reported.
    distributions: tuple[str, ...] = ()
    #: Why ``enqueue_bulk`` is missing, when it is.
    bulk_note: str | None = None
    #: Why the scale workload is skipped, when it is.
    scale_skip: str | None = None

    def reset(self, workdir: Path) -> None:
        """Empty the backend (a fresh database, file or Redis DB).

        ``workdir`` is a fresh temporary directory for this session's files.
        """
        raise NotImplementedError

    def enqueue(self, arg: int) -> None:
        """Enqueue one no-op job with one API call."""
        raise NotImplementedError

    def enqueue_each(self, args: Iterable[int]) -> None:
        """Enqueue jobs one API call each (overridden by async producers)."""
        for arg in args:
            self.enqueue(arg)

    def enqueue_bulk(self, args: Sequence[int]) -> None:
        """Enqueue jobs through the peer's bulk API."""
        raise NotImplementedError

    def prefill(self, count: int) -> None:
        """Queue ``count`` jobs as fast as possible (setup, not measured)."""
        chunk = 10_000
        for start in range(0, count, chunk):
            args = range(start, min(count, start + chunk))
            if self.bulk_note is None:
                self.enqueue_bulk(list(args))
            else:
                self.enqueue_each(args)

    def settle(self) -> None:
        """Called after jobs were queued, before the workers start.

        PostgreSQL peers run ANALYZE here: a fresh table has no planner
        statistics until autovacuum gets to it (within about a minute), and
        a long-running queue always has them.
        """

    def queued(self) -> int | None:
        """Jobs waiting in the backend, to check nothing was lost (None: unknown)."""
        return None

    def worker_commands(self) -> list[list[str]]:
        """argv of each command to launch (one supervisor, or one per worker)."""
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        """Extra environment for the worker commands."""
        return {}

    def identity(self, line: Line) -> int:
        """Which worker ran a job (forking peers override with the parent)."""
        return line.pid

    def versions(self) -> dict[str, str]:
        out = {}
        for dist in self.distributions:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                out[dist] = importlib.metadata.version(dist)
        return out

    def close(self) -> None:
        """Release producer connections."""


# --------------------------------------------------------------------------
# Workloads.


@dataclass
class Options:
    n: int
    latency_jobs: int
    latency_gap_ms: float
    scale_backlogs: tuple[int, int]
    workloads: tuple[str, ...]


def emit(peer: Peer, workload: str, **fields: object) -> None:
    print(json.dumps({"system": peer.name, "workload": workload, **fields}), flush=True)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Session:
    """One empty backend, one progress file, and at most one set of workers."""

    def __init__(self, peer: Peer, tmp: Path, label: str):
        self.peer = peer
        self.dir = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=tmp))
        peer.reset(self.dir)
        self.progress = Progress(self.dir / "progress")

    @contextlib.contextmanager
    def workers(self) -> Iterator[Workers]:
        env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            "PYTHONPATH": str(PEERS_DIR),
            PROGRESS_ENV: str(self.progress.path),
            **self.peer.worker_env(),
        }
        with Workers(self.peer.worker_commands(), env, self.dir / "workers.log") as workers:
            yield workers

    def check_queued(self, expected: int) -> None:
        got = self.peer.queued()
        if got is not None and got != expected:
            raise BenchError(f"{got} jobs queued, expected {expected}")


def drain_timeout(n: int) -> float:
    return 60 + n / 40  # slowest peer here drains ~100 jobs/s


def rate(count: int, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


def run_enqueue_and_drain(peer: Peer, opts: Options, tmp: Path) -> None:
    s = Session(peer, tmp, "drain")
    n = opts.n
    log(f"{peer.name}: enqueue-one x{n}")
    t0 = time.perf_counter()
    peer.enqueue_each(range(n))
    elapsed = time.perf_counter() - t0
    s.check_queued(n)
    if "enqueue-one" in opts.workloads:
        emit(peer, "enqueue-one", n=n, jobs_per_s=rate(n, elapsed), seconds=elapsed)
    if "drain" not in opts.workloads:
        return
    log(f"{peer.name}: drain x{n}")
    peer.settle()
    with s.workers() as workers:
        launched = workers.start()
        lines = s.progress.wait(n, timeout=drain_timeout(n), workers=workers)
    starts = sorted(line.ts for line in lines)
    emit(
        peer,
        "drain",
        n=n,
        jobs_per_s=rate(n - 1, starts[-1] - starts[0]),
        jobs_per_s_with_startup=rate(n, starts[-1] - launched),
        startup_s=starts[0] - launched,
        duplicates=len(lines) - len({line.arg for line in lines}),
    )


def run_enqueue_bulk(peer: Peer, opts: Options, tmp: Path) -> None:
    if peer.bulk_note is not None:
        emit(peer, "enqueue-bulk", n=opts.n, jobs_per_s=None, note=peer.bulk_note)
        return
    s = Session(peer, tmp, "bulk")
    log(f"{peer.name}: enqueue-bulk x{opts.n}")
    t0 = time.perf_counter()
    peer.enqueue_bulk(list(range(opts.n)))
    elapsed = time.perf_counter() - t0
    s.check_queued(opts.n)
    emit(peer, "enqueue-bulk", n=opts.n, jobs_per_s=rate(opts.n, elapsed), seconds=elapsed)


def wait_booted(peer: Peer, s: Session, workers: Workers, timeout: float = 60) -> set[int]:
    """Run small batches of jobs until every worker has run one; return their ids."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < WORKERS:
        if time.monotonic() > deadline:
            raise BenchError(f"only {len(seen)} of {WORKERS} workers ran a job in {timeout}s")
        since = s.progress.mark()
        peer.enqueue_each([0] * 10)
        lines = s.progress.wait(10, since=since, timeout=timeout, workers=workers)
        seen |= {peer.identity(line) for line in lines}
    return seen


def measure_memory(workers: Workers, worker_pids: set[int]) -> dict[str, object]:
    """RSS of the worker processes (those seen running jobs), of the launched
    processes that are not workers (the supervisor) and of any other child of
    the supervisor (a scheduler, say)."""
    import psutil

    launched = [p.pid for p in workers.procs]
    supervisors = [pid for pid in launched if pid not in worker_pids]
    others = [
        child.pid
        for pid in supervisors
        for child in psutil.Process(pid).children()
        if child.pid not in worker_pids
    ]

    def mib(pids: Iterable[int]) -> list[float]:
        return [round(psutil.Process(pid).memory_info().rss / 2**20, 1) for pid in sorted(pids)]

    parent, each, other = mib(supervisors), mib(worker_pids), mib(others)
    note = {} if parent else {"note": "no supervisor: each worker process is launched on its own"}
    return {
        **note,
        "parent_rss_mib": parent[0] if parent else None,
        "worker_rss_mib": round(statistics.mean(each), 1),
        "workers_rss_mib": each,
        "other_rss_mib": other,
        "total_rss_mib": round(sum(parent) + sum(each) + sum(other), 1),
    }


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil
    return sorted_values[int(rank) - 1]


def measure_latency(peer: Peer, s: Session, workers: Workers, opts: Options) -> dict[str, object]:
    count, gap = opts.latency_jobs, opts.latency_gap_ms / 1000
    since = s.progress.mark()
    start = time.monotonic()
    for i in range(count):
        delay = start + i * gap - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the producer, not synchronisation
        peer.enqueue(int(time.time() * 1e6))
    lines = s.progress.wait(count, since=since, timeout=60 + count * gap, workers=workers)
    ms = sorted((line.ts - line.arg / 1e6) * 1000 for line in lines)
    return {
        "jobs": count,
        "gap_ms": opts.latency_gap_ms,
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.mean(ms), 3),
        "max_ms": round(ms[-1], 3),
    }


def run_booted(peer: Peer, opts: Options, tmp: Path) -> None:
    """cold-start, then memory and latency on the same booted workers."""
    s = Session(peer, tmp, "booted")
    peer.enqueue(0)
    s.check_queued(1)
    peer.settle()
    log(f"{peer.name}: cold-start, memory, latency")
    with s.workers() as workers:
        launched = workers.start()
        (line,) = s.progress.wait(1, timeout=60, workers=workers)[:1]
        if "cold-start" in opts.workloads:
            emit(peer, "cold-start", seconds=line.ts - launched)
        worker_pids = wait_booted(peer, s, workers)
        if "memory" in opts.workloads:
            emit(peer, "memory", **measure_memory(workers, worker_pids))
        if "latency" in opts.workloads:
            emit(peer, "latency", **measure_latency(peer, s, workers, opts))


def run_scale(peer: Peer, opts: Options, tmp: Path) -> None:
    if peer.scale_skip is not None:
        emit(peer, "scale", skipped=peer.scale_skip)
        return
    n = opts.n
    rates: dict[int, float | None] = {}
    done: dict[int, int] = {}
    for backlog in opts.scale_backlogs:
        s = Session(peer, tmp, f"scale{backlog}")
        log(f"{peer.name}: scale, prefill {backlog} + {n}")
        t0 = time.perf_counter()
        peer.prefill(backlog + n)
        prefill_s = time.perf_counter() - t0
        s.check_queued(backlog + n)
        peer.settle()
        log(f"{peer.name}: scale, prefilled in {prefill_s:.0f}s; draining {n}")
        with s.workers() as workers:
            workers.start()
            lines = s.progress.wait(
                n,
                timeout=SCALE_CAP_S,
                workers=workers,
                partial=True,
            )
        starts = sorted(line.ts for line in lines)[:n]
        if len(starts) < 2:
            raise BenchError(f"scale: {len(starts)} jobs done in {SCALE_CAP_S}s")
        rates[backlog] = rate(len(starts) - 1, starts[-1] - starts[0])
        done[backlog] = len(starts)
    small, large = opts.scale_backlogs
    ratio = rates[large] / rates[small] if rates[large] and rates[small] else None
    emit(
        peer,
        "scale",
        n=n,
        backlog_small=small,
        backlog_large=large,
        jobs_per_s_small=rates[small],
        jobs_per_s_large=rates[large],
        ratio=ratio,
        jobs_measured_small=done[small],
        jobs_measured_large=done[large],
    )


SESSIONS = (
    (("enqueue-one", "drain"), run_enqueue_and_drain),
    (("enqueue-bulk",), run_enqueue_bulk),
    (("cold-start", "memory", "latency"), run_booted),
    (("scale",), run_scale),
)


def parse_options(argv: Sequence[str] | None, systems: Sequence[str]) -> tuple[str, Options]:
    p = argparse.ArgumentParser(description="Run the peer benchmark workloads; JSON lines out.")
    p.add_argument("--system", choices=systems, default=systems[0])
    p.add_argument("--n", type=int, default=10_000, help="jobs per throughput workload")
    p.add_argument("--latency-jobs", type=int, default=200)
    p.add_argument("--latency-gap-ms", type=float, default=20.0)
    p.add_argument("--scale-backlogs", default="1000,1000000", help="small,large")
    p.add_argument("--workloads", default=",".join(ALL_WORKLOADS))
    a = p.parse_args(argv)
    workloads = tuple(w for w in a.workloads.split(",") if w)
    unknown = set(workloads) - set(ALL_WORKLOADS)
    if unknown:
        p.error(f"unknown workloads {sorted(unknown)}")
    small, large = (int(x) for x in a.scale_backlogs.split(","))
    return a.system, Options(a.n, a.latency_jobs, a.latency_gap_ms, (small, large), workloads)


def main(make_peer: dict[str, type[Peer]], argv: Sequence[str] | None = None) -> int:
    """Entry point of an adapter: ``make_peer`` maps system names to classes."""
    system, opts = parse_options(argv, list(make_peer))
    # SIGTERM (the driver's way to stop us) unwinds like an exception, so
    # every `with Workers(...)` block still stops its workers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    peer = make_peer[system]()
    emit(
        peer,
        "info",
        versions=peer.versions(),
        settings=peer.settings,
        python=sys.version.split()[0],
    )
    failures = 0
    try:
        with tempfile.TemporaryDirectory(prefix=f"bench-{system}-") as tmp:
            for workloads, session in SESSIONS:
                wanted = [w for w in workloads if w in opts.workloads]
                if not wanted:
                    continue
                try:
                    session(peer, opts, Path(tmp))
                except Exception as exc:  # report and go on with the next session
                    failures += 1
                    log(f"{peer.name}: {wanted} failed: {exc}")
                    for w in wanted:
                        emit(peer, w, error=f"{type(exc).__name__}: {exc}"[:2000])
    finally:
        peer.close()
    return 1 if failures else 0
