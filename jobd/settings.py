"""jobd's settings: declared once, typed, frozen.

Each setting is a field of a frozen section dataclass, declared with its
default, its parser (which validates), a doc line and whether SIGHUP can
change it. From that one declaration come: the TOML keys (`[pool]
min_workers`), the environment overrides (`JOBD_POOL_MIN_WORKERS`; the
`[jobd]` section drops its name: `JOBD_DATABASE`), the validation messages
and `docs/settings.md` (`python -m jobd.settings`).

`load(path, environ)` is a pure function of the file and the environment;
a reload that fails keeps the running settings (the caller just keeps the
old object). The environment wins over the file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

from jobd.policy import (
    LIMIT_FIELDS,
    POLICY_FIELDS,
    check_queue_name,
    check_routine_name,
    parse_policy,
)
from jobd.pools import PoolSpec, default_pool, parse_pools
from jobd.pools import from_json as pool_from_json
from jobd.schedule import SCHEDULE_DOCS, Schedule, check_cron, parse_schedule
from jobd.units import format_duration, parse_duration, parse_size

DEFAULT_CONFIG = Path("/etc/jobd/jobd.toml")


class ConfigError(Exception):
    """A config file or environment value that cannot be used; one line, naming the key."""


# -- parsers ---------------------------------------------------------------


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _int_range(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not an integer")
        if not low <= value <= high:
            raise ValueError(f"{value!r} is out of range {low}..{high}")
        return value

    return parse


def _duration_range(low: float, high: float) -> Callable[[object], float]:
    def parse(value: object) -> float:
        seconds = parse_duration(value)
        if not low <= seconds <= high:
            raise ValueError(f"{value!r} is out of range {low:g}s..{high:g}s")
        return seconds

    return parse


def _number_range(low: float, high: float) -> Callable[[object], float]:
    def parse(value: object) -> float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{value!r} is not a number")
        if not low <= float(value) <= high:
            raise ValueError(f"{value!r} is out of range {low:g}..{high:g}")
        return float(value)

    return parse


def _choice(*choices: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value.lower()

    return parse


def _names(
    check: Callable[[object], str], allow_empty: bool
) -> Callable[[object], tuple[str, ...]]:
    """A TOML array of strings, or a comma-separated string (environment)."""

    def parse(value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise ValueError(f"{value!r} is not a list of names")
        names = tuple(check(item) for item in value)
        if not names and not allow_empty:
            raise ValueError("the list is empty")
        if len(set(names)) != len(names):
            raise ValueError(f"{list(names)!r} names an entry twice")
        return names

    return parse


def _module_name(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", value):
        raise ValueError(f"{value!r} is not an importable module name")
    return value


def _database_url(value: object) -> str:
    if not isinstance(value, str) or not re.match(r"^[a-z][a-z0-9+]*://", value):
        raise ValueError(
            f"{value!r} is not a database URL "
            "(e.g. 'sqlite:////var/lib/jobd/jobd.db' or 'postgresql://user@host/db')"
        )
    return value


def setting(
    default: Any, parse: Callable[[object], Any], doc: str, *, reloadable: bool = True
) -> Any:
    """Declare one setting: a dataclass field carrying its parser and doc."""
    return field(default=default, metadata={"parse": parse, "doc": doc, "reloadable": reloadable})


# -- sections --------------------------------------------------------------


@dataclass(frozen=True)
class JobdSection:
    database: str = setting(
        "sqlite:////var/lib/jobd/jobd.db",
        _database_url,
        "SQLAlchemy URL of the store. A relative SQLite path is relative to the config file.",
        reloadable=False,
    )
    modules: tuple[str, ...] = setting(
        (),
        _names(_module_name, allow_empty=True),
        "Modules the workers import to register routines (the master never imports them).",
    )
    pythonpath: tuple[str, ...] = setting(
        (),
        _names(_text, allow_empty=True),
        "Directories put in front of the workers' import path, relative to the "
        "config file; the working directory is always searched first.",
    )
    node_name: str = setting(
        "",
        _text,
        "Name of this node in `jobd status`; empty means the host name.",
        reloadable=False,
    )
    log_level: str = setting(
        "info", _choice("debug", "info", "warning", "error"), "Least severe level logged."
    )


@dataclass(frozen=True)
class PoolSection:
    min_workers: int = setting(
        2, _int_range(1, 1024), "Workers kept running when idle (the pool starts with these)."
    )
    max_workers: int = setting(8, _int_range(1, 1024), "Most workers the pool grows to.")
    queues: tuple[str, ...] = setting(
        ("default",),
        _names(check_queue_name, allow_empty=False),
        "Queues this node serves (without [pools]; with them, each pool names its own).",
    )
    scale_up_threshold: float = setting(
        5.0,
        _number_range(0.1, 1e6),
        "Autoscaling: ready jobs per worker above which the pool grows.",
    )
    clear_within: float = setting(
        30.0,
        _duration_range(0.1, 86400),
        "Autoscaling: grow so that the ready jobs clear within this (by recent runtime), "
        "and when a ready job has waited longer.",
    )
    max_step: int = setting(
        4, _int_range(1, 1024), "Autoscaling: most workers added or retired at once."
    )
    scale_interval: float = setting(
        1.0, _duration_range(0.05, 3600), "Autoscaling: how often the pool size is decided."
    )
    scale_cooldown: float = setting(
        10.0,
        _duration_range(0, 86400),
        "Autoscaling: no shrinking within this after a change (growing has no cooldown).",
    )
    hysteresis: float = setting(
        0.25,
        _number_range(0, 0.9),
        "Autoscaling: shrink only when demand falls this fraction below the size.",
    )
    idle_timeout: float = setting(
        30.0,
        _duration_range(0, 86400),
        "Autoscaling: a worker idle this long may be retired (only idle ones ever are).",
    )
    graceful_timeout: float = setting(
        30.0,
        _duration_range(0, 86400),
        "On SIGTERM, how long running jobs may take to finish before they are "
        "killed and put back in the queue.",
    )
    boot_timeout: float = setting(
        30.0,
        _duration_range(0.1, 3600),
        "How long importing `modules` and booting a worker may take.",
    )
    max_jobs_per_worker: int = setting(
        0,
        _int_range(0, 2**31 - 1),
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
        _duration_range(0, 1),
        "Expected work (recent mean runtime) that may wait in a busy worker's pipe "
        "while no worker is idle; 0 turns pipelining off.",
    )


@dataclass(frozen=True)
class StoreSection:
    timeout: float = setting(
        2.0,
        _duration_range(0.01, 600),
        "Bound on every database call of the master (SQLite busy timeout, "
        "PostgreSQL statement and lock timeout).",
        reloadable=False,
    )
    poll_interval: float = setting(
        1.0,
        _duration_range(0.01, 600),
        "Backstop poll for new jobs when no wake-up arrives.",
    )
    heartbeat_interval: float = setting(
        2.0, _duration_range(0.1, 600), "How often the master records that its node is alive."
    )
    node_timeout: float = setting(
        0.0,
        _duration_range(0, 86400),
        "A node whose heartbeat is older than this is dead: another node puts its running "
        "jobs back as lost attempts. 0 means 5 heartbeat intervals (10s by default); else it "
        "must exceed store.heartbeat_interval (allow for a slow database: docs/multihost.md).",
    )
    sqlite_synchronous: str = setting(
        "normal",
        _choice("normal", "full"),
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
        _duration_range(0.01, 60),
        "How often the master samples the RSS of workers whose job has a memory_limit.",
    )
    kill_grace: float = setting(
        3.0,
        _duration_range(0, 600),
        "After a hard time limit: how long SIGTERM may take before SIGKILL.",
    )


def _cron_or_off(value: object) -> str:
    if isinstance(value, str) and value.strip().lower() in ("off", "none", ""):
        return "off"
    return check_cron(value)


def _fraction(value: object) -> float:
    try:
        number = float(value) if isinstance(value, int | float | str) else math.nan
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:
        raise ValueError(f"{value!r} is not a number between 0 and 1")
    return number


DAY = 86400.0


@dataclass(frozen=True)
class RetentionSection:
    completed_after: float = setting(
        7 * DAY,
        _duration_range(0, 36500 * DAY),
        "Succeeded and cancelled jobs, with their attempts, are deleted this long after "
        "they finished.",
    )
    failed_after: float = setting(
        30 * DAY,
        _duration_range(0, 36500 * DAY),
        "Failed jobs, with their attempts, are deleted this long after they finished.",
    )
    schedule: str = setting(
        "0 3 * * *",
        _cron_or_off,
        'When the built-in schedule `jobd.cleanup` runs the cleanup (cron, UTC); "off" '
        "disables it (`jobd cleanup` still works).",
    )
    queue: str = setting("default", check_queue_name, "Queue of the cleanup jobs.")
    batch_size: int = setting(
        500,
        _int_range(1, 100_000),
        "Jobs deleted per transaction: each transaction holds SQLite's write lock briefly.",
    )


@dataclass(frozen=True)
class HealthSection:
    node_stale_after: float = setting(
        30.0,
        _duration_range(1, DAY),
        "`jobd health`: a node whose heartbeat is older than this is dead "
        "(must exceed store.heartbeat_interval).",
    )
    ready_max_age: float = setting(
        300.0,
        _duration_range(1, 365 * DAY),
        "`jobd health`: unhealthy when a ready job has waited longer than this.",
    )
    failure_window: float = setting(
        900.0,
        _duration_range(1, 365 * DAY),
        "`jobd health`: the window over which the failure rate of attempts is measured.",
    )
    failure_rate: float = setting(
        0.25,
        _fraction,
        "`jobd health`: unhealthy when more than this fraction of the window's attempts failed.",
    )
    failure_min_attempts: int = setting(
        20,
        _int_range(1, 2**31 - 1),
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
# Schedule names that jobd's own schedules use (jobd.scheduling).
RESERVED_SCHEDULES = ("jobd.cleanup",)


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


# -- loading ---------------------------------------------------------------


def env_name(section: str, key: str) -> str:
    prefix = "JOBD_" if section == "jobd" else f"JOBD_{section.upper()}_"
    return prefix + key.upper()


def config_path(given: str | None, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read and whether the user named it explicitly."""
    if given:
        return Path(given), True
    if environ.get("JOBD_CONFIG"):
        return Path(environ["JOBD_CONFIG"]), True
    return DEFAULT_CONFIG, False


