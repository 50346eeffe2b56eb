"""Settings: declared once, loaded from TOML and the environment (jobd/settings/)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import jobd.settings
from jobd.settings import (
    SECTIONS,
    ConfigError,
    Settings,
    config_path,
    env_name,
    from_json,
    keep_unreloadable,
    load,
    not_reloadable_changes,
    render_markdown,
    to_json,
)

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "jobd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    return load(write(tmp_path, text), environ or {})


def config_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text, environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- defaults --------------------------------------------------------------


def test_defaults() -> None:
    settings = load(None, {})
    assert settings.jobd.database == "sqlite:////var/lib/jobd/jobd.db"
    assert settings.jobd.modules == ()
    assert settings.jobd.pythonpath == ()
    assert settings.jobd.log_level == "info"
    assert settings.pool.min_workers == 2
    assert settings.pool.max_workers == 8
    assert settings.pool.queues == ("default",)
    assert settings.pool.graceful_timeout == 30.0
    assert settings.store.timeout == 2.0
    assert settings.store.sqlite_synchronous == "normal"
    assert settings.limits.time_limit is None
    assert settings.limits.memory_limit is None
    assert settings.routines == {}
    assert settings.source is None
    assert settings == Settings()


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert load(path, {}) == dataclasses.replace(Settings(), source=path)


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().pool.min_workers = 5  # type: ignore[misc]


def test_every_setting_is_declared_with_a_parser_doc_and_reload_flag() -> None:
    for name, cls in SECTIONS.items():
        for declared in dataclasses.fields(cls):
            assert callable(declared.metadata["parse"]), (name, declared.name)
            assert declared.metadata["doc"].strip(), (name, declared.name)
            assert isinstance(declared.metadata["reloadable"], bool), (name, declared.name)


@pytest.mark.parametrize(
    ("section", "key", "variable"),
    [
        ("jobd", "database", "JOBD_DATABASE"),
        ("jobd", "modules", "JOBD_MODULES"),
        ("pool", "min_workers", "JOBD_POOL_MIN_WORKERS"),
        ("store", "timeout", "JOBD_STORE_TIMEOUT"),
        ("limits", "memory_limit", "JOBD_LIMITS_MEMORY_LIMIT"),
    ],
)
def test_env_name(section: str, key: str, variable: str) -> None:
    assert env_name(section, key) == variable


# -- the file --------------------------------------------------------------


def test_load_a_file(tmp_path: Path) -> None:
    settings = load_text(
        tmp_path,
        """
        [jobd]
        database = "postgresql://jobd@db.example/jobd"
        modules = ["app.jobs", "app.mail"]
        node_name = "web-1"
        log_level = "DEBUG"

        [pool]
        min_workers = 3
        max_workers = 12
        queues = ["default", "emails"]
        graceful_timeout = "2m"
        boot_timeout = 10

        [store]
        timeout = "500ms"
        poll_interval = "250ms"
        sqlite_synchronous = "full"

        [limits]
        time_limit = "1h"
        soft_time_limit = "50m"
        memory_limit = "1G"
        """,
    )
    assert settings.jobd.database == "postgresql://jobd@db.example/jobd"
    assert settings.jobd.modules == ("app.jobs", "app.mail")
    assert settings.jobd.node_name == "web-1"
    assert settings.jobd.log_level == "debug"
    assert (settings.pool.min_workers, settings.pool.max_workers) == (3, 12)
    assert settings.pool.queues == ("default", "emails")
    assert settings.pool.graceful_timeout == 120.0
    assert settings.pool.boot_timeout == 10.0
    assert settings.store.timeout == 0.5
    assert settings.store.poll_interval == 0.25
    assert settings.store.sqlite_synchronous == "full"
    assert settings.limits.time_limit == 3600.0
    assert settings.limits.soft_time_limit == 3000.0
    assert settings.limits.memory_limit == 1 << 30
    assert settings.source == tmp_path / "jobd.toml"


def test_limit_defaults_are_the_limits_that_differ(tmp_path: Path) -> None:
    settings = load_text(tmp_path, '[limits]\ntime_limit = "5m"\n')
    assert settings.limit_defaults() == {"time_limit": 300.0}
    assert Settings().limit_defaults() == {}


def test_routine_overrides_are_parsed(tmp_path: Path) -> None:
    settings = load_text(
        tmp_path,
        """
        [routines."app.jobs:resize"]
        time_limit = "5m"
        memory_limit = "512M"
        queue = "images"
        max_attempts = 5

        [routines."app.mail:send"]
        unique = true
        """,
    )
    assert settings.routines == {
        "app.jobs:resize": {
            "time_limit": 300.0,
            "memory_limit": 512 << 20,
            "queue": "images",
            "max_attempts": 5,
        },
        "app.mail:send": {"unique": True},
    }


def test_relative_sqlite_path_is_anchored_at_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(conf, '[jobd]\ndatabase = "sqlite:///data/jobd.db?timeout=5"\n')
    assert load(path, {}).jobd.database == f"sqlite:///{conf}/data/jobd.db?timeout=5"
    # A relative path to the file itself works as well.
    assert load(Path("../etc/jobd.toml"), {}).jobd.database == (
        f"sqlite:///{conf}/data/jobd.db?timeout=5"
    )


@pytest.mark.parametrize(
    "url",
    ["sqlite:////var/lib/jobd/jobd.db", "sqlite:///:memory:", "sqlite://", "postgresql://h/db"],
)
def test_absolute_memory_and_other_databases_are_left_alone(tmp_path: Path, url: str) -> None:
    assert load_text(tmp_path, f'[jobd]\ndatabase = "{url}"\n').jobd.database == url


@pytest.mark.parametrize("url", ["mysql://root@127.0.0.1/test", "foo://x", "redis://h/0"])
def test_a_database_jobd_does_not_run_on_is_a_config_error(tmp_path: Path, url: str) -> None:
    # It was a store error at the first connection (exit 1), not a config error (exit 2).
    with pytest.raises(ConfigError, match="jobd runs on sqlite or postgresql"):
        load_text(tmp_path, f'[jobd]\ndatabase = "{url}"\n')


def test_pythonpath_is_anchored_at_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")
    settings = load_text(tmp_path, '[jobd]\npythonpath = ["src", "../lib", "/opt/app"]\n')
    assert settings.jobd.pythonpath == (
        str(tmp_path / "src"),
        str(tmp_path.parent / "lib"),
        "/opt/app",
    )


# -- the environment -------------------------------------------------------


def test_environment_overrides(tmp_path: Path) -> None:
    settings = load(
        None,
        {
            "JOBD_DATABASE": "postgresql://u@h/db",
            "JOBD_POOL_MIN_WORKERS": "4",
            "JOBD_POOL_MAX_WORKERS": " 16 ",
            "JOBD_STORE_TIMEOUT": "250ms",
            "JOBD_MODULES": "app.jobs, app.mail ,,",
            "JOBD_POOL_QUEUES": "default,emails",
            "JOBD_LIMITS_MEMORY_LIMIT": "512M",
            "JOBD_LIMITS_TIME_LIMIT": "none",
            "JOBD_LOG_LEVEL": "warning",
            "UNRELATED": "x",
        },
    )
    assert settings.jobd.database == "postgresql://u@h/db"
    assert settings.pool.min_workers == 4
    assert settings.pool.max_workers == 16
    assert settings.store.timeout == 0.25
    assert settings.jobd.modules == ("app.jobs", "app.mail")
    assert settings.pool.queues == ("default", "emails")
    assert settings.limits.memory_limit == 512 << 20
    assert settings.limits.time_limit is None
    assert settings.jobd.log_level == "warning"


def test_an_empty_modules_variable_means_no_modules(tmp_path: Path) -> None:
    settings = load_text(tmp_path, '[jobd]\nmodules = ["app"]\n', {"JOBD_MODULES": ""})
    assert settings.jobd.modules == ()


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    settings = load_text(
        tmp_path,
        '[jobd]\ndatabase = "sqlite:///file.db"\nmodules = ["a"]\n'
        '[pool]\nmin_workers = 3\n[store]\ntimeout = "5s"\n',
        {
            "JOBD_DATABASE": "sqlite:////srv/env.db",
            "JOBD_POOL_MIN_WORKERS": "5",
            "JOBD_STORE_TIMEOUT": "1s",
            "JOBD_MODULES": "b,c",
        },
    )
    assert settings.jobd.database == "sqlite:////srv/env.db"
    assert settings.pool.min_workers == 5
    assert settings.store.timeout == 1.0
    assert settings.jobd.modules == ("b", "c")


def test_a_relative_sqlite_path_from_the_environment_is_not_moved(tmp_path: Path) -> None:
    settings = load_text(tmp_path, "", {"JOBD_DATABASE": "sqlite:///here.db"})
    assert settings.jobd.database == "sqlite:///here.db"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("JOBD_POOL_MIN_WORKERS", "four", "'four' is not an integer"),
        ("JOBD_POOL_MIN_WORKERS", "0", "0 is out of range 1..1024"),
        ("JOBD_STORE_TIMEOUT", "5x", "'5x' is not a duration"),
        ("JOBD_STORE_TIMEOUT", "0", "'0' is out of range"),
        ("JOBD_DATABASE", "nope", "'nope' is not a database URL"),
        ("JOBD_MODULES", "app,1bad", "'1bad' is not an importable module name"),
        ("JOBD_MODULES", "app,app", "names an entry twice"),
        ("JOBD_POOL_QUEUES", "", "the list is empty"),
        ("JOBD_LOG_LEVEL", "loud", "'loud' is not one of debug, info, warning, error"),
        ("JOBD_LIMITS_MEMORY_LIMIT", "12Q", "'12Q' is not a size"),
    ],
)
def test_bad_environment_value_names_the_variable(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    message = config_error(tmp_path, "", {variable: value})
    assert message.startswith(f"environment {variable}: ")
    assert expected in message


# -- validation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[bogus]\n", "unknown section [bogus]"),
        ("jobd = 5\n", "[jobd] must be a table"),
        ("[pool]\nmin_worker = 2\n", "unknown key pool.min_worker"),
        ("[jobd]\ndatabse = 'x'\n", "unknown key jobd.databse"),
        ("[pool]\nmin_workers = 'lots'\n", "pool.min_workers: 'lots' is not an integer"),
        ("[pool]\nmin_workers = true\n", "pool.min_workers: True is not an integer"),
        ("[pool]\nmin_workers = 2.0\n", "pool.min_workers: 2.0 is not an integer"),
        ("[pool]\nmax_workers = 5000\n", "pool.max_workers: 5000 is out of range 1..1024"),
        ("[pool]\nqueues = []\n", "pool.queues: the list is empty"),
        ("[pool]\nqueues = ['bad queue']\n", "pool.queues: 'bad queue' is not a queue name"),
        ("[pool]\ngraceful_timeout = '5x'\n", "pool.graceful_timeout: '5x' is not a duration"),
        ("[pool]\ngraceful_timeout = -1\n", "pool.graceful_timeout: -1 is not a duration"),
        ("[pool]\nboot_timeout = '2h'\n", "pool.boot_timeout: '2h' is out of range"),
        ("[jobd]\ndatabase = 'jobd.db'\n", "jobd.database: 'jobd.db' is not a database URL"),
        ("[jobd]\nmodules = [1]\n", "jobd.modules: 1 is not an importable module name"),
        ("[jobd]\nmodules = 'app'\n", None),  # a string is a comma list: accepted
        ("[jobd]\nnode_name = 5\n", "jobd.node_name: 5 is not a string"),
        ("[store]\nsqlite_synchronous = 'off'\n", "store.sqlite_synchronous: 'off' is not one of"),
        ("[limits]\nmemory_limit = '12Q'\n", "limits.memory_limit: '12Q' is not a size"),
        ("[limits]\nqueue = 'q'\n", "unknown key limits.queue"),
        (
            "[pool]\nmin_workers = 5\nmax_workers = 2\n",
            "pool.max_workers (2) is below pool.min_workers (5)",
        ),
        (
            "[limits]\ntime_limit = '1m'\nsoft_time_limit = '2m'\n",
            "limits.soft_time_limit (2m) must be below limits.time_limit (1m)",
        ),
        (
            "[limits]\ntime_limit = '1m'\nsoft_time_limit = '60s'\n",
            "limits.soft_time_limit (1m) must be below limits.time_limit (1m)",
        ),
        (
            "[store]\nnode_timeout = '2s'\n",
            "store.node_timeout (2.0s) must exceed store.heartbeat_interval (2.0s)",
        ),
        (
            "[routines.'bad name']\nqueue = 'q'\n",
            "[routines.'bad name']: 'bad name' is not a routine name",
        ),
        ("[routines.'app:fn']\nretries = 3\n", "routines.'app:fn': unknown key 'retries'"),
        (
            "[routines.'app:fn']\ntime_limit = '5x'\n",
            "routines.'app:fn'.time_limit: '5x' is not a duration",
        ),
        ("[routines]\n'app:fn' = 5\n", "routines.'app:fn' must be a table"),
        ("routines = 5\n", "[routines] must hold tables"),
    ],
)
def test_bad_file_value_is_one_line_naming_file_key_and_value(
    tmp_path: Path, text: str, expected: str | None
) -> None:
    if expected is None:
        load_text(tmp_path, text)
        return
    message = config_error(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'jobd.toml'}: ")
    assert expected in message


def test_soft_time_limit_below_time_limit_is_fine(tmp_path: Path) -> None:
    settings = load_text(tmp_path, "[limits]\ntime_limit = '1m'\nsoft_time_limit = '50s'\n")
    assert (settings.limits.soft_time_limit, settings.limits.time_limit) == (50.0, 60.0)


def test_node_timeout_is_five_heartbeats_unless_set(tmp_path: Path) -> None:
    assert load_text(tmp_path, "").store.node_window() == 10.0
    slow = load_text(
        tmp_path, "[store]\nheartbeat_interval = '30s'\n[health]\nnode_stale_after = '5m'\n"
    )
    assert slow.store.node_window() == 150.0  # a longer interval stretches the window
    given = load_text(tmp_path, "[store]\nheartbeat_interval = '1s'\nnode_timeout = '3s'\n")
    assert given.store.node_window() == 3.0


def test_max_workers_below_min_workers_through_the_environment(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[pool]\nmin_workers = 3\n", {"JOBD_POOL_MAX_WORKERS": "2"})
    assert "pool.max_workers (2) is below pool.min_workers (3)" in message


def test_invalid_toml(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[jobd\ndatabase = \n")
    assert message.startswith(f"{tmp_path / 'jobd.toml'}: invalid TOML: ")


def test_missing_file_is_an_error_when_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "absent.toml", {}, required=True)
    assert str(caught.value) == f"{tmp_path / 'absent.toml'}: config file not found"


def test_missing_file_gives_defaults_when_not_required(tmp_path: Path) -> None:
    settings = load(tmp_path / "absent.toml", {"JOBD_POOL_MIN_WORKERS": "3"}, required=False)
    assert settings.pool.min_workers == 3
    assert settings.jobd == Settings().jobd


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load(tmp_path, {})


@pytest.mark.parametrize(
    ("given", "environ", "expected"),
    [
        ("/a.toml", {"JOBD_CONFIG": "/b.toml"}, (Path("/a.toml"), True)),
        (None, {"JOBD_CONFIG": "/b.toml"}, (Path("/b.toml"), True)),
        (None, {"JOBD_CONFIG": ""}, (Path("/etc/jobd/jobd.toml"), False)),
        (None, {}, (Path("/etc/jobd/jobd.toml"), False)),
    ],
)
def test_config_path(given: str | None, environ: dict[str, str], expected: object) -> None:
    assert config_path(given, environ) == expected


# -- passing settings on, and reloads ---------------------------------------


def test_json_round_trip(tmp_path: Path) -> None:
    settings = load_text(
        tmp_path,
        """
        [jobd]
        modules = ["app.jobs"]
        pythonpath = ["src"]
        [pool]
        queues = ["default", "emails"]
        [limits]
        memory_limit = "1G"
        [routines."app.jobs:resize"]
        time_limit = "5m"
        """,
    )
    assert from_json(json.loads(json.dumps(to_json(settings)))) == settings
    assert from_json(json.loads(json.dumps(to_json(Settings())))) == Settings()


def test_not_reloadable_changes(tmp_path: Path) -> None:
    old = load_text(tmp_path, "")
    new = load_text(
        tmp_path,
        """
        [jobd]
        database = "sqlite:////srv/other.db"
        node_name = "renamed"
        modules = ["app"]
        log_level = "debug"
        [pool]
        max_workers = 3
        [store]
        sqlite_synchronous = "full"
        timeout = "9s"
        """,
    )
    assert not_reloadable_changes(old, new) == [
        "jobd.database",
        "jobd.node_name",
        "store.timeout",
        "store.sqlite_synchronous",
    ]
    assert not_reloadable_changes(old, old) == []
    kept, names = keep_unreloadable(old, new)
    assert names == not_reloadable_changes(old, new)
    assert (kept.jobd.database, kept.store.timeout) == (old.jobd.database, old.store.timeout)
    assert (kept.jobd.log_level, kept.pool.max_workers) == ("debug", 3)  # reloadable: new


# -- the settings reference --------------------------------------------------


def test_every_setting_appears_in_the_reference() -> None:
    text = render_markdown()
    for name, cls in SECTIONS.items():
        assert f"## [{name}]" in text
        for declared in dataclasses.fields(cls):
            assert f"`{env_name(name, declared.name)}`" in text
    assert "| `unique` | `false` |" in text  # TOML spelling, not Python's


def test_docs_settings_md_is_generated_from_the_declarations() -> None:
    path = REPO / "docs" / "settings.md"
    regenerate = f"regenerate it: python -m {jobd.settings.__name__} > docs/settings.md"
    assert path.exists(), f"{path} is missing; {regenerate}"
    assert path.read_text() == render_markdown(), f"{path} is out of date; {regenerate}"
