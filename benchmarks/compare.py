"""Side-by-side benchmark of jobd and the Python job systems users pick instead.

    .venv/bin/python benchmarks/compare.py [--quick] [--peers a,b] [--runs 3]

Each *system* is a command that runs the workloads described in
``benchmarks/peers/harness.py`` (enqueue one by one and in bulk, drain, idle
latency, memory, cold start, queue-depth scaling) and prints one JSON object
per workload.  The peers run in their own virtualenvs under
``benchmarks/.venvs`` (made by ``benchmarks/peers/setup.py``, run here when
one is missing).  Every system is run ``--runs`` times, interleaved (run 1 of
every system, then run 2, ...; the slow scale workload ``--scale-runs``
times).  The machine has 2 cores, so a run during which unrelated processes
took more than 10% of the CPUs is repeated (twice at most, after waiting for
quiet) and, if kept anyway, flagged.  The medians are printed as a table and
written to ``docs/benchmarks.md`` with the versions, the machine, each
system's settings, and a chart ``docs/benchmarks.png`` of jobd's advantage
over each peer (or, while jobd has no entry, of the peers' own figures).
Raw results go to ``benchmarks/results/`` (not committed).

``--quick`` is one run with 2,000 jobs, 50 latency samples and no scale
workload: a few minutes in all.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "benchmarks" / "peers"
VENVS = ROOT / "benchmarks" / ".venvs"
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "benchmarks.png"
RUN_TIMEOUT_S = 3600  # one adapter invocation (one group of workloads)


# --------------------------------------------------------------------------
# Systems.


@dataclass(frozen=True)
class System:
    """Something to benchmark: a name and the argv that prints the JSON lines.

    The driver appends ``--n N --latency-jobs L --workloads a,b,...
    --scale-backlogs small,large`` to ``argv``; the command must print one
    JSON object per workload, shaped like the peers' (see harness.py), and
    may print an ``info`` object with ``versions`` and ``settings``.
    """

    name: str
    argv: tuple[str, ...]
    venv: str | None = None  # peers: the venv setup.py builds for them

    def ready(self) -> bool:
        return Path(self.argv[0]).exists()


def peer(name: str, venv: str, script: str) -> System:
    python = VENVS / venv / "bin" / "python"
    return System(name, (str(python), str(PEERS / script), "--system", name), venv)


PEER_SYSTEMS = [
    peer("huey-sqlite", "huey", "huey_bench.py"),
    peer("huey-redis", "huey", "huey_bench.py"),
    peer("celery", "celery", "celery_bench.py"),
    peer("rq", "rq", "rq_bench.py"),
    peer("dramatiq", "dramatiq", "dramatiq_bench.py"),
    peer("procrastinate", "procrastinate", "procrastinate_bench.py"),
    peer("pgqueuer", "pgqueuer", "pgqueuer_bench.py"),
]


def jobd_systems() -> list[System]:
    """jobd in its own venv (the repository's `.venv`), through the same harness.

    "jobd" is the embedded default (SQLite) and the base of the chart's
    ratios; "jobd-postgres" runs on the PostgreSQL the PostgreSQL peers use.
    """
    python = str(ROOT / ".venv" / "bin" / "python")
    script = str(PEERS / "jobd_bench.py")
    return [
        System("jobd", (python, script, "--system", "jobd-sqlite")),
        System("jobd-postgres", (python, script, "--system", "jobd-postgres")),
    ]


def all_systems() -> list[System]:
    return jobd_systems() + PEER_SYSTEMS


# --------------------------------------------------------------------------
# What is reported.


@dataclass(frozen=True)
class Metric:
    workload: str
    field: str
    label: str
    higher_is_better: bool
    digits: int  # decimals shown

    @property
    def key(self) -> str:
        return f"{self.workload}.{self.field}"


METRICS = [
    Metric("enqueue-one", "jobs_per_s", "enqueue, one call per job (jobs/s)", True, 0),
    Metric("enqueue-bulk", "jobs_per_s", "enqueue, bulk API (jobs/s)", True, 0),
    Metric("drain", "jobs_per_s", "drain, from first job start (jobs/s)", True, 0),
    Metric("drain", "jobs_per_s_with_startup", "drain, from worker launch (jobs/s)", True, 0),
    Metric("latency", "p50_ms", "latency p50, idle workers (ms)", False, 1),
    Metric("latency", "p99_ms", "latency p99, idle workers (ms)", False, 1),
    Metric("memory", "worker_rss_mib", "RSS per worker, idle (MiB)", False, 1),
    Metric("memory", "parent_rss_mib", "RSS of supervisor, idle (MiB)", False, 1),
    Metric("memory", "total_rss_mib", "RSS of all processes, idle (MiB)", False, 1),
    Metric("cold-start", "seconds", "cold start: launch to first job (s)", False, 2),
    Metric("scale", "jobs_per_s_small", "drain behind a small backlog (jobs/s)", True, 0),
    Metric("scale", "jobs_per_s_large", "drain behind a large backlog (jobs/s)", True, 0),
    Metric("scale", "ratio", "scale: large-backlog rate / small", True, 2),
]


@dataclass
class Outcome:
    """Everything one system printed over all runs."""

    values: dict[str, list[float]] = field(default_factory=dict)  # metric key -> per run
    notes: dict[str, str] = field(default_factory=dict)  # workload -> why no figure
    errors: list[str] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)
    raw: list[dict[str, object]] = field(default_factory=list)
    background: list[float] = field(default_factory=list)  # others' CPU share in each run
    driver_errors: list[str] = field(default_factory=list)  # timeouts, crashes, missing venv

    def commit(self, attempt: Attempt, run: int) -> None:
        for record in attempt.records:
            self.add(record, run)
        if attempt.error:
            self.driver_errors.append(f"run {run}: {attempt.error}")
        self.background.append(attempt.other_load)

    def lacks(self, workload: str) -> bool:
        """True once the system said it has no such feature (no figure, a note)."""
        has_figures = any(key.startswith(f"{workload}.") for key in self.values)
        return workload in self.notes and not has_figures

    def all_errors(self) -> list[str]:
        return self.errors + self.driver_errors

    def dump(self) -> dict[str, object]:
        return {"records": self.raw, "background": self.background, "errors": self.driver_errors}

    @classmethod
    def load(cls, data: dict[str, list]) -> Outcome:  # type: ignore[type-arg]
        outcome = cls(background=list(data["background"]), driver_errors=list(data["errors"]))
        for record in data["records"]:
            outcome.add(record, int(record["run"]))
        return outcome

    def add(self, record: dict[str, object], run: int) -> None:
        self.raw.append({**record, "run": run})
        workload = str(record.get("workload"))
        if workload == "info":
            self.info = record
            return
        if "error" in record:
            self.errors.append(f"run {run}, {workload}: {str(record['error']).splitlines()[0]}")
            return
        for reason in ("note", "skipped"):
            if reason in record:
                self.notes[workload] = str(record[reason])
        for metric in METRICS:
            value = record.get(metric.field)
            if metric.workload == workload and isinstance(value, int | float):
                self.values.setdefault(metric.key, []).append(float(value))

    def median(self, metric: Metric) -> float | None:
        runs = self.values.get(metric.key)
        return statistics.median(runs) if runs else None


# --------------------------------------------------------------------------
# Running.


def log(msg: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ensure_venvs(systems: Sequence[System]) -> None:
    """Build the missing peer virtualenvs with setup.py."""
    missing = sorted(
        {s.venv for s in systems if s.venv and not (VENVS / s.venv / "versions.json").exists()}
    )
    if missing:
        log(f"building virtualenvs: {', '.join(missing)}")
        subprocess.run([sys.executable, str(PEERS / "setup.py"), *missing], check=True)


# Other load on the machine.  The lead's tests, a stray daemon or a build can
# share these 2 cores; a benchmark run that shared them is repeated.

SERVICES = {"postgres", "redis-server"}  # the backends the systems use: their CPU is ours
OTHER_LOAD_LIMIT = 0.10  # share of the whole machine other processes may take in a run
ATTEMPTS = 3  # tries per system and run before a disturbed run is kept (and flagged)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU seconds spent in user, nice and system mode on all CPUs since boot.

    Interrupt and steal time are left out: loopback traffic is softirq time
    no process is charged with.
    """
    fields = _read("/proc/stat").splitlines()[0].split()[1:]
    return sum(int(x) for x in fields[:3]) / CLK_TCK


def our_cpu() -> dict[tuple[int, float], float]:
    """CPU seconds, by (pid, start time), of this driver's process tree and of
    the services, reaped children included (they move into their parent's
    figure when they exit, so the sum over a tree never drops)."""
    import psutil

    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    procs += [p for p in psutil.process_iter(["name"]) if p.info["name"] in SERVICES]
    out = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            out[proc.pid, proc.create_time()] = (
                t.user + t.system + t.children_user + t.children_system
            )
    return out


def cpu_delta(
    before: dict[tuple[int, float], float], after: dict[tuple[int, float], float], since: float
) -> float:
    """CPU our processes used between two ``our_cpu`` samples, the first taken
    at epoch ``since``.  A process started in between counts in full; one
    missing from either sample otherwise (exited, unreadable) adds nothing."""
    return sum(
        cpu - before.get(key, 0.0)
        for key, cpu in after.items()
        if key in before or key[1] >= since - 1.0
    )


class LoadMonitor:
    """Measures the CPU share other processes take while a system runs."""

    def __init__(self, period: float = 2.0):
        self.period = period
        self.other = 0.0
        self.wall = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> LoadMonitor:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _loop(self) -> None:
        wall, epoch, busy, ours = time.monotonic(), time.time(), busy_seconds(), our_cpu()
        while not self.done.wait(self.period):
            wall2, epoch2, busy2, ours2 = time.monotonic(), time.time(), busy_seconds(), our_cpu()
            self.other += (busy2 - busy) - cpu_delta(ours, ours2, since=epoch)
            self.wall += wall2 - wall
            wall, epoch, busy, ours = wall2, epoch2, busy2, ours2

    @property
    def share(self) -> float:
        """Mean share of the whole machine used by other processes."""
        if not self.wall:
            return 0.0
        return min(1.0, max(0.0, self.other / (self.wall * (os.cpu_count() or 1))))


class Quiet:
    """Waits for other processes to leave the machine idle, within a budget.

    Before each attempt it waits up to ``per_wait`` seconds; once ``budget``
    seconds of waiting have been spent in all, it neither waits nor repeats
    disturbed runs any more (they are kept and flagged in the report).
    """

    def __init__(self, per_wait: float, budget: float):
        self.per_wait = per_wait
        self.left = budget

    @property
    def exhausted(self) -> bool:
        return self.left <= 0

    def wait(self) -> None:
        start = time.monotonic()
        deadline = start + min(self.per_wait, max(0.0, self.left))
        while True:
            with LoadMonitor(period=1.0) as monitor:
                time.sleep(2.1)  # a measurement window, not synchronisation
            if monitor.share <= OTHER_LOAD_LIMIT or time.monotonic() > deadline:
                break
            log(f"other processes use {monitor.share:.0%} of the CPUs; waiting for quiet")
            time.sleep(3)  # their load is not ours to await
        self.left -= time.monotonic() - start


@dataclass
class Attempt:
    """What one run of one system printed, and how disturbed it was."""

    records: list[dict[str, object]]
    error: str | None
    other_load: float


def run_system(system: System, extra: Sequence[str], run: int) -> Attempt:
    """Run one system once; collect the JSON lines it prints."""
    argv = [*system.argv, *extra]
    log(f"{system.name}: run {run}: {extra[-1]}")
    records: list[dict[str, object]] = []
    error = None
    with LoadMonitor() as monitor:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + RUN_TIMEOUT_S
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.strip()
                if line.startswith("{"):
                    records.append(json.loads(line))
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{system.name} run {run} exceeded {RUN_TIMEOUT_S}s")
            proc.wait()
        except TimeoutError as exc:
            error = str(exc)
        finally:
            stop(proc)
    if proc.returncode not in (0, None):
        log(f"{system.name}: run {run} exited {proc.returncode}")
        if not any("error" in r for r in records):  # a crash that printed no error record
            error = error or f"exited {proc.returncode}"
    log(f"{system.name}: run {run} done; other processes took {monitor.share:.1%} of the CPUs")
    for record in records:
        record["other_load"] = round(monitor.share, 3)
    return Attempt(records, error, monitor.share)


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the adapter (it then stops its workers), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --------------------------------------------------------------------------
# Reporting.


def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(systems: Sequence[System], outcomes: dict[str, Outcome], cell) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """Rows of metrics, columns of systems; rows with no figure at all are left out."""
    rows = [["metric", *(s.name for s in systems)]]
    for metric in METRICS:
        if any(outcomes[s.name].values.get(metric.key) for s in systems):
            rows.append([metric.label, *(cell(outcomes[s.name], metric) for s in systems)])
    return rows


def median_cell(outcome: Outcome, metric: Metric) -> str:
    value = outcome.median(metric)
    if value is None and metric.workload in outcome.notes:
        return "n/a"
    return fmt(value, metric.digits)


def range_cell(outcome: Outcome, metric: Metric) -> str:
    runs = outcome.values.get(metric.key)
    if not runs:
        return "-"
    return f"{fmt(min(runs), metric.digits)} to {fmt(max(runs), metric.digits)}"


def render_text(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "| --- |" + " ---: |" * (len(rows[0]) - 1)]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def _read(path: str) -> str:
    with contextlib.suppress(OSError):
        return Path(path).read_text()
    return ""


def _command(argv: Sequence[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return done.stdout.strip()
    return ""


def machine() -> dict[str, str]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in _read("/proc/cpuinfo").splitlines()
            if ln.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kb = next(
        (
            int(ln.split()[1])
            for ln in _read("/proc/meminfo").splitlines()
            if ln.startswith("MemTotal:")
        ),
        0,
    )
    os_name = next(
        (
            ln.split("=", 1)[1].strip('"')
            for ln in _read("/etc/os-release").splitlines()
            if ln.startswith("PRETTY_NAME=")
        ),
        platform.system(),
    )
    redis_info = _command(["redis-cli", "info", "server"])
    redis_version = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in redis_info.splitlines()
            if ln.startswith("redis_version:")
        ),
        "unknown",
    )
    redis_save = _command(["redis-cli", "config", "get", "save"]).splitlines()[1:]
    redis_aof = _command(["redis-cli", "config", "get", "appendonly"]).splitlines()[1:]
    pg = _command(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atc",
            "SELECT current_setting('server_version') || ', synchronous_commit='"
            " || current_setting('synchronous_commit') || ', fsync='"
            " || current_setting('fsync')",
        ]
    )
    return {
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "RAM": f"{mem_kb / 2**20:.1f} GiB",
        "OS": os_name,
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "PostgreSQL": pg or "unknown",
        "Redis": f"{redis_version}, RDB save '{(redis_save or [''])[0]}', "
        f"appendonly {(redis_aof or ['?'])[0]}",
    }


