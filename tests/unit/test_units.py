"""Durations and sizes as operators write them (jobd/units.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobd.units import format_duration, format_size, parse_duration, parse_size

K, M, G, T = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("1d2h3m4s5ms", 93784.005),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("30S", 30.0),
        ("  30s ", 30.0),
        ("30", 30.0),
        ("2.5", 2.5),
        ("0", 0.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration_text(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("number", "seconds"), [(30, 30.0), (2.5, 2.5), (0, 0.0)])
def test_parse_duration_bare_number_is_seconds(number: float, seconds: float) -> None:
    result = parse_duration(number)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "5x",
        "s",
        "m5",
        "5m-",
        "1h 30m",
        "-1s",
        "-1",
        -1,
        -0.5,
        True,
        False,
        None,
        [30],
        "nan",
        "NaN",
        "inf",
        "infinity",
        float("nan"),
        float("inf"),
        10**400,
    ],
)
def test_parse_duration_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(bad)


def test_parse_duration_error_shows_the_value_and_examples() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("5x")
    assert "'5x'" in str(caught.value)
    assert "30s" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512K", 512 * K),
        ("256M", 256 * M),
        ("2G", 2 * G),
        ("1T", T),
        ("512MB", 512 * M),
        ("512MiB", 512 * M),
        ("512mb", 512 * M),
        ("512k", 512 * K),
        ("1.5G", int(1.5 * G)),
        ("0.5K", 512),
        (" 2G ", 2 * G),
        ("1048576", M),
        ("0", 0),
    ],
)
def test_parse_size_text(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("number", [0, 1, 1024, 2**60 + 1])
def test_parse_size_bare_int_is_bytes_exactly(number: int) -> None:
    result = parse_size(number)
    assert result == number
    assert isinstance(result, int)


@pytest.mark.parametrize(
    "bad", ["12Q", "", "M", "-1M", "1.2.3G", "1e3", "twelve", -1, True, False, None, 1.5, [1]]
)
def test_parse_size_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0004, "400us"),
        (0.005, "5.0ms"),
        (0.25, "250ms"),
        (2.5, "2.5s"),
        (30, "30s"),
        (60, "1m"),
        (90, "1m30s"),
        (3600, "1h"),
        (3661, "1h1m"),  # at most two parts: the seconds are dropped
        (86400, "1d"),
        (90061, "1d1h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (1023, "1023B"),
        (K, "1K"),
        (1536, "1.5K"),
        (256 * M, "256M"),
        (2 * G, "2G"),
        (5 * T, "5T"),
        (1000 * K, "1000K"),  # .3g alone would write "1e+03K"
        (M - 1, "1024K"),
        (5000 * T, "5000T"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=100 * T))
def test_format_size_reads_back_within_rounding(size: int) -> None:
    shown = format_size(size)
    # two decimals of the unit (up to 0.5% at 1.00K), and parse_size truncates a byte
    assert parse_size(shown) == pytest.approx(size, rel=0.006, abs=1)


@given(st.floats(min_value=60, max_value=30 * 86400))
def test_format_duration_reads_back_within_its_two_parts(seconds: float) -> None:
    # Two parts keep the larger units: what is dropped is less than the second unit.
    shown = format_duration(seconds)
    assert parse_duration(shown) <= round(seconds) + 0.5
    assert parse_duration(shown) >= seconds - 3600 - 0.5