def load(
    path: Path | None, environ: Mapping[str, str] | None = None, *, required: bool = True
) -> Settings:
    """Settings from a TOML file (None: defaults) and `JOBD_*` environment overrides.

    A missing file is an error when `required`; otherwise defaults are used.
    Raises ConfigError with one line naming the file, key and bad value.
    """
    environ = os.environ if environ is None else environ
    data = _read_toml(path, required) if path is not None else {}
    where = str(path) if path is not None else "config"
    unknown = set(data) - set(SECTIONS) - {"routines", "schedules", "pools"}
    if unknown:
        raise ConfigError(
            f"{where}: unknown section [{sorted(unknown)[0]}] "
            f"(known: {', '.join([*SECTIONS, 'routines', 'schedules', 'pools'])})"
        )
    sections = {
        name: _load_section(name, cls, data.get(name, {}), environ, where)
        for name, cls in SECTIONS.items()
    }
    if path is not None:
        sections["jobd"] = _anchor_paths(sections["jobd"], path, environ)
    settings = Settings(
        **sections,
        routines=_load_routines(data.get("routines", {}), where),
        schedules=_load_schedules(data.get("schedules", []), where),
        pools=_load_pools(data.get("pools", {}), sections["pool"], where),
        source=path,
    )
    _cross_check(settings, where)
    return settings


