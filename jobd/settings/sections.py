"""The settings themselves: one frozen dataclass per section, and `Settings`, the whole.

Each field is declared once with `setting()` (jobd.settings.declaration):
its default, its parser, a doc line and whether SIGHUP can change it.
`to_json`/`from_json` carry settings to the template process, which does
not read the config file itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

from jobd.policy import LIMIT_FIELDS, POLICY_FIELDS, check_queue_name
from jobd.schedule import Schedule
from jobd.settings.declaration import (
    choice,
    cron_or_off,
    database_url,
    duration_range,
    fraction,
    int_range,
    module_name,
    name_list,
    number_range,
    setting,
    text,
)
from jobd.settings.pools import PoolSpec, default_pool
from jobd.settings.pools import from_json as pool_from_json
from jobd.units import parse_size


@dataclass(frozen=True)
class JobdSection:
    database: str = setting(
        "sqlite:////var/lib/jobd/jobd.db",
        database_url,
        "SQLAlchemy URL of the store. A relative SQLite path is relative to the config file.",
        reloadable=False,
    )
    modules: tuple[str, ...] = setting(
        (),
        name_list(module_name, allow_empty=True),
        "Modules the workers import to register routines (the master never imports them). "
        "Workers run only the routines these modules and jobd's built-ins register at boot; "
        "a job naming any other fails at once.",
    )
    pythonpath: tuple[str, ...] = setting(
        (),
        name_list(text, allow_empty=True),
        "Directories put in front of the workers' import path, relative to the "
        "config file; the working directory is searched last, after the installed packages.",
    )
    node_name: str = setting(
        "",
        text,
        "Name of this node in `jobd status`; empty means the host name.",
        reloadable=False,
    )
    log_level: str = setting(
        "info", choice("debug", "info", "warning", "error"), "Least severe level logged."
    )


@dataclass(frozen=True)
class PoolSection:
    min_workers: int = setting(
        2, int_range(1, 1024), "Workers kept running when idle (the pool starts with these)."
    )
    max_workers: int = setting(8, int_range(1, 1024), "Most workers the pool grows to.")
    queues: tuple[str, ...] = setting(
        ("default",),
        name_list(check_queue_name, allow_empty=False),
        "Queues this node serves (without [pools]; with them, each pool names its own).",
    )
    scale_up_threshold: float = setting(
        5.0,
        number_range(0.1, 1e6),
        "Autoscaling: ready jobs per worker above which the pool grows.",
    )
    clear_within: float = setting(
        30.0,
        duration_range(0.1, 86400),
        "Autoscaling: grow so that the ready jobs clear within this (by recent runtime), "
        "and when a ready job has waited longer.",
    )
    max_step: int = setting(
        4, int_range(1, 1024), "Autoscaling: most workers added or retired at once."
    )
    scale_interval: float = setting(
        1.0, duration_range(0.05, 3600), "Autoscaling: how often the pool size is decided."
    )
    scale_cooldown: float = setting(
        10.0,
        duration_range(0, 86400),
        "Autoscaling: no shrinking within this after a change (growing has no cooldown).",
    )
    hysteresis: float = setting(
        0.25,
        number_range(0, 0.9),
        "Autoscaling: shrink only when demand falls this fraction below the size.",
    )
    idle_timeout: float = setting(
        30.0,
        duration_range(0, 86400),
        "Autoscaling: a worker idle this long may be retired (only idle ones ever are).",
    )
    graceful_timeout: float = setting(
        30.0,
        duration_range(0, 86400),
        "On SIGTERM, how long running jobs may take to finish before they are "
        "killed and put back in the queue.",
    )
    boot_timeout: float = setting(
        30.0,
        duration_range(0.1, 3600),
        "How long importing `modules` and booting a worker may take.",
    )
    crash_window: float = setting(
        60.0,
        duration_range(0, 86400),
        "Crash loops: workers that die booting or before their first job, more than "
        "one within this, make forks wait (0.1 s, doubling). Deaths while serving "
        "jobs never do.",
    )
    crash_backoff_max: float = setting(
        10.0,
        duration_range(0, 3600),
        "Crash loops: the longest wait before the next fork.",
    )
    max_jobs_per_worker: int = setting(
        0,
        int_range(0, 2**31 - 1),
        "Retire a worker after this many jobs, give or take 10% so that workers do "
        "not all restart together; 0 never.",
    )
    max_worker_rss: int = setting(
        0,
        parse_size,
        "Retire a worker, after its current job, once its RSS exceeds this; 0 never.",
    )
    pipeline_budget: float = setting(
        0.002,
        duration_range(0, 1),
        "Expected work (recent mean runtime) that may wait in a busy worker's pipe "
        "while no worker is idle; 0 turns pipelining off.",
    )


@dataclass(frozen=True)
class StoreSection:
    timeout: float = setting(
        2.0,
        duration_range(0.01, 600),
        "Bound on every database call of the master (SQLite busy timeout, "
        "PostgreSQL statement and lock timeout).",
        reloadable=False,
    )
    poll_interval: float = setting(
        1.0,
        duration_range(0.01, 600),
        "Backstop poll for new jobs when no wake-up arrives.",
    )
    heartbeat_interval: float = setting(
        2.0, duration_range(0.1, 600), "How often the master records that its node is alive."
    )
    node_timeout: float = setting(
        0.0,
        duration_range(0, 86400),
        "A node whose heartbeat is older than this is dead: another node puts its running "
        "jobs back as lost attempts. 0 means 5 heartbeat intervals (10s by default); else it "
        "must exceed store.heartbeat_interval (allow for a slow database: docs/multihost.md).",
    )
    sqlite_synchronous: str = setting(
        "normal",
        choice("normal", "full"),
        "SQLite `synchronous` pragma: 'normal' survives a crash of any process, "
        "'full' also a power loss, at a cost per commit.",
        reloadable=False,
    )

    def node_window(self) -> float:
        """How old a node's heartbeat may get before the node is dead (`node_timeout`)."""
        return self.node_timeout or 5 * self.heartbeat_interval


