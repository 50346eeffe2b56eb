"""The `jobd` command, run as a real subprocess against a real SQLite file.

Exit codes are a contract (jobd/exitcodes.py): 0 ok, 1 runtime failure,
2 usage or config, 4 schema missing. A failure is one line on stderr that
starts with `jobd: `, never a traceback, and writes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import jobd.examples
from jobd import Client, exitcodes
from jobd.records import JobState, Settle
from jobd.routines import REGISTRY
from jobd.store import open_store
from jobd.store.schema import SCHEMA_REVISION

JOB_KEYS = {
    "id",
    "routine",
    "queue",
    "state",
    "priority",
    "attempts",
    "max_attempts",
    "args",
    "kwargs",
    "result",
    "error",
    "unique_key",
    "enqueued_at",
    "run_at",
    "started_at",
    "finished_at",
    "node_id",
    "cancel_requested",
}
HELLO = "jobd.examples:hello"
ADD = "jobd.examples:add"


def jobd_command() -> list[str]:
    """The installed console script (`jobd.cli:run`), or the same entry point run by python."""
    script = Path(sys.executable).with_name("jobd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from jobd.cli import run; run()"]


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without any JOBD_* setting that could leak in."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("JOBD_")}
    environ.update(extra)
    return environ


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Jobd:
    """Runs `jobd` in `workdir`, against `config` (which points at `database`)."""

    workdir: Path
    config: Path
    database: Path

    def raw(self, *argv: str, env: dict[str, str] | None = None) -> Result:
        done = subprocess.run(
            [*jobd_command(), *argv],
            cwd=self.workdir,
            env=clean_environ(**(env or {})),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def __call__(self, *argv: str, env: dict[str, str] | None = None) -> Result:
        """`jobd -c CONFIG ARGV...`"""
        return self.raw("-c", str(self.config), *argv, env=env)

    def ok(self, *argv: str) -> Result:
        result = self(*argv)
        assert result.code == exitcodes.OK, result
        assert result.stderr == ""
        return result

    def count_jobs(self) -> int:
        with sqlite3.connect(self.database) as conn:
            (count,) = conn.execute("SELECT count(*) FROM jobs").fetchone()
        return int(count)

    def client(self) -> Client:
        return Client(f"sqlite:///{self.database}")


def assert_fails(result: Result, code: int, *fragments: str) -> None:
    """Exit `code`, and exactly one line on stderr, starting `jobd: `, holding `fragments`."""
    assert result.code == code, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jobd: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


def write_config(path: Path, database: str, extra: str = "") -> Path:
    path.write_text(f'[jobd]\ndatabase = "{database}"\nmodules = ["jobd.examples"]\n{extra}')
    return path


@pytest.fixture(scope="module")
def schema_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database with the schema, copied for each test (an upgrade per test is slower)."""
    path = tmp_path_factory.mktemp("template") / "jobd.db"
    store = open_store(f"sqlite:///{path}")
    store.upgrade()
    # What the workers of this config (modules = ["jobd.examples"]) register at
    # boot: `jobd enqueue` checks names against it.
    store.register_routines(examples_catalog(), time.time())
    store.close()
    return path


def examples_catalog() -> dict[str, dict[str, Any]]:
    return {
        name: policy
        for name, policy in REGISTRY.catalog(None).items()
        if name.startswith(f"{jobd.examples.__name__}:")
    }


@pytest.fixture
def cli(tmp_path: Path, schema_template: Path) -> Jobd:
    database = tmp_path / "jobd.db"
    shutil.copyfile(schema_template, database)
    # Relative: the path is anchored at the config file's directory.
    config = write_config(tmp_path / "jobd.toml", "sqlite:///jobd.db")
    return Jobd(tmp_path, config, database)


@pytest.fixture
def bare_cli(tmp_path: Path) -> Jobd:
    """A config whose database does not exist yet."""
    config = write_config(tmp_path / "jobd.toml", "sqlite:///data/jobd.db")
    return Jobd(tmp_path, config, tmp_path / "data" / "jobd.db")


