"""How one setting is declared: `setting()`, and the value parsers it takes.

A parser takes a value as TOML gives it, or as a string from the
environment, and returns it typed, or raises ValueError with a message
that names the value (the loader adds the key and where it came from).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import field
from typing import Any

from jobd.schedule import check_cron
from jobd.units import parse_duration


def setting(
    default: Any, parse: Callable[[object], Any], doc: str, *, reloadable: bool = True
) -> Any:
    """Declare one setting: a dataclass field carrying its parser and doc."""
    return field(default=default, metadata={"parse": parse, "doc": doc, "reloadable": reloadable})


def text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def int_range(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not an integer")
        if not low <= value <= high:
            raise ValueError(f"{value!r} is out of range {low}..{high}")
        return value

    return parse


def duration_range(low: float, high: float) -> Callable[[object], float]:
    def parse(value: object) -> float:
        seconds = parse_duration(value)
        if not low <= seconds <= high:
            raise ValueError(f"{value!r} is out of range {low:g}s..{high:g}s")
        return seconds

    return parse


def number_range(low: float, high: float) -> Callable[[object], float]:
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


def fraction(value: object) -> float:
    try:
        number = float(value) if isinstance(value, int | float | str) else math.nan
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:
        raise ValueError(f"{value!r} is not a number between 0 and 1")
    return number


def choice(*choices: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value.lower()

    return parse


def name_list(
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


def module_name(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", value):
        raise ValueError(f"{value!r} is not an importable module name")
    return value


def database_url(value: object) -> str:
    if not isinstance(value, str) or not re.match(r"^[a-z][a-z0-9+]*://", value):
        raise ValueError(
            f"{value!r} is not a database URL "
            "(e.g. 'sqlite:////var/lib/jobd/jobd.db' or 'postgresql://user@host/db')"
        )
    backend = value.split("://", 1)[0].split("+", 1)[0]
    if backend not in ("sqlite", "postgresql", "postgres"):
        raise ValueError(f"{value!r}: jobd runs on sqlite or postgresql, not {backend}")
    return value


def cron_or_off(value: object) -> str:
    if isinstance(value, str) and value.strip().lower() in ("off", "none", ""):
        return "off"
    return check_cron(value)