def advantage(jobd: float, peer_value: float, higher_is_better: bool) -> float:
    """How many times better jobd is than the peer (>1: jobd better)."""
    return jobd / peer_value if higher_is_better else peer_value / jobd


def chart(systems: Sequence[System], outcomes: dict[str, Outcome], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_jobd = "jobd" in outcomes
    peers = [s.name for s in systems if not s.name.startswith("jobd")]
    panels = []  # (metric, [(system, value)])
    for metric in METRICS:
        if has_jobd:
            base = outcomes["jobd"].median(metric)
            pairs = [
                (p, advantage(base, v, metric.higher_is_better))
                for p in peers
                if base and (v := outcomes[p].median(metric))
            ]
        else:
            pairs = [(p, v) for p in peers if (v := outcomes[p].median(metric)) is not None]
        if pairs:
            panels.append((metric, pairs))
    if not panels:
        return
    cols = 3
    rows = -(-len(panels) // cols)
    height = (0.35 * len(peers) + 1.3) * rows
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, height), squeeze=False)
    for ax, (metric, pairs) in zip(axes.flat, panels, strict=False):
        names = [p for p, _ in pairs][::-1]
        values = [v for _, v in pairs][::-1]
        ax.barh(names, values, color="#4878a8")
        if has_jobd:
            ax.axvline(1.0, color="black", linewidth=0.8)
            ax.set_xscale("log")
        title = metric.label + (
            "" if has_jobd else ("  ↑ better" if metric.higher_is_better else "  ↓ better")
        )
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
        for y, v in enumerate(values):
            ax.annotate(
                f"{v:,.{2 if has_jobd else metric.digits}f}",
                (v, y),
                fontsize=7,
                xytext=(2, 0),
                textcoords="offset points",
                va="center",
            )
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(
        "jobd advantage over each peer (times; >1: jobd better; log scale)"
        if has_jobd
        else "Peer job systems on this machine (medians; jobd not yet measured)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(systems: Sequence[System], report: Report) -> str:
    outcomes, opts = report.outcomes, argparse.Namespace(**report.options)
    started = dt.datetime.fromisoformat(report.started)
    medians = render_markdown(table(systems, outcomes, median_cell))
    ranges = render_markdown(table(systems, outcomes, range_cell))
    lines = [
        "# Benchmarks: jobd and its peers",
        "",
        "Generated by `benchmarks/compare.py`; do not edit by hand. Command: "
        f"`{' '.join(['python', 'benchmarks/compare.py', *report.argv])}`.",
        "",
        f"Date: {started:%Y-%m-%d %H:%M} UTC. Runs per system: {opts.runs} (interleaved; "
        f"{getattr(opts, 'scale_runs', opts.runs)} for the scale workload, which needs minutes "
        "of setup); figures are medians.",
        "",
        "## Machine",
        "",
        *(f"- **{k}**: {v}" for k, v in report.machine.items()),
        "",
        "## Method",
        "",
        "Every system runs the same no-op routine taking one integer, on 2 worker "
        "processes that each run one job at a time, with the backend emptied before "
        "each workload (Redis DB flushed, PostgreSQL database dropped and recreated, "
        "a fresh SQLite file). The job appends its start time to a file opened with "
        "O_APPEND; the harness polls that file with a deadline. Source: "
        "`benchmarks/peers/harness.py` and one adapter per peer.",
        "",
        f"- **enqueue**: {opts.n:,} jobs from one producer, one API call per job; "
        "then the same through the bulk API where the system has one.",
        f"- **drain**: those {opts.n:,} jobs queued, then the workers launched; rate "
        "from the first job's start to the last one's, and from the launch.",
        f"- **latency**: {opts.latency_jobs} jobs enqueued {opts.latency_gap_ms:g} ms apart "
        "into idle, booted workers; job start minus enqueue time, both `time.time()`.",
        "- **memory**: RSS (psutil) of each worker, of the supervising process and of "
        "every process together, booted and idle.",
        "- **cold start**: one job queued, then the worker command launched; time to "
        "that job's start.",
        *(
            [
                f"- **scale**: rate of the first {opts.n:,} jobs with {opts.scale_backlogs[0]:,} "
                f"and with {opts.scale_backlogs[1]:,} jobs queued ahead of them (the rate "
                "is taken over the jobs done within 180 s if that is fewer)."
            ]
            if "scale" in opts.workloads
            else []
        ),
        f"- Runs during which unrelated processes took more than {OTHER_LOAD_LIMIT:.0%} of "
        "the CPUs (measured from /proc/stat minus the CPU time of the benchmark's own "
        f"processes and of PostgreSQL and Redis) are repeated, up to {ATTEMPTS} times.",
        "- PostgreSQL peers get ANALYZE after the jobs are queued and before the "
        "workers start: a fresh table has no planner statistics until autovacuum "
        "visits it, which a long-lived queue always has.",
        "",
        "## Results (medians)",
        "",
        medians,
        "",
        "`n/a`: the system has no such API, or the workload does not apply to it; "
        "`-`: no figure (see the system's notes below).",
        "",
        f"![chart]({CHART.name})",
        "",
        "jobd's own targets, where it falls short of them and what the profiles "
        "showed: [performance.md](performance.md).",
        "",
        *(["Run-to-run range (min to max):", "", ranges, ""] if opts.runs > 1 else []),
        "## Systems",
        "",
    ]
    for s in systems:
        o = outcomes[s.name]
        versions = o.info.get("versions") or {}
        vtext = ", ".join(f"{k} {v}" for k, v in dict(versions).items()) or "unknown"  # type: ignore[call-overload]
        lines += [
            f"### {s.name}",
            "",
            f"- versions: {vtext}",
            f"- settings: {o.info.get('settings') or 'not reported'}",
        ]
        if o.background:
            worst = max(o.background)
            lines.append(
                f"- CPU share taken by unrelated processes during the kept runs: "
                f"mean {statistics.mean(o.background):.0%}, worst {worst:.0%}"
                + (" (over the limit: read these figures with care)"
                   if worst > OTHER_LOAD_LIMIT else "")
            )  # fmt: skip
        lines += [f"- {w}: {note}" for w, note in sorted(o.notes.items())]
        lines += [f"- error: {e}" for e in o.all_errors()]
        lines.append("")
    lines += [
        "## Tuning and caveats",
        "",
        "- Each peer runs with its documented defaults at default durability, except "
        "where its settings above say otherwise.",
        "- jobd runs as its users run it: `jobd -c FILE run`, one master and 2 workers "
        "forked from its template process, default settings; every job is recorded "
        "(its attempt row with wall time, CPU seconds and peak RSS), which no peer "
        "above does by default.",
        "- The chart shows jobd (SQLite, the embedded default) against each peer; "
        "jobd-postgres is listed in the table for the PostgreSQL-backed peers.",
        "- Redis-backed peers inherit this machine's Redis persistence (above); a "
        "PostgreSQL commit is durable (synchronous_commit=on, fsync=on).",
        "- rq: the worker pool imports the job module before forking (`-c rq_bench`), "
        "as RQ's performance notes advise; without it every forked work horse "
        "re-imports the module and the drain rate halves.",
        "- pgqueuer: `typer` is pinned to 0.28.0 because `pgq run` of pgqueuer 1.6.0 "
        "crashes with typer 0.29.",
        "- celery: `--without-gossip --without-mingle --without-heartbeat` (one "
        "worker needs no cluster chatter).",
        "- Results: celery and dramatiq run without a result backend and huey does "
        "not store `None` results; rq keeps each finished job for 500 s (its default).",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Main.


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 run, 2,000 jobs, no scale")
    p.add_argument("--peers", help="comma-separated subset of systems (default: all)")
    p.add_argument("--runs", type=int, help="runs per system (default 3, 1 with --quick)")
    p.add_argument(
        "--scale-runs", type=int, default=1, help="runs of the (slow) scale workload (default 1)"
    )
    p.add_argument("--n", type=int, help="jobs per throughput workload (default 10,000)")
    p.add_argument("--workloads", help="comma-separated subset of workloads")
    p.add_argument("--scale-backlogs", default="1000,1000000")
    p.add_argument("--no-docs", action="store_true", help="print only; leave docs/ alone")
    p.add_argument("--from-results", metavar="JSON", help="re-render a saved run, run nothing")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=180.0,
        help="seconds to wait at most, before each run, for other processes' CPU load to stop",
    )
    p.add_argument(
        "--wait-budget",
        type=float,
        default=3600.0,
        help="seconds of such waiting in all; then disturbed runs are kept and flagged",
    )
    opts = p.parse_args(argv)
    opts.runs = opts.runs or (1 if opts.quick else 3)
    opts.scale_runs = min(opts.scale_runs, opts.runs)
    opts.n = opts.n or (2_000 if opts.quick else 10_000)
    opts.latency_jobs = 50 if opts.quick else 200
    opts.latency_gap_ms = 20.0
    opts.scale_backlogs = tuple(int(x) for x in opts.scale_backlogs.split(","))
    if opts.workloads is None:
        every = "enqueue-one,enqueue-bulk,drain,cold-start,memory,latency,scale"
        opts.workloads = every.replace(",scale", "") if opts.quick else every
    return opts


@dataclass
class Report:
    """One comparison: how it was run, where, and what every system printed."""

    options: dict[str, object]
    argv: list[str]
    started: str  # ISO 8601, UTC
    machine: dict[str, str]
    outcomes: dict[str, Outcome]

    def save(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        started = dt.datetime.fromisoformat(self.started)
        path = RESULTS / f"compare-{started:%Y%m%d-%H%M%S}.json"
        data = {
            **{k: getattr(self, k) for k in ("options", "argv", "started", "machine")},
            "systems": {name: o.dump() for name, o in self.outcomes.items()},
        }
        path.write_text(json.dumps(data, indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> Report:
        data = json.loads(path.read_text())
        outcomes = {name: Outcome.load(o) for name, o in data["systems"].items()}
        return cls(data["options"], data["argv"], data["started"], data["machine"], outcomes)


def select(names: str | None) -> list[System]:
    systems = all_systems()
    if names:
        wanted = names.split(",")
        unknown = set(wanted) - {s.name for s in systems}
        if unknown:
            sys.exit(f"unknown systems: {sorted(unknown)}; known: {[s.name for s in systems]}")
        systems = [s for s in systems if s.name in wanted]
    return systems


# The workloads one adapter invocation runs together (they share a backend
# and a set of workers); a disturbed group is repeated on its own.
GROUPS = (
    ("enqueue-one", "drain"),
    ("enqueue-bulk",),
    ("cold-start", "memory", "latency"),
    ("scale",),
)


def collect(systems: Sequence[System], opts: argparse.Namespace, argv: list[str]) -> Report:
    """Run every system ``opts.runs`` times, interleaved (``opts.scale_runs`` for scale)."""
    ensure_venvs(systems)
    options = {
        k: getattr(opts, k)
        for k in (
            "runs", "scale_runs", "n", "latency_jobs", "latency_gap_ms", "scale_backlogs",
            "workloads",
        )
    }  # fmt: skip
    common = ["--n", str(opts.n), "--latency-jobs", str(opts.latency_jobs)]
    common += ["--latency-gap-ms", str(opts.latency_gap_ms)]
    common += ["--scale-backlogs", ",".join(map(str, opts.scale_backlogs))]
    wanted = opts.workloads.split(",")
    quiet = Quiet(opts.wait_quiet, opts.wait_budget)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    report = Report(options, argv, started, machine(), {s.name: Outcome() for s in systems})
    for run in range(1, opts.runs + 1):
        for system in systems:
            outcome = report.outcomes[system.name]
            if not system.ready():
                outcome.driver_errors.append(f"run {run}: {system.argv[0]} missing")
                continue
            for group in GROUPS:
                workloads = [w for w in group if w in wanted and not outcome.lacks(w)]
                if not workloads or (workloads == ["scale"] and run > opts.scale_runs):
                    continue
                extra = [*common, "--workloads", ",".join(workloads)]
                outcome.commit(run_quietly(system, extra, run, quiet), run)
                report.save()  # so far: an interrupted comparison can still be rendered
    return report


def run_quietly(system: System, extra: Sequence[str], run: int, quiet: Quiet) -> Attempt:
    """Run until it succeeds undisturbed by other processes (``ATTEMPTS`` at most)."""
    for attempt_no in range(1, ATTEMPTS + 1):
        quiet.wait()
        attempt = run_system(system, extra, run)
        failed = attempt.error or any("error" in r for r in attempt.records)
        disturbed = attempt.other_load > OTHER_LOAD_LIMIT
        if attempt_no == ATTEMPTS or not (failed or (disturbed and not quiet.exhausted)):
            break
        why = "failed" if failed else (
            f"shared the machine (other processes took {attempt.other_load:.0%} of the CPUs)"
        )  # fmt: skip
        log(f"{system.name}: run {run} {why}; running it again")
    return attempt


def main(argv: Sequence[str] | None = None) -> int:
    # Ctrl-C and SIGTERM unwind through run_system, which stops the adapter,
    # which stops its workers.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = parse(argv)
    if opts.from_results:
        report = Report.load(Path(opts.from_results))
        known = {s.name: s for s in all_systems()}
        systems = [known.get(name, System(name, ("",))) for name in report.outcomes]
    else:
        systems = select(opts.peers)
        report = collect(systems, opts, argv)
        log(f"raw results: {report.save()}")
    print(render_text(table(systems, report.outcomes, median_cell)))
    for s in systems:
        for error in report.outcomes[s.name].all_errors():
            print(f"{s.name}: {error}")
    if not opts.no_docs:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(markdown(systems, report))
        chart(systems, report.outcomes, CHART)
        log(f"wrote {DOC} and {CHART}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