@pytest.fixture
def client(cli: Jobd) -> Iterator[Client]:
    with cli.client() as c:
        yield c


# -- the schema ----------------------------------------------------------------


def test_db_upgrade_creates_the_schema_once(bare_cli: Jobd) -> None:
    first = bare_cli.ok("db", "upgrade")
    upgraded = f"schema upgraded from nothing to revision {SCHEMA_REVISION}"
    assert first.stdout.strip().endswith(upgraded)
    assert str(bare_cli.database) in first.stdout
    with sqlite3.connect(bare_cli.database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"jobs", "attempts", "alembic_version"} <= tables
    second = bare_cli.ok("db", "upgrade")
    assert second.stdout.strip().endswith(f"schema already at revision {SCHEMA_REVISION}")
    assert bare_cli.count_jobs() == 0


@pytest.mark.parametrize(
    "argv",
    [["enqueue", HELLO], ["jobs", "show", "1"], ["status"], ["routines"]],
)
def test_a_database_without_schema_is_exit_4(bare_cli: Jobd, argv: list[str]) -> None:
    bare_cli.database.parent.mkdir()
    sqlite3.connect(bare_cli.database).close()
    result = bare_cli(*argv)
    assert_fails(result, exitcodes.SCHEMA, "has no jobd schema", "run `jobd db upgrade`")


@pytest.mark.parametrize(
    ("revision", "fragments"),
    [
        ("0099", ("revision 0099, newer than this jobd", "upgrade jobd")),
        ("abc", ("revision 'abc', which no jobd release made",)),
    ],
)
def test_a_schema_this_jobd_does_not_know_is_exit_4(
    cli: Jobd, revision: str, fragments: tuple[str, ...]
) -> None:
    # `db upgrade` said so with Alembic's traceback; `run` called 'abc' older.
    with sqlite3.connect(cli.database) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    for argv in (["db", "upgrade"], ["run"], ["status"]):
        assert_fails(cli(*argv), exitcodes.SCHEMA, *fragments)
    with sqlite3.connect(cli.database) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(revision,)]


def test_a_dropped_table_is_exit_4_not_a_warning_at_every_claim(cli: Jobd) -> None:
    with sqlite3.connect(cli.database) as conn:
        conn.execute("DROP TABLE attempts")
    for argv in (["run"], ["status"]):
        assert_fails(cli(*argv), exitcodes.SCHEMA, "has no table attempts", "backup")


def test_db_upgrade_where_its_directory_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    config = write_config(tmp_path / "jobd.toml", "sqlite:///file/sub/jobd.db")
    result = Jobd(tmp_path, config, tmp_path / "file" / "sub" / "jobd.db")("db", "upgrade")
    assert_fails(result, exitcodes.FAILURE, "cannot create", "file/sub")


def test_demo_in_a_directory_it_cannot_make_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = Jobd(tmp_path, tmp_path / "unused.toml", tmp_path / "x.db").raw(
        "demo", "--dir", str(tmp_path / "file" / "demo")
    )
    assert_fails(result, exitcodes.USAGE, "demo: cannot use", "file/demo")


# -- enqueue -------------------------------------------------------------------


def test_enqueue_prints_the_job_id(cli: Jobd, client: Client) -> None:
    assert cli.ok("enqueue", HELLO).stdout == "1\n"
    assert cli.ok("enqueue", HELLO, "--args", '["you"]').stdout == "2\n"
    job = client.get(2)
    assert (job.routine, job.state, job.args, job.queue) == (HELLO, "queued", ["you"], "default")


