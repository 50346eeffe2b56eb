"""Durations and sizes as operators write them: "250ms", "30s", "5m", "512M".

A bare number is seconds (durations) or bytes (sizes). Sizes use binary
multiples, as `ulimit`, systemd and the seeds do: "512M" is 512 MiB.
"""

from __future__ import annotations

import math
import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)")
_SIZE_RE = re.compile(r"(\d+(?:\.\d*)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


def parse_duration(value: object) -> float:
    """Seconds from 30, 2.5, "30s", "5m", "1h30m", "250ms" or "7d"."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use e.g. '30s', '5m')")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float: refused below as infinite
            seconds = math.inf
    elif isinstance(value, str):
        seconds = _parse_duration_text(value)
    else:
        raise ValueError(f"{value!r} is not a duration (use e.g. '30s', '5m')")
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a duration (must be finite and >= 0)")
    return seconds


def _parse_duration_text(text: str) -> float:
    compact = text.strip().lower()
    try:
        return float(compact)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION_RE.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(compact):
        raise ValueError(f"{text!r} is not a duration (use e.g. '250ms', '30s', '5m', '2h', '7d')")
    return total


def parse_size(value: object) -> int:
    """Bytes from 1048576, "512K", "256M", "2G" (binary multiples; "MB"/"MiB" accepted)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size (use e.g. '512M', '2G')")
    if isinstance(value, int):
        number: float = value  # kept exact: float() would round above 2**53
    elif isinstance(value, str):
        match = _SIZE_RE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"{value!r} is not a size (use e.g. '256M', '2G')")
        number = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    else:
        raise ValueError(f"{value!r} is not a size (use e.g. '512M', '2G')")
    if number < 0:
        raise ValueError(f"{value!r} is not a size (must be >= 0)")
    return int(number)


def format_duration(seconds: float) -> str:
    """The shortest readable form: 0.0004 -> "400us", 0.25 -> "250ms", 90 -> "1m30s"."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}us"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    parts = []
    rest = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])


def format_size(size: int) -> str:
    """1536 -> "1.5K", 268435456 -> "256M"."""
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= factor:
            shown = f"{size / factor:.3g}"
            if "e" in shown:  # 1000 or more of the unit: .3g would write "1e+03"
                shown = f"{size / factor:.0f}"
            return f"{shown}{unit}"
    return f"{size}B"
