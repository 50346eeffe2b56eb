"""Loading settings from the config file and the environment, and reloading them.

`load(path, environ)` is a pure function of the file and the environment;
the environment wins over the file. A reload that fails keeps the running
settings (the caller just keeps the old object); one that succeeds keeps
the running values of what SIGHUP cannot change (`keep_unreloadable`).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobd.policy import check_routine_name, parse_policy
from jobd.schedule import Schedule, parse_schedule
from jobd.settings.pools import PoolSpec, parse_pools
from jobd.settings.sections import SECTIONS, JobdSection, PoolSection, Settings
from jobd.units import format_duration

DEFAULT_CONFIG = Path("/etc/jobd/jobd.toml")
# Schedule names that jobd's own schedules use (the scheduler's retention cleanup).
RESERVED_SCHEDULES = ("jobd.cleanup",)


class ConfigError(Exception):
    """A config file or environment value that cannot be used; one line, naming the key."""


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