def test_enqueue_json_gives_the_job_with_stable_keys(cli: Jobd, client: Client) -> None:
    job = cli.ok("enqueue", ADD, "--args", "[1]", "--kwargs", '{"b": 2}', "--json").json()
    assert set(job) == JOB_KEYS
    assert job["routine"] == ADD
    assert job["args"] == [1]
    assert job["kwargs"] == {"b": 2}
    assert job["state"] == "queued"
    assert job["priority"] == 5  # from the decorator
    assert job["attempts"] == 0
    assert job["enqueued_at"].endswith("Z")
    assert job == client.get(job["id"]).to_json()


def test_enqueue_options(cli: Jobd) -> None:
    job = cli.ok(
        "enqueue",
        ADD,
        "--args",
        "[1, 2]",
        "--queue",
        "maths",
        "--priority",
        "-7",
        "--delay",
        "5m",
        "--unique-key",
        "sum:1:2",
        "--max-attempts",
        "9",
        "--json",
    ).json()
    assert (job["queue"], job["priority"], job["max_attempts"], job["unique_key"]) == (
        "maths",
        -7,
        9,
        "sum:1:2",
    )
    run_at = datetime.fromisoformat(job["run_at"].replace("Z", "+00:00"))
    enqueued_at = datetime.fromisoformat(job["enqueued_at"].replace("Z", "+00:00"))
    assert (run_at - enqueued_at).total_seconds() == pytest.approx(300, abs=0.01)
    # The same unique key while that job is queued: the same job.
    again = cli.ok("enqueue", ADD, "--args", "[3, 4]", "--unique-key", "sum:1:2")
    assert again.stdout == f"{job['id']}\n"
    assert cli.count_jobs() == 1


def test_enqueue_kwargs_named_like_options_are_the_routines(cli: Jobd) -> None:
    # "got multiple values for keyword argument 'queue'" before: --kwargs went
    # into Client.enqueue beside its options (issue 21 B).
    kwargs = {"queue": "x", "priority": 1, "connection": None, "unique_key": "k"}
    job = cli.ok(
        "enqueue", ADD, "--kwargs", json.dumps(kwargs), "--queue", "maths", "--json"
    ).json()
    assert (job["kwargs"], job["queue"], job["priority"], job["unique_key"]) == (
        kwargs,
        "maths",
        5,
        None,
    )


def test_a_unique_key_longer_than_its_column_is_a_usage_error(cli: Jobd) -> None:
    result = cli("enqueue", ADD, "--unique-key", "k" * 300)
    assert_fails(result, exitcodes.USAGE, "300 characters long; at most 255")
    assert cli.count_jobs() == 0


def test_enqueue_at(cli: Jobd) -> None:
    job = cli.ok("enqueue", HELLO, "--at", "2030-01-01T01:00:00+01:00", "--json").json()
    assert job["run_at"] == "2030-01-01T00:00:00.000Z"


def plant(directory: Path, marker: Path) -> None:
    """app.py in `directory`: importing it would write `marker` (and register app:resize)."""
    directory.mkdir(exist_ok=True)
    (directory / "app.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "import jobd\n\n@jobd.routine(queue='app', max_attempts=7)\ndef resize(n):\n    return n\n"
    )


@pytest.mark.parametrize("where", ["working directory", "pythonpath"])
def test_enqueue_never_imports_the_routine_it_names(cli: Jobd, where: str) -> None:
    # It imported app.py from the caller's working directory, with the caller's
    # privileges (issue 21 A2). A name is checked against the workers' catalog.
    marker = cli.workdir / "imported"
    plant(cli.workdir / "src" if where == "pythonpath" else cli.workdir, marker)
    write_config(cli.config, "sqlite:///jobd.db", '\npythonpath = ["src"]\n')
    result = cli("enqueue", "app:resize", "--args", "[1]")
    assert_fails(
        result, exitcodes.USAGE, "unknown routine 'app:resize'", "no worker has registered it",
        "`jobd routines`", "--no-check",
    )  # fmt: skip
    assert not marker.exists()
    assert cli.count_jobs() == 0


