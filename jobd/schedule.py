"""Schedules: when a cron expression or an interval fires. Pure functions.

A schedule fires at instants that depend only on its definition, never on
when or where they are computed: every master computes the same fire
times, and the store's unique (schedule, fire_at) key turns "several
masters insert the same fire" into "the fire is enqueued once".

**Intervals** (`every = "10m"`) fire at whole multiples of the interval
since the Unix epoch: every 10 minutes at :00, :10, :20 UTC; `every = "1d"`
at 00:00 UTC. Alignment to the epoch is what makes the times the same on
every master and across restarts. Intervals count absolute time, so a time
zone does not move them (use cron for wall-clock times).

**Cron** expressions (croniter; five fields, or six with seconds first:
`sec min hour day month weekday`; `@daily` and the like) are matched
against the *local wall-clock time* of the schedule's time zone (IANA,
zoneinfo), and each matching local time becomes one UTC instant:

- a local time that exists once is that instant;
- a local time repeated by a fall-back change (01:30 happens twice in
  New York on the first Sunday of November) fires **once, at its first
  occurrence**: a daily job at 01:30 runs once that day, not twice, and
  not an hour late;
- a local time skipped by a spring-forward change (02:30 does not exist in
  New York on the second Sunday of March) fires **at the first instant
  after the gap** (03:00 local, the moment of the change). Skipping it
  instead would lose a daily or weekly job once a year; firing it at the
  end of the gap keeps "once per day" true. Several skipped times (a
  `*/15` job loses 02:00, 02:15, 02:30 and 02:45) and a regular fire at the
  end of the gap (03:00) all land on that one instant and make one fire.

So fire times are strictly increasing and every fire is either a valid
local time matching the expression, or the end of a gap in which a
skipped local time matched; no fire is lost except by merging into that
instant. The croniter iteration runs on naive local times (croniter's own
DST handling is not used) and zoneinfo maps each to UTC: the calendar
arithmetic is theirs; this module only states what happens at the edges.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from jobd.payload import check_json
from jobd.policy import POLICY_FIELDS, check_queue_name, check_routine_name
from jobd.units import format_duration, parse_duration

if TYPE_CHECKING:
    from croniter import croniter

SCHEDULE_NAME = re.compile(r"[A-Za-z0-9_.:@/-]{1,255}")
DEFAULT_CATCH_UP = 600.0
MAX_CATCH_UP = 7 * 86400.0
# A repeated hour or a gap skips at most a few hours of candidates (one per
# second for a six-field expression); more means something is wrong.
_MAX_SKIPPED = 100_000
# How many fires older than the catch-up window are counted for the log.
MISSED_COUNT_CAP = 1000


@dataclass(frozen=True)
class Schedule:
    """One `[[schedules]]` table, validated."""

    name: str
    routine: str
    cron: str | None = None
    every: int | None = None  # whole seconds
    timezone: str = "UTC"
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    catch_up: float = DEFAULT_CATCH_UP
    enabled: bool = True

    @property
    def when(self) -> str:
        """The cron expression, or "every 10m"."""
        return self.cron if self.cron is not None else f"every {format_duration(self.every or 0)}"

    def definition(self) -> dict[str, Any]:
        """What the store keeps (JSON): everything but the name."""
        return {
            "routine": self.routine,
            "cron": self.cron,
            "every": self.every,
            "timezone": self.timezone,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "queue": self.queue,
            "priority": self.priority,
            "catch_up": float(self.catch_up),
            "enabled": self.enabled,
        }

    @classmethod
    def from_definition(cls, name: str, data: Mapping[str, Any]) -> Schedule:
        """The inverse of `definition()` (also reads `to_json` output back)."""
        return cls(
            name=name,
            routine=data["routine"],
            cron=data.get("cron"),
            every=data.get("every"),
            timezone=data.get("timezone", "UTC"),
            args=tuple(data.get("args", ())),
            kwargs=dict(data.get("kwargs", {})),
            queue=data.get("queue"),
            priority=data.get("priority"),
            catch_up=float(data.get("catch_up", DEFAULT_CATCH_UP)),
            enabled=bool(data.get("enabled", True)),
        )


# -- validation ------------------------------------------------------------

SCHEDULE_KEYS = (
    "name", "routine", "cron", "every", "timezone", "args", "kwargs", "queue", "priority",
    "catch_up", "enabled",
)  # fmt: skip


def parse_schedule(table: Mapping[str, Any], where: str) -> Schedule:
    """A Schedule from one TOML table; ValueError naming `where`, the key and the value."""
    unknown = sorted(set(table) - set(SCHEDULE_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(SCHEDULE_KEYS)})")
    if "routine" not in table:
        raise ValueError(f'{where}: routine is missing (e.g. routine = "app.jobs:report")')
    values: dict[str, Any] = {}
    for key, value in table.items():
        try:
            values[key] = _PARSERS[key](value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}.{key}: {exc}") from None
    if ("cron" in values) == ("every" in values):
        raise ValueError(f"{where}: give either cron or every (not both, not neither)")
    values.setdefault("name", values["routine"])
    return Schedule(**values)


def check_cron(value: object) -> str:
    """A cron expression croniter accepts, with 5 fields (or 6, seconds first)."""
    from croniter import CroniterBadDateError

    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a cron expression (e.g. '0 3 * * *')")
    expr = " ".join(value.split())
    fields = len(expr.split(" "))
    if expr.startswith("@"):
        expr = expr.lower()
        if expr not in _ALIASES:
            raise ValueError(f"{value!r} is not a cron alias (known: {', '.join(_ALIASES)})")
    elif fields not in (5, 6) or not _croniter_class().is_valid(expr, second_at_beginning=True):
        raise ValueError(
            f"{value!r} is not a cron expression (5 fields 'min hour day month weekday', "
            "or 6 with seconds first)"
        )
    try:  # an expression that can never match (February 30th) is refused too
        _cron_iter(expr, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"{value!r} never fires") from None
    return expr


def check_timezone(value: object) -> str:
    """An IANA time zone name zoneinfo knows ("Europe/Berlin", "UTC")."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a time zone name")
    try:
        ZoneInfo(value)
    except (KeyError, ValueError, OSError):
        raise ValueError(
            f"{value!r} is not a known IANA time zone (e.g. 'Europe/Berlin')"
        ) from None
    return value