def _limit(name: str) -> Any:
    declared = POLICY_FIELDS[name]
    return setting(
        declared.default,
        declared.metadata["parse"],
        f"Default for routines that set none: {declared.metadata['doc']}",
    )


@dataclass(frozen=True)
class LimitsSection:
    time_limit: float | None = _limit("time_limit")
    soft_time_limit: float | None = _limit("soft_time_limit")
    memory_limit: int | None = _limit("memory_limit")
    address_space_limit: int | None = _limit("address_space_limit")
    cpu_time_limit: float | None = _limit("cpu_time_limit")
    open_files_limit: int | None = _limit("open_files_limit")
    isolation: str = _limit("isolation")
    memory_check_interval: float = setting(
        0.2,
        duration_range(0.01, 60),
        "How often the master samples the RSS of workers whose job has a memory_limit.",
    )
    kill_grace: float = setting(
        3.0,
        duration_range(0, 600),
        "After a hard time limit: how long SIGTERM may take before SIGKILL.",
    )


DAY = 86400.0


@dataclass(frozen=True)
class RetentionSection:
    completed_after: float = setting(
        7 * DAY,
        duration_range(0, 36500 * DAY),
        "Succeeded and cancelled jobs, with their attempts, are deleted this long after "
        "they finished.",
    )
    failed_after: float = setting(
        30 * DAY,
        duration_range(0, 36500 * DAY),
        "Failed jobs, with their attempts, are deleted this long after they finished.",
    )
    schedule: str = setting(
        "0 3 * * *",
        cron_or_off,
        'When the built-in schedule `jobd.cleanup` runs the cleanup (cron, UTC); "off" '
        "disables it (`jobd cleanup` still works).",
    )
    queue: str = setting("default", check_queue_name, "Queue of the cleanup jobs.")
    batch_size: int = setting(
        500,
        int_range(1, 100_000),
        "Jobs deleted per transaction: each transaction holds SQLite's write lock briefly.",
    )