def test_enqueue_before_any_worker_registered_says_so(cli: Jobd) -> None:
    with sqlite3.connect(cli.database) as conn:
        conn.execute("DELETE FROM routines")
    assert_fails(
        cli("enqueue", HELLO), exitcodes.USAGE, "no worker has registered any routine", "jobd run"
    )
    assert cli.count_jobs() == 0


def test_enqueue_no_check_takes_a_name_no_worker_registered_yet(cli: Jobd) -> None:
    # For a routine a newer deploy will bring: enqueued with the default policy
    # and the options given, and still nothing imported.
    marker = cli.workdir / "imported"
    plant(cli.workdir, marker)
    job = cli.ok(
        "enqueue", "app:resize", "--no-check", "--args", "[1]", "--queue", "app", "--json"
    ).json()
    assert (job["routine"], job["queue"], job["args"], job["state"]) == (
        "app:resize", "app", [1], "queued",
    )  # fmt: skip
    assert not marker.exists()
    assert cli.count_jobs() == 1


# -- jobs ----------------------------------------------------------------------


def test_jobs_list_filters_and_limit(cli: Jobd, client: Client) -> None:
    hello = client.enqueue(HELLO)
    add = client.enqueue(ADD, 1, 2, queue="maths")
    cancelled = client.cancel(client.enqueue(HELLO).id)

    def ids(*options: str) -> list[int]:
        return [job["id"] for job in cli.ok("jobs", "list", "--json", *options).json()]

    assert ids("--limit", "2") == [cancelled.id, add.id]
    assert ids("--state", "cancelled") == [cancelled.id]
    assert ids("--queue", "maths") == [add.id]
    assert ids("--routine", HELLO, "--state", "queued") == [hello.id]


def test_jobs_list_as_a_table(cli: Jobd, client: Client) -> None:
    client.enqueue(ADD, 1, 2, queue="maths")
    client.cancel(client.enqueue(HELLO).id)
    lines = cli.ok("jobs", "list").stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:5] == ["ID", "STATE", "ROUTINE", "QUEUE", "ATTEMPTS"]
    assert lines[1].split()[:5] == ["2", "cancelled", HELLO, "default", "0/3"]
    assert lines[2].split()[:5] == ["1", "queued", ADD, "maths", "0/3"]


def test_jobs_show(cli: Jobd, client: Client) -> None:
    job = client.enqueue(ADD, 1, b=2)
    shown = cli.ok("jobs", "show", str(job.id), "--json").json()
    assert {
        "id",
        "routine",
        "queue",
        "state",
        "attempts",
        "max_attempts",
        "args",
        "kwargs",
        "result",
        "error",
        "enqueued_at",
        "started_at",
        "finished_at",
    } <= set(shown)
    assert shown["args"] == [1]
    assert shown["kwargs"] == {"b": 2}
    assert shown["attempts_detail"] == []
    text = cli.ok("jobs", "show", str(job.id)).stdout
    assert "routine   " in text
    assert ADD in text


def test_jobs_show_names_the_runs_when_they_differ_from_the_attempts(
    cli: Jobd, client: Client
) -> None:
    job = client.enqueue(ADD, 1, b=2)
    assert "attempts          0/3\n" in cli.ok("jobs", "show", str(job.id)).stdout
    node = client.store.register_node("cli", "host", 1, time.time())
    (held,) = client.store.exchange(node, [], (job.queue,), 1, time.time())
    back = Settle(held.id, JobState.QUEUED, None, uncount=True)  # a drain gave it back
    client.store.exchange(node, [back], (job.queue,), 0, time.time())
    assert "attempts          0/3 (runs 1)\n" in cli.ok("jobs", "show", str(job.id)).stdout


def test_jobs_cancel_a_queued_job(cli: Jobd, client: Client) -> None:
    job = client.enqueue(HELLO)
    assert cli.ok("jobs", "cancel", str(job.id)).stdout == f"job {job.id} cancelled\n"
    assert client.get(job.id).state == "cancelled"


