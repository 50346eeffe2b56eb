"""Fuzzing the edges that take input from people: the CLI's arguments and the
config's keys and values. Whatever comes in, the answer is one line and a
documented exit code (or a ConfigError), never a traceback (issue 21 B).

The CLI runs in this process (`jobd.cli.main`), on a SQLite file with the
schema, so a few hundred examples take seconds; the commands that start a
daemon or read the journal (run, demo, logs) are left out.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobd import exitcodes
from jobd.cli import build_parser, main
from jobd.settings import ConfigError, load
from jobd.settings.sections import SECTIONS
from jobd.store import open_store

DOCUMENTED = {exitcodes.OK, exitcodes.FAILURE, exitcodes.USAGE, exitcodes.SCHEMA}

LEFT_OUT = {"run", "demo", "logs"}  # they start a daemon or read the journal


def commands() -> list[tuple[list[str], list[str], int]]:
    """Every leaf command of the parser: its words, its options, its positionals."""
    found = []
    pending: list[tuple[list[str], argparse.ArgumentParser]] = [([], build_parser())]
    while pending:
        words, parser = pending.pop()
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            pending += [([*words, n], p) for n, p in subs[0].choices.items() if n not in LEFT_OUT]
            continue
        options = [a.option_strings[-1] for a in parser._actions if a.option_strings]
        positionals = sum(1 for a in parser._actions if not a.option_strings)
        found.append((words, [o for o in options if o not in ("--help", "--config")], positionals))
    return sorted(found)


COMMANDS = commands()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


VALUES = st.one_of(
    st.text(max_size=20),
    st.integers().map(str),
    st.integers(min_value=2**62, max_value=2**80).map(str),
    st.sampled_from(["1", "0", "-1", "[]", "{}", '{"a": 1}', "[1, 2]", "5m", "now", "nan"]),
    st.sampled_from(["jobd.examples:add", "jobd.examples:hello", "jobd.maintenance:cleanup"]),
    st.integers(min_value=1, max_value=5000).map(nested),
    st.text(alphabet='[]{}":,0a\\\x00\n', max_size=30),
)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    store = open_store(f"sqlite:///{root / 'jobd.db'}")
    store.upgrade()
    store.close()
    path = root / "jobd.toml"
    path.write_text('[jobd]\ndatabase = "sqlite:///jobd.db"\nmodules = ["jobd.examples"]\n')
    return path


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_cli_answers_any_arguments_with_a_documented_code(
    config: Path, data: st.DataObject
) -> None:
    words, options, positionals = data.draw(st.sampled_from(COMMANDS))
    argv = ["-c", str(config), *words]
    # Its positionals (a routine name, an id), then options each with a value,
    # now and then a stray token.
    argv += data.draw(st.lists(VALUES, min_size=positionals, max_size=positionals))
    pairs = st.tuples(st.sampled_from(options or ["--json"]), VALUES)
    for option, value in data.draw(st.lists(pairs, max_size=3)):
        argv += [option, value]
    argv += data.draw(st.lists(VALUES, max_size=1))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage errors and --help
            code = exc.code if isinstance(exc.code, int) else exitcodes.USAGE
    assert code in DOCUMENTED, (argv, code, err.getvalue())
    assert "Traceback" not in err.getvalue(), argv
    if code != exitcodes.OK:
        assert (out.getvalue() + err.getvalue()).strip(), f"{argv}: exit {code} without a word"


def toml_value() -> st.SearchStrategy[Any]:
    scalar = st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.text(max_size=12),
        st.sampled_from(["1s", "0", "-5m", "100M", "2G", "off", "* * * * *", "default"]),
    )
    return st.one_of(scalar, st.lists(scalar, max_size=3))


KEYS = {name: [f.name for f in dataclasses.fields(cls)] for name, cls in SECTIONS.items()}


@st.composite
def config_text(draw: st.DrawFn) -> str:
    lines = []
    for section in draw(st.lists(st.sampled_from([*KEYS, "nope"]), max_size=3, unique=True)):
        lines.append(f"[{section}]")
        names = st.sampled_from(KEYS.get(section, ["x"])) | st.from_regex(
            r"[a-z_]{1,12}", fullmatch=True
        )
        for key in draw(st.lists(names, max_size=4, unique=True)):
            lines.append(f"{key} = {json.dumps(draw(toml_value()))}")
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None)
@given(text=config_text())
def test_any_config_loads_or_says_what_is_wrong_in_one_line(
    tmp_path_factory: Any, text: str
) -> None:
    path = tmp_path_factory.mktemp("conf") / "jobd.toml"
    path.write_text(text)
    try:
        load(path, {})
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc), text


@settings(max_examples=200, deadline=None)
@given(
    environ=st.dictionaries(
        st.sampled_from(
            [
                f"JOBD_{key.upper()}" if name == "jobd" else f"JOBD_{name.upper()}_{key.upper()}"
                for name, keys in KEYS.items()
                for key in keys
            ]
        ),
        st.text(max_size=16)
        | st.sampled_from(["1", "0", "-1", "1s", "true", "[]", "99999999999999999999"]),
        max_size=4,
    )
)
def test_any_environment_override_loads_or_says_what_is_wrong(environ: dict[str, str]) -> None:
    try:
        load(None, environ, required=False)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc), environ
