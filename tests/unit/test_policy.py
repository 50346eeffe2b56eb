"""A routine's policy: defaults, parsing, retry backoff, names (jobd/policy.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobd.policy import (
    POLICY_FIELDS,
    Policy,
    check_queue_name,
    check_routine_name,
    parse_policy,
    policy_from_json,
    show_value,
)


def test_policy_defaults() -> None:
    policy = Policy()
    assert policy.queue == "default"
    assert policy.priority == 0
    assert policy.max_attempts == 3
    assert policy.retry_delay == 10.0
    assert policy.retry_backoff == 2.0
    assert policy.retry_jitter == 0.1
    assert policy.retry_max_delay == 3600.0
    assert policy.time_limit is None
    assert policy.soft_time_limit is None
    assert policy.memory_limit is None
    assert policy.unique is False


def test_every_policy_field_has_a_parser_and_a_doc_line() -> None:
    for name, declared in POLICY_FIELDS.items():
        assert callable(declared.metadata["parse"]), name
        assert declared.metadata["doc"].strip(), name


def test_policy_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Policy().queue = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("values", "parsed"),
    [
        ({"queue": "images"}, {"queue": "images"}),
        ({"queue": "a.b:c-d_1"}, {"queue": "a.b:c-d_1"}),
        ({"priority": 5}, {"priority": 5}),
        ({"priority": -3}, {"priority": -3}),
        ({"priority": "7"}, {"priority": 7}),
        ({"priority": 2**31 - 1}, {"priority": 2**31 - 1}),
        ({"priority": -(2**31)}, {"priority": -(2**31)}),
        ({"max_attempts": 1}, {"max_attempts": 1}),
        ({"max_attempts": "4"}, {"max_attempts": 4}),
        ({"retry_delay": "5s"}, {"retry_delay": 5.0}),
        ({"retry_delay": 0}, {"retry_delay": 0.0}),
        ({"retry_backoff": 1}, {"retry_backoff": 1.0}),
        ({"retry_backoff": "3"}, {"retry_backoff": 3.0}),
        ({"retry_jitter": 0}, {"retry_jitter": 0.0}),
        ({"retry_jitter": 0.5}, {"retry_jitter": 0.5}),
        ({"retry_jitter": 1}, {"retry_jitter": 1.0}),
        ({"retry_max_delay": "1h"}, {"retry_max_delay": 3600.0}),
        ({"time_limit": "5m"}, {"time_limit": 300.0}),
        ({"time_limit": 0}, {"time_limit": None}),
        ({"time_limit": "0"}, {"time_limit": None}),
        ({"time_limit": "none"}, {"time_limit": None}),
        ({"time_limit": "off"}, {"time_limit": None}),
        ({"time_limit": None}, {"time_limit": None}),
        ({"soft_time_limit": "250ms"}, {"soft_time_limit": 0.25}),
        ({"memory_limit": "512M"}, {"memory_limit": 512 << 20}),
        ({"memory_limit": 1 << 20}, {"memory_limit": 1 << 20}),
        ({"memory_limit": 0}, {"memory_limit": None}),
        ({"unique": True}, {"unique": True}),
        ({"unique": "yes"}, {"unique": True}),
        ({"unique": "off"}, {"unique": False}),
        ({}, {}),
    ],
)
def test_parse_policy_accepts(values: dict[str, Any], parsed: dict[str, Any]) -> None:
    assert parse_policy(values, "here") == parsed


def test_parse_policy_values_make_a_policy() -> None:
    overrides = parse_policy({"queue": "q", "time_limit": "5m", "memory_limit": "1G"}, "here")
    policy = Policy().with_overrides(overrides)
    assert (policy.queue, policy.time_limit, policy.memory_limit) == ("q", 300.0, 1 << 30)
    assert Policy().with_overrides({}) == Policy()


def test_parse_policy_unknown_key_names_it_and_lists_the_known() -> None:
    with pytest.raises(ValueError) as caught:
        parse_policy({"queue": "q", "retries": 5}, "app.toml: routines.'a:b'")
    message = str(caught.value)
    assert message.startswith("app.toml: routines.'a:b': unknown key 'retries'")
    assert "max_attempts" in message


def test_parse_policy_allowed_restricts_keys() -> None:
    assert parse_policy({"time_limit": "1s"}, "w", allowed=("time_limit",)) == {"time_limit": 1.0}
    with pytest.raises(ValueError, match="unknown key 'queue'"):
        parse_policy({"queue": "q"}, "w", allowed=("time_limit",))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("queue", "bad queue"),
        ("queue", ""),
        ("queue", "q" * 65),
        ("queue", 5),
        ("priority", 1.5),
        ("priority", True),
        ("priority", "high"),
        ("priority", 2**31),
        ("priority", -(2**31) - 1),
        ("max_attempts", 0),
        ("max_attempts", -1),
        ("max_attempts", 2**40),
        ("max_attempts", "many"),
        ("retry_delay", "5x"),
        ("retry_delay", "-1s"),
        ("retry_backoff", 0.5),
        ("retry_backoff", float("nan")),
        ("retry_backoff", float("inf")),
        ("retry_backoff", "fast"),
        ("retry_backoff", True),
        ("retry_jitter", 1.5),
        ("retry_jitter", -0.1),
        ("retry_jitter", float("nan")),
        ("retry_jitter", "0.5"),
        ("retry_max_delay", "soon"),
        ("time_limit", "5x"),
        ("time_limit", -5),
        ("soft_time_limit", "forever"),
        ("memory_limit", "12Q"),
        ("memory_limit", -1),
        ("unique", 1),
        ("unique", "maybe"),
    ],
)
def test_parse_policy_bad_value_names_key_and_value(key: str, value: object) -> None:
    with pytest.raises(ValueError) as caught:
        parse_policy({key: value}, "@routine on resize")
    message = str(caught.value)
    assert message.startswith(f"@routine on resize.{key}: ")
    assert repr(value) in message
    assert "\n" not in message


# -- retry backoff ---------------------------------------------------------


def no_jitter(**changes: Any) -> Policy:
    return Policy(retry_jitter=0.0, **changes)


@pytest.mark.parametrize(
    ("attempts", "delay"), [(0, 10.0), (1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0), (9, 2560.0)]
)
def test_retry_delay_is_exponential(attempts: int, delay: float) -> None:
    assert no_jitter().retry_delay_for(attempts, 0.0) == delay


def test_retry_delay_uses_the_backoff_factor() -> None:
    policy = no_jitter(retry_delay=1.0, retry_backoff=3.0)
    assert [policy.retry_delay_for(n, 0.0) for n in (1, 2, 3, 4)] == [1.0, 3.0, 9.0, 27.0]


def test_retry_backoff_of_one_is_a_constant_delay() -> None:
    policy = no_jitter(retry_delay=7.0, retry_backoff=1.0)
    assert {policy.retry_delay_for(n, 0.0) for n in range(1, 20)} == {7.0}


@pytest.mark.parametrize("attempts", [10, 11, 50, 10_000, 10**9])
def test_retry_delay_is_capped(attempts: int) -> None:
    assert no_jitter().retry_delay_for(attempts, 0.0) == 3600.0


def test_retry_delay_cap_applies_to_the_first_delay_too() -> None:
    assert no_jitter(retry_delay=7200.0, retry_max_delay=60.0).retry_delay_for(1, 0.0) == 60.0


def test_retry_delay_survives_float_overflow() -> None:
    policy = no_jitter(retry_backoff=1e300)
    assert policy.retry_delay_for(3, 0.0) == 3600.0


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.999])
def test_jitter_only_reduces(rand: float) -> None:
    policy = Policy(retry_jitter=0.5)
    full = no_jitter().retry_delay_for(3, rand)
    jittered = policy.retry_delay_for(3, rand)
    assert full * 0.5 <= jittered <= full
    assert jittered == pytest.approx(full * (1 - 0.5 * rand))


def test_jitter_never_passes_the_cap() -> None:
    policy = Policy(retry_jitter=0.3)
    assert policy.retry_delay_for(100, 0.0) == 3600.0
    assert policy.retry_delay_for(100, 0.999) < 3600.0


policies = st.builds(
    Policy,
    retry_delay=st.floats(min_value=0, max_value=1e6),
    retry_backoff=st.floats(min_value=1, max_value=1e6),
    retry_jitter=st.floats(min_value=0, max_value=1),
    retry_max_delay=st.floats(min_value=0, max_value=1e7),
)


@given(policies, st.integers(min_value=0, max_value=10**6), st.floats(min_value=0, max_value=1))
def test_retry_delay_between_zero_and_cap(policy: Policy, attempts: int, rand: float) -> None:
    rand = min(rand, 0.999999)
    assert 0.0 <= policy.retry_delay_for(attempts, rand) <= policy.retry_max_delay


@given(policies, st.integers(min_value=0, max_value=10**6))
def test_retry_delay_never_decreases_without_jitter(policy: Policy, attempts: int) -> None:
    policy = dataclasses.replace(policy, retry_jitter=0.0)
    assert policy.retry_delay_for(attempts, 0.0) <= policy.retry_delay_for(attempts + 1, 0.0)


# -- names -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "emails", "a.b:c-d_1", "Q" * 64, "0"])
def test_check_queue_name_accepts(name: str) -> None:
    assert check_queue_name(name) == name


@pytest.mark.parametrize("name", ["", "q" * 65, "bad queue", "é", "a/b", None, 5])
def test_check_queue_name_refuses(name: object) -> None:
    with pytest.raises(ValueError, match="is not a queue name"):
        check_queue_name(name)


@pytest.mark.parametrize("name", ["app:resize", "app.jobs:resize", "a.b.c:Report.run", "_a:_b"])
def test_check_routine_name_accepts(name: str) -> None:
    assert check_routine_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        *("resize", "app.jobs", "app:", ":resize", "a.:b", "1a:b", "a:1b", "a b:c", "a:b:c"),
        *("a-b:c", "", None, 5),
    ],
)
def test_check_routine_name_refuses(name: object) -> None:
    with pytest.raises(ValueError, match=r"is not a routine name \(expected"):
        check_routine_name(name)


# -- catalog and display ---------------------------------------------------


def test_policy_json_round_trip_ignores_unknown_keys() -> None:
    policy = Policy(queue="q", time_limit=30.0, memory_limit=1 << 20, unique=True)
    data = {**policy.to_json(), "added_in_a_later_version": 1}
    assert policy_from_json(data) == policy


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("retry_delay", 90.0, "1m30s"),
        ("memory_limit", 512 << 20, "512M"),
        ("time_limit", None, "none"),
        ("unique", True, "true"),
        ("queue", "q", "q"),
        ("priority", 5, "5"),
    ],
)
def test_show_value(name: str, value: object, shown: str) -> None:
    assert show_value(name, value) == shown
