"""A routine's policy: where its jobs go, how they are retried, what limits hold.

Declared once here, with a parser and a doc line per field, so the decorator,
the config file (`[limits]` and `[routines."mod:fn"]`), the store's routine
catalog and `docs/settings.md` all read the same declaration.

The effective policy of a routine is, lowest first: these defaults, the
config's `[limits]`, the decorator's arguments, the config's
`[routines."mod:fn"]` table.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jobd.units import format_duration, format_size, parse_duration, parse_size

QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# The store keeps priorities and attempt counts in 32-bit integer columns.
INT_MAX = 2**31 - 1
ROUTINE_NAME = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def check_queue_name(value: object) -> str:
    if not isinstance(value, str) or not QUEUE_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a queue name (letters, digits, '_.:-', 1-64)")
    return value


UNIQUE_KEY_LENGTH = 255  # the jobs.unique_key column


def check_unique_key(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"unique_key {value!r} is not a non-empty string")
    if len(value) > UNIQUE_KEY_LENGTH:
        raise ValueError(
            f"unique_key is {len(value)} characters long; at most {UNIQUE_KEY_LENGTH} are kept "
            "(hash a longer one)"
        )
    return value


def check_routine_name(value: object) -> str:
    if not isinstance(value, str) or not ROUTINE_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a routine name (expected 'package.module:function')")
    return value


def _int_at_least(low: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            else:
                raise ValueError(f"{value!r} is not an integer")
        if value < low:
            raise ValueError(f"{value!r} is below the minimum {low}")
        if value > INT_MAX:
            raise ValueError(f"{value!r} is above the maximum {INT_MAX}")
        return value

    return parse


def _any_int(value: object) -> int:
    return _int_at_least(-(2**31))(value)


def _positive_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not number >= 1.0 or number == float("inf"):
        raise ValueError(f"{value!r} must be a finite number >= 1")
    return number


def _fraction(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number between 0 and 1")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{value!r} is not a number between 0 and 1")
    return float(value)


def _optional(parse: Callable[[object], Any]) -> Callable[[object], Any]:
    """0, "0", "none" and "off" disable an optional limit."""

    def parse_optional(value: object) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "off")):
            return None
        parsed = parse(value)
        return parsed or None

    return parse_optional


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in (
        "true",
        "yes",
        "on",
        "1",
        "false",
        "no",
        "off",
        "0",
    ):
        return value.lower() in ("true", "yes", "on", "1")
    raise ValueError(f"{value!r} is not a boolean (true or false)")


def _isolation(value: object) -> str:
    if value not in ("inline", "process"):
        raise ValueError(f"{value!r} is not an isolation ('inline' or 'process')")
    return str(value)


def _field(default: Any, parse: Callable[[object], Any], doc: str, show: str = "") -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc, "show": show})


@dataclass(frozen=True)
class Policy:
    """How jobs of one routine are queued, retried and limited."""

    queue: str = _field("default", check_queue_name, "Queue the routine's jobs go to.")
    priority: int = _field(0, _any_int, "Higher runs first within the served queues.")
    max_attempts: int = _field(
        3, _int_at_least(1), "Attempts before a job fails for good (the first run counts)."
    )
    retry_delay: float = _field(
        10.0, parse_duration, "Delay before the second attempt.", "duration"
    )
    retry_backoff: float = _field(2.0, _positive_float, "Factor applied to the delay per attempt.")
    retry_jitter: float = _field(
        0.1, _fraction, "Fraction of the delay removed at random, so retries spread out."
    )
    retry_max_delay: float = _field(
        3600.0, parse_duration, "Cap on the delay between attempts.", "duration"
    )
    time_limit: float | None = _field(
        None, _optional(parse_duration), "Hard wall-time limit of one attempt.", "duration"
    )
    soft_time_limit: float | None = _field(
        None,
        _optional(parse_duration),
        "Wall time after which the job gets `jobd.JobTimeout` raised inside it.",
        "duration",
    )
    memory_limit: int | None = _field(
        None,
        _optional(parse_size),
        "Resident memory (RSS) limit of one attempt, watched by the master while it runs.",
        "size",
    )
    address_space_limit: int | None = _field(
        None,
        _optional(parse_size),
        "RLIMIT_AS for the attempt: allocations past it raise MemoryError in the job. "
        "Counts reserved address space, not memory used (see docs/limits.md).",
        "size",
    )
    cpu_time_limit: float | None = _field(
        None,
        _optional(parse_duration),
        "RLIMIT_CPU for the attempt (whole seconds): past it the kernel sends SIGXCPU.",
        "duration",
    )
    open_files_limit: int | None = _field(
        None,
        _optional(_int_at_least(1)),
        "RLIMIT_NOFILE for the attempt: opening more files fails with EMFILE.",
    )
    isolation: str = _field(
        "inline",
        _isolation,
        "'inline' runs the attempt in the worker; 'process' in a fresh child of the "
        "worker, in its own process group, killed whole on a hard limit.",
    )
    unique: bool = _field(
        False,
        _bool,
        "Deduplicate: while a job with the same routine and arguments is queued or "
        "running, enqueue returns that job instead of adding one.",
    )

    def retry_delay_for(self, attempts: int, rand: float) -> float:
        """Seconds to wait after the `attempts`-th failed attempt; `rand` in [0, 1)."""
        exponent = max(attempts - 1, 0)
        try:
            delay = self.retry_delay * self.retry_backoff**exponent
        except OverflowError:
            delay = self.retry_max_delay
        delay = min(delay, self.retry_max_delay)
        return delay * (1.0 - self.retry_jitter * rand)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Policy:
        return dataclasses.replace(self, **overrides) if overrides else self

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


POLICY_FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Policy)}
LIMIT_FIELDS = (
    "time_limit",
    "soft_time_limit",
    "memory_limit",
    "address_space_limit",
    "cpu_time_limit",
    "open_files_limit",
    "isolation",
)


def parse_policy(
    values: Mapping[str, Any], where: str, allowed: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Validated policy values from a config table or decorator keywords.

    Raises ValueError naming `where`, the key and the bad value.
    """
    names = allowed or tuple(POLICY_FIELDS)
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise ValueError(f"{where}: unknown key {key!r} (known: {', '.join(names)})")
        try:
            parsed[key] = POLICY_FIELDS[key].metadata["parse"](value)
        except ValueError as exc:
            raise ValueError(f"{where}.{key}: {exc}") from None
    soft, hard = parsed.get("soft_time_limit"), parsed.get("time_limit")
    if soft and hard and soft >= hard:
        raise ValueError(
            f"{where}: soft_time_limit ({soft:g}s) must be below time_limit ({hard:g}s)"
        )
    return parsed


def policy_from_json(data: Mapping[str, Any]) -> Policy:
    """A policy from the store's catalog; unknown keys (newer versions) are ignored."""
    known = {key: value for key, value in data.items() if key in POLICY_FIELDS}
    return Policy(**known)


def show_value(name: str, value: Any) -> str:
    """A policy value the way the docs and `jobd` tables show it."""
    if value is None:
        return "none"
    kind = POLICY_FIELDS[name].metadata["show"]
    if kind == "duration":
        return format_duration(value)
    if kind == "size":
        return format_size(value)
    return str(value).lower() if isinstance(value, bool) else str(value)