def _read_toml(path: Path, required: bool) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: config file not found") from None
        return {}
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _load_section(
    name: str, cls: type[Any], table: object, environ: Mapping[str, str], where: str
) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(table) - set(fields)
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{where}: unknown key {name}.{key} (known: {', '.join(fields)})")
    values: dict[str, Any] = {}
    for key, declared in fields.items():
        env = env_name(name, key)
        if env in environ:
            raw, origin = environ[env], f"environment {env}"
        elif key in table:
            raw, origin = table[key], f"{where}: {name}.{key}"
        else:
            continue
        try:
            values[key] = declared.metadata["parse"](raw)
        except ValueError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
    return cls(**values)


def _load_pools(tables: object, section: PoolSection, where: str) -> tuple[PoolSpec, ...]:
    parsers = {f.name: f.metadata["parse"] for f in dataclasses.fields(PoolSection)}
    try:
        return parse_pools(tables, section, parsers, where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _load_routines(table: object, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(table, dict):
        raise ConfigError(f'{where}: [routines] must hold tables like [routines."app.jobs:resize"]')
    routines: dict[str, dict[str, Any]] = {}
    for name, overrides in table.items():
        try:
            check_routine_name(name)
        except ValueError as exc:
            raise ConfigError(f"{where}: [routines.{name!r}]: {exc}") from None
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where}: routines.{name!r} must be a table")
        try:
            routines[name] = parse_policy(overrides, f"{where}: routines.{name!r}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return routines


def _load_schedules(tables: object, where: str) -> tuple[Schedule, ...]:
    if not isinstance(tables, list):
        raise ConfigError(f"{where}: schedules must be an array of tables: [[schedules]]")
    schedules: list[Schedule] = []
    for index, table in enumerate(tables):
        place = f"{where}: schedules[{index}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{place} must be a table")
        try:
            schedule = parse_schedule(table, place)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if schedule.name in RESERVED_SCHEDULES:
            raise ConfigError(f"{place}.name: {schedule.name!r} is reserved for jobd's schedule")
        if any(other.name == schedule.name for other in schedules):
            raise ConfigError(
                f"{place}.name: {schedule.name!r} is used by another schedule; give each a name"
            )
        schedules.append(schedule)
    return tuple(schedules)


def _anchor_paths(jobd: JobdSection, config: Path, environ: Mapping[str, str]) -> JobdSection:
    """Relative paths in the file are relative to the file, not the working directory."""
    database = jobd.database
    if database.startswith("sqlite:///") and "JOBD_DATABASE" not in environ:
        database = _anchor_sqlite(database, config)
    pythonpath = tuple(str((config.parent / entry).resolve()) for entry in jobd.pythonpath)
    return dataclasses.replace(jobd, database=database, pythonpath=pythonpath)


def _anchor_sqlite(url: str, config: Path) -> str:
    """sqlite:///relative.db next to the config file, not the working directory."""
    rest = url[len("sqlite:///") :]
    if not rest or rest.startswith("/") or rest.startswith(":memory:"):
        return url
    path, _, query = rest.partition("?")
    anchored = (config.parent / path).resolve()
    return f"sqlite:///{anchored}" + (f"?{query}" if query else "")


def _cross_check(settings: Settings, where: str) -> None:
    pool = settings.pool
    if pool.max_workers < pool.min_workers:
        raise ConfigError(
            f"{where}: pool.max_workers ({pool.max_workers}) is below "
            f"pool.min_workers ({pool.min_workers})"
        )
    limits = settings.limits
    if limits.soft_time_limit and limits.time_limit and limits.soft_time_limit >= limits.time_limit:
        raise ConfigError(
            f"{where}: limits.soft_time_limit ({format_duration(limits.soft_time_limit)}) "
            f"must be below limits.time_limit ({format_duration(limits.time_limit)})"
        )
    store = settings.store
    if store.node_timeout and store.node_timeout <= store.heartbeat_interval:
        raise ConfigError(
            f"{where}: store.node_timeout ({format_duration(store.node_timeout)}) must exceed "
            f"store.heartbeat_interval ({format_duration(store.heartbeat_interval)})"
        )
    if settings.health.node_stale_after <= settings.store.heartbeat_interval:
        raise ConfigError(
            f"{where}: health.node_stale_after "
            f"({format_duration(settings.health.node_stale_after)}) must exceed "
            f"store.heartbeat_interval ({format_duration(settings.store.heartbeat_interval)})"
        )


def keep_unreloadable(old: Settings, new: Settings) -> tuple[Settings, list[str]]:
    """`new` with the running values of settings SIGHUP cannot change; their names."""
    changed = not_reloadable_changes(old, new)
    if not changed:
        return new, []
    sections = {}
    for name in SECTIONS:
        kept = {
            key.split(".", 1)[1]: getattr(getattr(old, name), key.split(".", 1)[1])
            for key in changed
            if key.startswith(f"{name}.")
        }
        sections[name] = dataclasses.replace(getattr(new, name), **kept)
    return dataclasses.replace(new, **sections), changed


def not_reloadable_changes(old: Settings, new: Settings) -> list[str]:
    """Keys whose new value SIGHUP cannot apply (they need a restart)."""
    changed = []
    for name in SECTIONS:
        old_section, new_section = getattr(old, name), getattr(new, name)
        for declared in dataclasses.fields(old_section):
            if declared.metadata["reloadable"]:
                continue
            if getattr(old_section, declared.name) != getattr(new_section, declared.name):
                changed.append(f"{name}.{declared.name}")
    return changed


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


# -- documentation ---------------------------------------------------------


def _show_default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):  # as TOML writes it
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{item}"' for item in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def render_markdown() -> str:
    """docs/settings.md, generated from the declarations above."""
    lines = [
        "# Settings",
        "",
        "<!-- generated by `python -m jobd.settings`; do not edit by hand -->",
        "",
        "jobd reads one TOML file: `-c FILE`, else `$JOBD_CONFIG`, else "
        "`/etc/jobd/jobd.toml` (used only if it exists). Every key can be "
        "overridden by an environment variable, which wins over the file. "
        "Durations are written `250ms`, `30s`, `5m`, `2h`, `7d` (a bare number is "
        "seconds); sizes `512K`, `256M`, `2G` (binary multiples; a bare number is "
        'bytes). Optional limits take `0` or `"none"` to disable them. '
        "*Reload*: whether `systemctl reload jobd` (SIGHUP) applies a change; "
        "the others need a restart.",
        "",
    ]
    for name, cls in SECTIONS.items():
        lines += [f"## [{name}]", "", "| key | default | environment | reload | meaning |"]
        lines.append("| --- | --- | --- | --- | --- |")
        for declared in dataclasses.fields(cls):
            reload = "yes" if declared.metadata["reloadable"] else "no"
            lines.append(
                f"| `{declared.name}` | `{_show_default(declared.default)}` | "
                f"`{env_name(name, declared.name)}` | {reload} | {declared.metadata['doc']} |"
            )
        lines.append("")
    lines += [
        '## [routines."module:function"]',
        "",
        "Overrides of one routine's policy, over the decorator's values and the "
        "`[limits]` defaults. Any of these keys (reloadable):",
        "",
        "| key | default | meaning |",
        "| --- | --- | --- |",
    ]
    for policy_field in POLICY_FIELDS.values():
        lines.append(
            f"| `{policy_field.name}` | `{_show_default(policy_field.default)}` | "
            f"{policy_field.metadata['doc']} |"
        )
    lines.append("")
    return "\n".join(lines + _schedules_markdown())


def _schedules_markdown() -> list[str]:
    lines = [
        "## [[schedules]]",
        "",
        "Each `[[schedules]]` table enqueues a routine on a cron expression or an "
        "interval; see [scheduling.md](scheduling.md) for time zones, DST and missed "
        "fires. Reloadable; set in the file only (no environment overrides). "
        "Besides these, jobd's own schedule `jobd.cleanup` runs the retention "
        "cleanup (`[retention] schedule`).",
        "",
        "```toml",
        "[[schedules]]",
        'name = "nightly-report"',
        'routine = "app.jobs:report"',
        'cron = "30 2 * * *"',
        'timezone = "Europe/Berlin"',
        'kwargs = { format = "pdf" }',
        "```",
        "",
        "| key | default | meaning |",
        "| --- | --- | --- |",
    ]
    for key, default, doc in SCHEDULE_DOCS:
        lines.append(f"| `{key}` | {default} | {doc} |")
    lines.append("")
    return lines


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
