"""Fire times (jobd/schedule.py): intervals, cron in a time zone, DST, catch-up.

The property tests compare `fires_after` with a brute-force oracle that
walks every minute (or second) of UTC time around real DST changes and
applies the documented policy itself: a local time that matches fires at
its first occurrence; a gap in which a skipped local time matches fires
once, at the instant the gap ends.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobd.schedule import (
    MISSED_COUNT_CAP,
    Schedule,
    check_cron,
    due_fires,
    fires_after,
    local_instant,
    next_fire,
    parse_schedule,
)

NY, BERLIN, LORD_HOWE = "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def local(ts: float, zone: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).isoformat()


def cron(expr: str, zone: str = "UTC", catch_up: float = 600.0) -> Schedule:
    return Schedule("s", "app.jobs:work", cron=expr, timezone=zone, catch_up=catch_up)


def take(schedule: Schedule, after: float, count: int) -> list[float]:
    return list(itertools.islice(fires_after(schedule, after), count))


# -- examples ---------------------------------------------------------------------


def test_an_interval_fires_at_multiples_since_the_epoch() -> None:
    every = Schedule("s", "app.jobs:work", every=600)
    assert take(every, 1000.5, 3) == [1200.0, 1800.0, 2400.0]
    assert next_fire(every, 1200.0) == 1800.0  # strictly after
    daily = Schedule("s", "app.jobs:work", every=86400, timezone=BERLIN)
    assert next_fire(daily, utc(2024, 3, 31, 12)) == utc(2024, 4, 1)  # UTC midnight, not local


def test_cron_is_read_in_the_schedule_time_zone() -> None:
    berlin = cron("30 2 * * *", BERLIN)
    assert local(next_fire(berlin, utc(2024, 1, 10)), BERLIN) == "2024-01-10T02:30:00+01:00"
    assert next_fire(cron("30 2 * * *"), utc(2024, 1, 10)) == utc(2024, 1, 10, 2, 30)


def test_a_skipped_local_time_fires_when_the_gap_ends() -> None:
    # New York, 2024-03-10: 02:00 EST becomes 03:00 EDT; 02:30 does not exist.
    fires = take(cron("30 2 * * *", NY), utc(2024, 3, 9, 12), 3)
    assert [local(f, NY) for f in fires] == [
        "2024-03-10T03:00:00-04:00",
        "2024-03-11T02:30:00-04:00",
        "2024-03-12T02:30:00-04:00",
    ]


def test_skipped_times_and_the_end_of_the_gap_make_one_fire() -> None:
    fires = take(cron("*/15 * * * *", NY), utc(2024, 3, 10, 6, 40), 4)
    assert [local(f, NY) for f in fires] == [
        "2024-03-10T01:45:00-05:00",
        "2024-03-10T03:00:00-04:00",  # 02:00, 02:15, 02:30, 02:45 and 03:00
        "2024-03-10T03:15:00-04:00",
        "2024-03-10T03:30:00-04:00",
    ]


def test_a_repeated_local_time_fires_once_at_its_first_occurrence() -> None:
    # New York, 2024-11-03: 02:00 EDT becomes 01:00 EST; 01:00-01:59 happen twice.
    fires = take(cron("30 1 * * *", NY), utc(2024, 11, 2, 12), 2)
    assert [local(f, NY) for f in fires] == [
        "2024-11-03T01:30:00-04:00",
        "2024-11-04T01:30:00-05:00",
    ]
    # From inside the second 01:xx: nothing more that night.
    second = utc(2024, 11, 3, 6, 10)  # 01:10 EST
    assert local(next_fire(cron("*/20 * * * *", NY), second), NY) == "2024-11-03T02:00:00-05:00"


def test_lord_howe_moves_by_half_an_hour() -> None:
    # 2024-10-06 02:00 +10:30 becomes 02:30 +11:00; 2024-04-07 02:00 +11:00 becomes 01:30 +10:30.
    spring = take(cron("*/10 2 * * *", LORD_HOWE), utc(2024, 10, 5, 12), 2)
    assert [local(f, LORD_HOWE) for f in spring] == [
        "2024-10-06T02:30:00+11:00",
        "2024-10-06T02:40:00+11:00",
    ]
    autumn = take(cron("40 1 * * *", LORD_HOWE), utc(2024, 4, 6, 12), 2)
    assert [local(f, LORD_HOWE) for f in autumn] == [
        "2024-04-07T01:40:00+11:00",
        "2024-04-08T01:40:00+10:30",
    ]


def test_six_fields_put_seconds_first_and_aliases_work() -> None:
    assert take(cron("*/20 * * * * *"), 0.5, 3) == [20.0, 40.0, 60.0]
    assert next_fire(cron("@daily"), utc(2024, 5, 1, 8)) == utc(2024, 5, 2)
    assert check_cron(" @Daily ") == "@daily"


def test_local_instant_policy() -> None:
    zone = ZoneInfo(NY)
    assert local_instant(datetime(2024, 3, 10, 2, 30), zone) == utc(2024, 3, 10, 7)
    assert local_instant(datetime(2024, 11, 3, 1, 30), zone) == utc(2024, 11, 3, 5, 30)
    assert local_instant(datetime(2024, 7, 1, 12), zone) == utc(2024, 7, 1, 16)


# -- due fires and the catch-up window ----------------------------------------------


def test_due_fires_in_the_window() -> None:
    every = Schedule("s", "app.jobs:work", every=60, catch_up=600)
    due = due_fires(every, since=3000.0, now=3130.5)
    assert due.fires == [3060.0, 3120.0]
    assert (due.until, due.missed, due.first_missed) == (3130.5, 0, None)
    assert due_fires(every, since=3130.5, now=3170.0).fires == []


def test_fires_older_than_the_window_are_counted_and_skipped() -> None:
    every = Schedule("s", "app.jobs:work", every=60, catch_up=600)
    due = due_fires(every, since=0.0, now=3600.0)  # down for an hour
    assert due.fires == [float(t) for t in range(3000, 3601, 60)]  # 3000 is exactly 10m old
    assert (due.missed, due.first_missed) == (49, 60.0)
    huge = due_fires(Schedule("s", "app.jobs:work", every=1, catch_up=1), 0.0, 10**6)
    assert huge.missed == MISSED_COUNT_CAP and huge.fires == [999_999.0, 1_000_000.0]


def test_due_fires_stop_at_the_limit_and_resume() -> None:
    every = Schedule("s", "app.jobs:work", every=1, catch_up=3600)
    first = due_fires(every, since=0.0, now=100.0, limit=30)
    assert first.fires == [float(t) for t in range(1, 31)] and first.until == 30.0
    rest = due_fires(every, since=first.until, now=100.0, limit=1000)
    assert rest.fires == [float(t) for t in range(31, 101)] and rest.until == 100.0


def test_parse_schedule_defaults_the_name_to_the_routine() -> None:
    parsed = parse_schedule({"routine": "app.jobs:work", "every": "10m"}, "x")
    assert (parsed.name, parsed.every, parsed.catch_up, parsed.timezone) == (
        "app.jobs:work",
        600,
        600.0,
        "UTC",
    )
    assert Schedule.from_definition(parsed.name, parsed.definition()) == parsed


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "not a cron expression"),
        ("* * * *", "not a cron expression"),
        ("0 0 * * * 2030", "not a cron expression"),  # no year field
        ("* * * * * * *", "not a cron expression"),
        ("0 0 30 2 *", "never fires"),
        ("@reboot", "not a cron alias"),
    ],
)
def test_bad_cron_expressions(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_cron(expr)


# -- properties across DST changes ----------------------------------------------------

ZONES = (NY, BERLIN, LORD_HOWE)


@cache
def transitions(zone: str, year: int) -> tuple[int, ...]:
    """The instants (UTC, whole seconds) at which `zone` changes its offset in `year`."""
    tz = ZoneInfo(zone)

    def offset(ts: int) -> timedelta | None:
        return datetime.fromtimestamp(ts, tz).utcoffset()

    found = []
    start, end = int(utc(year, 1, 1)), int(utc(year + 1, 1, 1))
    for first in range(start, end, 6 * 3600):
        low, high = first, first + 6 * 3600
        if offset(low) != offset(high):
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if offset(middle) == offset(low) else (low, middle)
            found.append(high)
    return tuple(found)


def matches(fields: list[list[object]], wall: datetime, seconds: bool) -> bool:
    """Membership in croniter's expanded fields (day-of-month and month are '*' here)."""

    def has(field: list[object], value: int) -> bool:
        return field == ["*"] or value in field

    cron_dow = (wall.weekday() + 1) % 7
    return (
        has(fields[0], wall.minute)
        and has(fields[1], wall.hour)
        and has(fields[4], cron_dow)
        and (not seconds or has(fields[5], wall.second))
    )