def test_jobs_retry_a_cancelled_job(cli: Jobd, client: Client) -> None:
    job = client.cancel(client.enqueue(HELLO).id)
    result = cli.ok("jobs", "retry", str(job.id), "--json").json()
    assert (result["id"], result["state"], result["attempts"]) == (job.id, "queued", 0)
    assert client.get(job.id).state == "queued"


# -- status and routines ---------------------------------------------------------


def test_status(cli: Jobd, client: Client) -> None:
    client.enqueue(HELLO)
    client.enqueue(HELLO)
    client.cancel(client.enqueue(ADD, 1, 2, queue="maths").id)
    text = cli.ok("status").stdout
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert rows["QUEUE"][:6] == ["QUEUE", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
    assert rows["default"][:6] == ["default", "2", "0", "0", "0", "0"]
    assert rows["maths"][:6] == ["maths", "0", "0", "0", "0", "1"]
    assert "no live nodes" in text

    data = cli.ok("status", "--json").json()
    assert data["nodes"] == []
    queues = {q["queue"]: q for q in data["queues"]}
    assert (queues["default"]["queued"], queues["maths"]["cancelled"]) == (2, 1)
    assert queues["default"]["oldest_queued_age"] >= 0
    assert queues["maths"]["oldest_queued_age"] is None


def test_status_of_an_empty_database(cli: Jobd) -> None:
    assert "(no jobs)" in cli.ok("status").stdout
    assert cli.ok("status", "--json").json() == {"queues": [], "nodes": []}


def test_routines(cli: Jobd, client: Client) -> None:
    catalog = examples_catalog()
    client.store.register_routines(catalog, time.time())
    lines = cli.ok("routines").stdout.splitlines()
    assert lines[0].split()[:3] == ["ROUTINE", "QUEUE", "PRIORITY"]
    listed = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(listed) == set(catalog)
    assert listed[ADD][1:3] == ["default", "5"]
    assert listed["jobd.examples:sleep"][4] == "30s"  # its time limit
    as_json = cli.ok("routines", "--json").json()
    assert as_json == catalog


def test_routines_lists_what_live_nodes_register_and_which_nodes(cli: Jobd, client: Client) -> None:
    old = client.store.register_node("n", "host", 1, time.time())
    client.store.register_routines({ADD: {"queue": "maths"}, "app:gone": {}}, time.time(), old)
    client.store.stop_node(old, time.time())  # a deploy: "app:gone" is no longer in the code
    new = client.store.register_node("n", "host", 2, time.time())
    client.store.register_routines({ADD: {"queue": "maths"}}, time.time(), new)
    lines = cli.ok("routines").stdout.splitlines()
    assert lines[0].split()[-1] == "NODES"
    assert [line.split()[0] for line in lines[1:]] == [ADD]
    assert lines[1].split()[-1] == str(new)
    assert cli.ok("routines", "--json").json() == {ADD: {"queue": "maths"}}
    refused = cli("enqueue", "app:gone")
    assert refused.code == exitcodes.USAGE, refused.stderr


# -- where the config comes from -----------------------------------------------


def test_config_before_or_after_the_command_or_from_the_environment(
    cli: Jobd, client: Client
) -> None:
    job = client.enqueue(HELLO, "config")
    config = str(cli.config)
    show = ("jobs", "show", str(job.id), "--json")
    elsewhere = {"JOBD_CONFIG": str(cli.workdir / "absent.toml")}
    for result in (
        cli.raw("-c", config, *show),
        cli.raw(*show, "--config", config),
        cli.raw(*show, env={"JOBD_CONFIG": config}),
        cli.raw(*show, "-c", config, env=elsewhere),  # -c wins over JOBD_CONFIG
    ):
        assert result.code == 0, result
        assert result.stderr == ""
        assert result.json()["args"] == ["config"]


def test_environment_overrides_the_config_file(cli: Jobd, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    shutil.copyfile(cli.database, other)
    result = cli("enqueue", HELLO, env={"JOBD_DATABASE": f"sqlite:///{other}"})
    assert result.code == 0, result
    assert cli.count_jobs() == 0
    with sqlite3.connect(other) as conn:
        assert conn.execute("SELECT routine FROM jobs").fetchall() == [(HELLO,)]


# -- bad input -----------------------------------------------------------------

USAGE, FAILURE, SCHEMA = exitcodes.USAGE, exitcodes.FAILURE, exitcodes.SCHEMA


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["enqueue", "not a routine"], USAGE, "'not a routine' is not a routine name"),
        (["enqueue", "jobd.examples"], USAGE, "is not a routine name"),
        (["enqueue", HELLO, "--args", "{"], USAGE, "--args is not valid JSON"),
        (["enqueue", HELLO, "--args", '{"a": 1}'], USAGE, "--args must be a JSON array"),
        (["enqueue", HELLO, "--args", '"x"'], USAGE, "--args must be a JSON array, not str"),
        (["enqueue", HELLO, "--kwargs", "[]"], USAGE, "--kwargs must be a JSON object"),
        (["enqueue", HELLO, "--kwargs", "{'a': 1}"], USAGE, "--kwargs is not valid JSON"),
        (["enqueue", HELLO, "--args", "[NaN]"], USAGE, "args[0] is nan"),
        (["enqueue", HELLO, "--delay", "5x"], USAGE, "'5x' is not a duration"),
        (["enqueue", HELLO, "--delay=-5s"], USAGE, "'-5s' is not a duration"),
        (["enqueue", HELLO, "--delay", "99999999999999d"], USAGE, "out of range"),
        (["enqueue", HELLO, "--at", "2030-01-01T00:00:00"], USAGE, "has no time zone"),
        (["enqueue", HELLO, "--at", "soon"], USAGE, "'soon' is not an ISO 8601 time"),
        (
            ["enqueue", HELLO, "--at", "2030-01-01T00:00:00Z", "--delay", "5s"],
            USAGE,
            "give delay or at, not both",
        ),
        (["enqueue", HELLO, "--queue", "bad queue"], USAGE, "is not a queue name"),
        (["enqueue", HELLO, "--max-attempts", "0"], USAGE, "max_attempts: 0 is below"),
        (["enqueue", HELLO, "--priority", "9999999999"], USAGE, "is above the maximum"),
        (["enqueue", "jobd.examples:nope"], USAGE, "unknown routine 'jobd.examples:nope'"),
        (["enqueue", "no_such_package.jobs:work"], USAGE, "unknown routine"),
        (["jobs", "list", "--limit", "0"], USAGE, "--limit must be at least 1"),
        (["jobs", "list", "--limit", "9" * 25], USAGE, "out of range for a count"),
        (["jobs", "show", "9" * 25], USAGE, "out of range for a job id"),
        (["jobs", "retry", str(2**64)], USAGE, "out of range for a job id"),
        (["logs", "--job", str(2**63)], USAGE, "out of range for a job id"),
        (["enqueue", HELLO, "--args", "[" * 5000 + "]" * 5000], USAGE, "nested too deeply"),
        (["enqueue", HELLO, "--kwargs", '{"a":' * 3000 + "1" + "}" * 3000], USAGE, "too deeply"),
        (["-c", "", "status"], USAGE, "the config file name is empty"),
        (["jobs", "show", "999"], FAILURE, "no job with id 999"),
        (["jobs", "cancel", "999"], FAILURE, "no job with id 999"),
        (["jobs", "retry", "999"], FAILURE, "no job with id 999"),
        (["jobs", "retry", "QUEUED"], FAILURE, "is queued; only failed or cancelled"),
        (["jobs", "cancel", "CANCELLED"], FAILURE, "is cancelled; only queued or running"),
        # argparse's own errors keep the same shape
        (["enqueue", HELLO, "--priority", "high"], USAGE, "invalid int value: 'high'"),
        (["enqueue", HELLO, "--delay", "-5s"], USAGE, "--delay: expected one argument"),
        (["enqueue"], USAGE, "the following arguments are required: routine"),
        (["jobs", "show", "one"], USAGE, "invalid int value: 'one'"),
        (["jobs", "list", "--state", "lost"], USAGE, "invalid choice: 'lost'"),
        (["jobs"], USAGE, "required: ACTION"),
        (["launch"], USAGE, "invalid choice: 'launch'"),
        (["status", "--verbose"], USAGE, "unrecognized arguments: --verbose"),
    ],
)
def test_bad_input_is_one_line_an_exit_code_and_no_write(
    cli: Jobd, client: Client, argv: list[str], code: int, fragment: str
) -> None:
    ids = {
        "QUEUED": client.enqueue(HELLO).id,
        "CANCELLED": client.cancel(client.enqueue(HELLO).id).id,
    }
    before = cli.count_jobs()
    argv = [str(ids.get(arg, arg)) for arg in argv]
    assert_fails(cli(*argv), code, fragment)
    assert cli.count_jobs() == before
    assert client.get(ids["QUEUED"]).state == "queued"
    assert client.get(ids["CANCELLED"]).state == "cancelled"