def check_schedule_name(value: object) -> str:
    if not isinstance(value, str) or not SCHEDULE_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a schedule name (letters, digits, '_.:@/-', 1-255)")
    return value


def _every(value: object) -> int:
    seconds = parse_duration(value)
    if seconds < 1 or seconds != int(seconds):
        raise ValueError(f"{value!r} is not a whole number of seconds, at least 1s")
    return int(seconds)


def _catch_up(value: object) -> float:
    seconds = parse_duration(value)
    if not 1 <= seconds <= MAX_CATCH_UP:
        raise ValueError(f"{value!r} is out of range 1s..7d")
    return seconds


def _args(value: object) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{value!r} is not an array")
    check_json(value, "args")
    return tuple(value)


def _kwargs(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{value!r} is not a table")
    check_json(value, "kwargs")
    return dict(value)


def _enabled(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not a boolean (true or false)")
    return value


_PARSERS: dict[str, Any] = {
    "name": check_schedule_name,
    "routine": check_routine_name,
    "cron": check_cron,
    "every": _every,
    "timezone": check_timezone,
    "args": _args,
    "kwargs": _kwargs,
    "queue": check_queue_name,
    "priority": POLICY_FIELDS["priority"].metadata["parse"],
    "catch_up": _catch_up,
    "enabled": _enabled,
}
_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")

# (key, default as docs/settings.md shows it, meaning): the `[[schedules]]` reference.
SCHEDULE_DOCS = (
    (
        "name",
        "the routine",
        "Unique name of the schedule; needed when two schedules run one routine.",
    ),
    ("routine", "required", "The routine to enqueue, `module:function`."),
    (
        "cron",
        "-",
        "Cron expression in the schedule's time zone: 5 fields, or 6 with seconds first; "
        "`@daily` and the like. Give `cron` or `every`.",
    ),
    ("every", "-", 'Interval, e.g. `"10m"`: fires at whole multiples of it since the epoch (UTC).'),
    ("timezone", '`"UTC"`', 'IANA time zone the cron expression is read in (`"Europe/Berlin"`).'),
    ("args", "`[]`", "Positional arguments of each job (JSON values)."),
    ("kwargs", "`{}`", "Keyword arguments of each job (a table of JSON values)."),
    ("queue", "the routine's", "Queue of the jobs."),
    ("priority", "the routine's", "Priority of the jobs."),
    (
        "catch_up",
        '`"10m"`',
        "Fires missed while no master ran are enqueued if they are at most this old; "
        "older ones are skipped and logged (1s..7d).",
    ),
    ("enabled", "`true`", "`false` keeps the schedule stored but never fires it."),
)


# -- fire times ------------------------------------------------------------


def fires_after(schedule: Schedule, after: float) -> Iterator[float]:
    """The schedule's fire times strictly after `after` (UTC epoch seconds), ascending."""
    if schedule.every is not None:
        return _interval_fires(schedule.every, after)
    assert schedule.cron is not None
    return _cron_fires(schedule.cron, _zone(schedule.timezone), after)


def next_fire(schedule: Schedule, after: float) -> float:
    """The first fire time strictly after `after`."""
    return next(fires_after(schedule, after))


@dataclass(frozen=True)
class Due:
    """What a scheduler does with a schedule at `now`, given fires up to `since` were handled."""

    fires: list[float]  # to enqueue: in (since, now], none older than the catch-up window
    until: float  # fires up to here are handled (now, or the last fire if cut at the limit)
    missed: int  # fires in (since, now - catch_up): skipped (counted up to MISSED_COUNT_CAP)
    first_missed: float | None


def due_fires(schedule: Schedule, since: float, now: float, limit: int = 1000) -> Due:
    """The fires due in (since, now]; those older than `catch_up` are skipped and counted.

    At most `limit` fires are returned; then `until` is the last of them, so
    the rest come at the next call.
    """
    window_start = now - schedule.catch_up
    missed, first_missed = 0, None
    if since < window_start:
        for fire in fires_after(schedule, since):
            if fire >= window_start or missed >= MISSED_COUNT_CAP:
                break
            first_missed = fire if first_missed is None else first_missed
            missed += 1
        # Fires at window_start exactly are still within the window.
        since = math.nextafter(window_start, -math.inf)
    fires: list[float] = []
    if since < now:
        for fire in fires_after(schedule, since):
            if fire > now:
                break
            fires.append(fire)
            if len(fires) >= limit:
                return Due(fires, fire, missed, first_missed)
    return Due(fires, now, missed, first_missed)


def _interval_fires(every: int, after: float) -> Iterator[float]:
    k = int(after // every) + 1
    while True:
        fire = float(k * every)
        if fire > after:  # float division may round down by one step
            yield fire
        k += 1


def _cron_fires(expr: str, zone: ZoneInfo, after: float) -> Iterator[float]:
    wall = datetime.fromtimestamp(after, zone).replace(tzinfo=None)
    cron = _cron_iter(expr, wall)
    last, skipped = after, 0
    while True:
        instant = local_instant(cron.get_next(datetime), zone)
        # Not after `last`: a second occurrence before `after` (when `after`
        # falls in a repeated hour), or another skipped time merged into the
        # end of the same gap. The mapping is monotonic, so this dedupes.
        if instant > last:
            last, skipped = instant, 0
            yield instant
        else:
            skipped += 1
            if skipped > _MAX_SKIPPED:
                raise RuntimeError(f"cron {expr!r} in {zone.key}: no progress after {after}")


def local_instant(wall: datetime, zone: ZoneInfo) -> float:
    """The UTC instant of a naive local time, by the policy above.

    Exists once: that instant. Repeated: the first occurrence (fold=0).
    Skipped by a gap: the first instant after the gap.
    """
    instant = wall.replace(tzinfo=zone, fold=0).timestamp()
    if datetime.fromtimestamp(instant, zone).replace(tzinfo=None) == wall:
        return instant
    return _end_of_gap(wall, zone)


def _end_of_gap(wall: datetime, zone: ZoneInfo) -> float:
    """The instant a gap containing `wall` ends: the least instant whose local time is later.

    With fold=1 the wall time is read with the offset after the change (an
    instant before it), with fold=0 with the offset before (an instant
    after it); zoneinfo's local time is monotonic in between, so bisect
    on whole seconds (tz database transitions fall on whole seconds).
    """
    before = math.floor(wall.replace(tzinfo=zone, fold=1).timestamp())
    after = math.ceil(wall.replace(tzinfo=zone, fold=0).timestamp())
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) > wall:
            after = middle
        else:
            before = middle
    return float(after)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _croniter_class() -> type[croniter]:
    # Imported when first needed: croniter and dateutil cost ~60 ms and a few
    # MB, and workers import jobd.settings (hence this module) without ever
    # computing a fire time.
    from croniter import croniter

    return croniter


def _cron_iter(expr: str, start: datetime) -> croniter:
    return _croniter_class()(expr, start, second_at_beginning=True)