def oracle(expr: str, zone: str, start: float, end: float, step: int) -> list[float]:
    """Every fire in (start, end] by the documented policy, walking UTC time by `step`."""
    tz = ZoneInfo(zone)
    seconds = step == 1
    fields = croniter.expand(expr, second_at_beginning=True)[0]
    fires = []
    first = (int(start) // step + 1) * step
    previous = datetime.fromtimestamp(first - step, tz).replace(tzinfo=None)
    for ts in range(first, int(end) + 1, step):
        aware = datetime.fromtimestamp(ts, tz)
        wall = aware.replace(tzinfo=None)
        skipped = previous + timedelta(seconds=step)
        gap_matched = False
        while skipped < wall:  # local times the clock jumped over
            gap_matched = gap_matched or matches(fields, skipped, seconds)
            skipped += timedelta(seconds=step)
        if gap_matched or (aware.fold == 0 and matches(fields, wall, seconds)):
            fires.append(float(ts))
        previous = wall
    return fires


def check_fires(expr: str, zone: str, start: float, span: int, step: int) -> None:
    schedule = cron(expr, zone)
    end = start + span
    fires = list(itertools.takewhile(lambda f: f <= end, fires_after(schedule, start)))
    assert all(a < b for a, b in itertools.pairwise(fires)), "strictly increasing"
    assert all(f > start for f in fires)
    tz = ZoneInfo(zone)
    fields = croniter.expand(expr, second_at_beginning=True)[0]
    for fire in fires:
        aware = datetime.fromtimestamp(fire, tz)
        # A valid local time matching the expression, at its first occurrence;
        # or the end of a gap (the local time before it is a jump away).
        if not (aware.fold == 0 and matches(fields, aware.replace(tzinfo=None), step == 1)):
            before = datetime.fromtimestamp(fire - step, tz).replace(tzinfo=None)
            assert aware.replace(tzinfo=None) - before > timedelta(seconds=step), (expr, fire)
    assert fires == oracle(expr, zone, start, end, step), "no fire lost or added"


def near_a_change(spread: int) -> st.SearchStrategy[tuple[str, float]]:
    @st.composite
    def draw(draw: st.DrawFn) -> tuple[str, float]:
        zone = draw(st.sampled_from(ZONES))
        change = draw(st.sampled_from(transitions(zone, draw(st.integers(2015, 2035)))))
        return zone, change + draw(st.integers(-spread, spread)) + draw(st.sampled_from([0, 0.5]))

    return draw()


FIELD = st.sampled_from(["*", "*/5", "*/15", "*/7", "0", "30", "15,45", "0-10", "59"])
HOUR = st.sampled_from(["*", "0", "1", "2", "3", "1-3", "*/2", "0,2", "23"]) | st.integers(
    0, 23
).map(str)
DOW = st.sampled_from(["*", "*", "*", "0", "6", "0,1", "1-5"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_a_change(4 * 3600), FIELD | st.integers(0, 59).map(str), HOUR, DOW)
def test_cron_fires_across_dst_changes(
    where: tuple[str, float], minute: str, hour: str, dow: str
) -> None:
    zone, start = where
    check_fires(f"{minute} {hour} * * {dow}", zone, start - 3600, 8 * 3600, 60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_a_change(1200), st.sampled_from(["*/20", "0", "30", "*/7"]), FIELD, HOUR)
def test_six_field_cron_fires_across_dst_changes(
    where: tuple[str, float], second: str, minute: str, hour: str
) -> None:
    zone, start = where
    check_fires(f"{second} {minute} {hour} * * *", zone, start - 600, 1800, 1)


@settings(max_examples=60, deadline=None)
@given(
    near_a_change(3 * 3600),
    st.sampled_from(["*/15 * * * *", "30 2 * * *", "0 1,2,3 * * *", "*/20 */5 * * * *"]),
    st.lists(st.integers(1, 4000), min_size=1, max_size=12),
)
def test_ticks_at_any_times_enqueue_every_fire_once(
    where: tuple[str, float], expr: str, steps: list[int]
) -> None:
    """Whatever instants a scheduler passes at, the fires enqueued are the fires."""
    zone, start = where
    schedule = cron(expr, zone, catch_up=4000)
    since, enqueued = start, []
    for step in steps:
        due = due_fires(schedule, since, since + step)
        enqueued += due.fires
        assert due.missed == 0
        since = due.until
    expected = list(itertools.takewhile(lambda f: f <= since, fires_after(schedule, start)))
    assert enqueued == expected