@pytest.mark.parametrize(
    ("config_text", "environ", "code", "fragments"),
    [
        (None, {}, USAGE, ["absent.toml: config file not found"]),
        ("[jobd\n", {}, USAGE, ["bad.toml: invalid TOML"]),
        ("[pool]\nmin_workers = 'lots'\n", {}, USAGE, ["pool.min_workers: 'lots'"]),
        ("[pool]\nmin_wrkers = 2\n", {}, USAGE, ["unknown key pool.min_wrkers"]),
        ("", {"JOBD_POOL_MIN_WORKERS": "x"}, USAGE, ["JOBD_POOL_MIN_WORKERS: 'x'"]),
        ("[jobd]\ndatabase = 'jobd.db'\n", {}, USAGE, ["'jobd.db' is not a database URL"]),
        (
            "[jobd]\ndatabase = 'postgresql://jobd@127.0.0.1:1/jobd'\n",
            {},
            FAILURE,
            ["cannot connect to postgresql", "127.0.0.1"],
        ),
        (
            "[jobd]\ndatabase = 'sqlite:///no/such/dir/jobd.db'\n",
            {},
            SCHEMA,
            ["no/such/dir/jobd.db does not exist", "jobd db upgrade"],
        ),
    ],
)
def test_bad_config_or_database(
    cli: Jobd,
    config_text: str | None,
    environ: dict[str, str],
    code: int,
    fragments: list[str],
) -> None:
    name = "absent.toml" if config_text is None else "bad.toml"
    if config_text is not None:
        (cli.workdir / name).write_text(config_text)
    result = cli.raw("-c", str(cli.workdir / name), "enqueue", HELLO, env=environ)
    assert_fails(result, code, *fragments)
    assert cli.count_jobs() == 0


def test_a_reader_that_left_the_pipe_gets_no_traceback(cli: Jobd, client: Client) -> None:
    client.enqueue(HELLO)
    read, write = os.pipe()
    os.close(read)  # `jobd jobs list | true`: the reader is gone before the first write
    try:
        writer = subprocess.run(
            [*jobd_command(), "-c", str(cli.config), "jobs", "list"],
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=60,
            env=clean_environ(), check=False,
        )  # fmt: skip
    finally:
        os.close(write)
    assert writer.stderr == "", writer.stderr  # was a BrokenPipeError traceback
    assert writer.returncode == exitcodes.FAILURE


def test_a_missing_config_named_by_the_environment_is_an_error(cli: Jobd) -> None:
    result = cli.raw("status", env={"JOBD_CONFIG": str(cli.workdir / "absent.toml")})
    assert_fails(result, USAGE, "absent.toml: config file not found")