@dataclass(frozen=True)
class HealthSection:
    node_stale_after: float = setting(
        30.0,
        duration_range(1, DAY),
        "`jobd health`: a node whose heartbeat is older than this is dead "
        "(must exceed store.heartbeat_interval).",
    )
    ready_max_age: float = setting(
        300.0,
        duration_range(1, 365 * DAY),
        "`jobd health`: unhealthy when a ready job has waited longer than this.",
    )
    failure_window: float = setting(
        900.0,
        duration_range(1, 365 * DAY),
        "`jobd health`: the window over which the failure rate of attempts is measured.",
    )
    failure_rate: float = setting(
        0.25,
        fraction,
        "`jobd health`: unhealthy when more than this fraction of the window's attempts failed.",
    )
    failure_min_attempts: int = setting(
        20,
        int_range(1, 2**31 - 1),
        "`jobd health`: with fewer attempts in the window the failure rate is not judged.",
    )


SECTIONS: dict[str, type[Any]] = {
    "jobd": JobdSection,
    "pool": PoolSection,
    "store": StoreSection,
    "limits": LimitsSection,
    "retention": RetentionSection,
    "health": HealthSection,
}


class _Derived(NamedTuple):
    pools: tuple[PoolSpec, ...]
    queues: tuple[str, ...]
    queue_set: frozenset[str]


@dataclass(frozen=True)
class Settings:
    """Everything jobd reads from its config file and environment."""

    jobd: JobdSection = field(default_factory=JobdSection)
    pool: PoolSection = field(default_factory=PoolSection)
    store: StoreSection = field(default_factory=StoreSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    retention: RetentionSection = field(default_factory=RetentionSection)
    health: HealthSection = field(default_factory=HealthSection)
    # per routine name: validated policy overrides from [routines."mod:fn"]
    routines: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # [[schedules]], in file order (reloadable; no environment overrides)
    schedules: tuple[Schedule, ...] = ()
    # [pools.NAME], in file order; empty: one pool made of [pool] (see pool_specs)
    pools: tuple[PoolSpec, ...] = ()
    source: Path | None = None

    def pool_specs(self) -> tuple[PoolSpec, ...]:
        return self._derived.pools

    def served_queues(self) -> tuple[str, ...]:
        return self._derived.queues

    def serves(self, queues: Iterable[str]) -> bool:
        """Whether any of `queues` is served by one of the pools."""
        return not self._derived.queue_set.isdisjoint(queues)

    @cached_property
    def _derived(self) -> _Derived:
        # Computed once: the master asks on every wake-up (settings are immutable).
        pools = self.pools or (default_pool(self.pool),)
        queues = tuple(queue for pool in pools for queue in pool.queues)
        return _Derived(pools, queues, frozenset(queues))

    def limit_defaults(self) -> dict[str, Any]:
        """The `[limits]` values that differ from the built-in policy defaults."""
        return {
            name: getattr(self.limits, name)
            for name in LIMIT_FIELDS
            if getattr(self.limits, name) != POLICY_FIELDS[name].default
        }


def to_json(settings: Settings) -> dict[str, Any]:
    """Settings as JSON, for the template process (it does not re-read the file)."""
    data: dict[str, Any] = {name: dataclasses.asdict(getattr(settings, name)) for name in SECTIONS}
    data["routines"] = {name: dict(values) for name, values in settings.routines.items()}
    data["schedules"] = [{"name": s.name, **s.definition()} for s in settings.schedules]
    data["pools"] = [pool.to_json() for pool in settings.pools]
    data["source"] = None if settings.source is None else str(settings.source)
    return data


def from_json(data: Mapping[str, Any]) -> Settings:
    sections = {}
    for name, cls in SECTIONS.items():
        values = {
            key: tuple(value) if isinstance(value, list) else value
            for key, value in data[name].items()
        }
        sections[name] = cls(**values)
    source = data.get("source")
    schedules = tuple(Schedule.from_definition(s["name"], s) for s in data.get("schedules", ()))
    return Settings(
        **sections,
        routines=data["routines"],
        schedules=schedules,
        pools=tuple(pool_from_json(p) for p in data.get("pools", ())),
        source=None if source is None else Path(source),
    )
