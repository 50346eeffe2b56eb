"""Job arguments are JSON, checked at the edge (jobd/payload.py)."""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from jobd.payload import check_json, dumps, encode_call


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**70,
        1.5,
        -0.0,
        "",
        "text",
        "héllo ✓ 雪",
        [],
        {},
        [1, "a", None, True, 2.5],
        {"a": {"b": [1, {"c": None}]}},
        OrderedDict(a=1),
    ],
)
def test_json_values_are_accepted_and_read_back(value: Any) -> None:
    check_json(value, "args")
    assert json.loads(dumps(value, "args")) == value


def test_tuples_become_lists() -> None:
    args_json, kwargs_json = encode_call((1, (2, 3)), {"pair": ("a", "b")})
    assert json.loads(args_json) == [1, [2, 3]]
    assert json.loads(kwargs_json) == {"pair": ["a", "b"]}


def test_encode_call_is_compact_and_keeps_unicode() -> None:
    assert encode_call(["é", 1], {"k": [True, None]}) == ('["é",1]', '{"k":[true,null]}')
    assert encode_call((), {}) == ("[]", "{}")


@pytest.mark.parametrize("kwargs", [None, [], [("a", 1)], "a=1"])
def test_keyword_arguments_must_be_a_dict(kwargs: Any) -> None:
    with pytest.raises(TypeError, match=f"kwargs is of type {type(kwargs).__name__}, not a dict"):
        encode_call((), kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "where", "type_name"),
    [
        ((1, datetime(2030, 1, 1)), {}, "args[1]", "datetime"),
        ((), {"when": datetime(2030, 1, 1)}, "kwargs['when']", "datetime"),
        (({1, 2},), {}, "args[0]", "set"),
        ((b"raw",), {}, "args[0]", "bytes"),
        ((object(),), {}, "args[0]", "object"),
        ((Decimal("1.5"),), {}, "args[0]", "Decimal"),
        (([1, [2, {"deep": frozenset()}]],), {}, "args[0][1][1]['deep']", "frozenset"),
        ((), {"cb": print}, "kwargs['cb']", "builtin_function_or_method"),
    ],
)
def test_refused_values_name_where_they_sit_and_their_type(
    args: tuple[Any, ...], kwargs: dict[str, Any], where: str, type_name: str
) -> None:
    with pytest.raises(TypeError) as caught:
        encode_call(args, kwargs)
    message = str(caught.value)
    assert message.startswith(f"{where} is ")
    assert f"of type {type_name}," in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("args", "kwargs", "where"),
    [
        ((float("nan"),), {}, "args[0] is nan"),
        ((float("inf"),), {}, "args[0] is inf"),
        ((), {"x": [1, {"y": float("-inf")}]}, "kwargs['x'][1]['y'] is -inf"),
    ],
)
def test_nan_and_infinities_are_refused(
    args: tuple[Any, ...], kwargs: dict[str, Any], where: str
) -> None:
    with pytest.raises(TypeError, match="which JSON cannot hold") as caught:
        encode_call(args, kwargs)
    assert str(caught.value).startswith(where)


@pytest.mark.parametrize(
    ("args", "kwargs", "where"),
    [
        (({1: "a"},), {}, "args[0] has the key 1"),
        (({("a", "b"): 1},), {}, "args[0] has the key ('a', 'b')"),
        ((), {"opts": {None: 1}}, "kwargs['opts'] has the key None"),
    ],
)
def test_non_string_dict_keys_are_refused(
    args: tuple[Any, ...], kwargs: dict[str, Any], where: str
) -> None:
    with pytest.raises(TypeError, match="JSON object keys must be strings") as caught:
        encode_call(args, kwargs)
    assert str(caught.value).startswith(where)


@pytest.mark.parametrize(
    ("args", "kwargs", "where"),
    [
        (("\ud800",), {}, "args[0]"),
        (({"a": ["ok", "x\udcff"]},), {}, "args[0]['a'][1]"),
        ((), {"name\udc80": 1}, "kwargs key 'name\\udc80'"),
    ],
)
def test_lone_surrogates_are_refused(
    args: tuple[Any, ...], kwargs: dict[str, Any], where: str
) -> None:
    # Such a str cannot be written as UTF-8, so the database would refuse it later.
    with pytest.raises(TypeError, match="lone surrogate") as caught:
        encode_call(args, kwargs)
    assert str(caught.value).startswith(where)


def test_a_value_containing_itself_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(TypeError, match="args is nested too deeply"):
        encode_call((loop,), {})


def test_a_long_value_is_shortened_in_the_message() -> None:
    with pytest.raises(TypeError) as caught:
        encode_call((b"x" * 1000,), {})
    assert len(str(caught.value)) < 300
    assert "..." in str(caught.value)
