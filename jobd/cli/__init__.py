"""The `jobd` command: argv to commands, errors to one line and an exit code.

Exit codes (jobd.exitcodes): 0 ok, 1 runtime failure, 2 usage or config,
3 worker boot failure (`jobd run`), 4 schema missing or out of date.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from jobd import exitcodes
from jobd.cli import commands, scheduling
from jobd.cli.commands import UsageError
from jobd.client import UnknownRoutine
from jobd.settings import ConfigError
from jobd.store.contract import InvalidTransition, JobNotFound, SchemaError, StoreError


class _Parser(argparse.ArgumentParser):
    """Reports bad arguments like every other jobd error: one line, exit 2.

    Sub-command parsers are made with the parent's class, so this covers them.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(exitcodes.USAGE, f"jobd: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        default=argparse.SUPPRESS,
        help="config file (default: $JOBD_CONFIG or /etc/jobd/jobd.toml)",
    )
    as_json = _Parser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable output")

    parser = _Parser(
        prog="jobd",
        parents=[common],
        description="A job-processing daemon: a pre-forked worker pool over a durable SQL queue.",
        epilog="Exit codes: 0 ok, 1 runtime failure (`jobd health`: unhealthy), 2 usage or "
        "config, 3 worker boot failure, "
        "4 database schema missing or out of date (run `jobd db upgrade`).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], help: str, json: bool = False
    ) -> argparse.ArgumentParser:
        parents = [common, as_json] if json else [common]
        command = sub.add_parser(name, parents=parents, help=help, description=help)
        command.set_defaults(handler=handler)
        return command

    add("run", commands.run, "run the daemon in the foreground (what systemd runs)")

    enqueue = add("enqueue", commands.enqueue, "add a job; prints its id", json=True)
    enqueue.add_argument("routine", help="module:function")
    enqueue.add_argument("--args", default="[]", help="positional arguments, a JSON array")
    enqueue.add_argument("--kwargs", default="{}", help="keyword arguments, a JSON object")
    enqueue.add_argument("--queue", help="override the routine's queue")
    enqueue.add_argument("--priority", type=int, help="higher runs first")
    enqueue.add_argument("--delay", help="run after this long (e.g. 30s, 5m)")
    enqueue.add_argument("--at", help="run at this ISO 8601 time (with a time zone)")
    enqueue.add_argument("--unique-key", help="deduplicate on this key while a job with it is live")
    enqueue.add_argument("--max-attempts", type=int, help="override the routine's max_attempts")

    jobs = sub.add_parser("jobs", help="list, show, retry or cancel jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    listing = jobs_sub.add_parser("list", parents=[common, as_json], help="list jobs, newest first")
    listing.set_defaults(handler=commands.jobs_list)
    listing.add_argument(
        "--state", choices=["queued", "running", "succeeded", "failed", "cancelled"]
    )
    listing.add_argument("--queue")
    listing.add_argument("--routine")
    listing.add_argument("--limit", type=int, default=50)
    for action, handler, help in (
        ("show", commands.jobs_show, "a job and its attempts"),
        ("retry", commands.jobs_retry, "put a failed or cancelled job back in its queue"),
        ("cancel", commands.jobs_cancel, "cancel a queued job, or stop a running one"),
    ):
        command = jobs_sub.add_parser(action, parents=[common, as_json], help=help)
        command.set_defaults(handler=handler)
        command.add_argument("id", type=int, help="job id")

    _add_inspection(add)
    scheduling.add_commands(add)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_sub.add_parser("upgrade", parents=[common], help="create or migrate the schema")
    upgrade.set_defaults(handler=commands.db_upgrade)

    demo = add("demo", commands.demo, "run jobd on a local SQLite file with example jobs")
    demo.add_argument(
        "--dir", default="jobd-demo", help="where the demo's files go (default: ./jobd-demo)"
    )
    demo.add_argument("--rate", type=float, default=2.0, help="example jobs enqueued per second")
    return parser


def _add_inspection(add: Callable[..., argparse.ArgumentParser]) -> None:
    """status, stats, logs, routines: looking at a running jobd."""
    add("status", commands.status, "queues, nodes and workers", json=True)
    stats = add(
        "stats",
        commands.stats,
        "per routine: runs, success rate, durations, memory, limits hit",
        json=True,
    )
    stats.add_argument("--since", default="24h", help="the window of attempts (default 24h)")
    stats.add_argument("--routine", help="only this routine")
    logs = add("logs", commands.logs, "the journal of the jobd unit, by worker or job")
    logs.add_argument("--worker", type=int, help="only this worker (slot number)")
    logs.add_argument("--job", type=int, help="only this job (every attempt)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new entries")
    logs.add_argument("-n", "--lines", type=int, help="the last N entries")
    logs.add_argument("--unit", default="jobd", help="the systemd unit (default jobd)")
    add(
        "routines",
        commands.routines,
        "the routines workers registered, with their policy",
        json=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except (ConfigError, UsageError, UnknownRoutine) as exc:
        return _fail(str(exc), exitcodes.USAGE)
    except SchemaError as exc:
        return _fail(str(exc), exitcodes.SCHEMA)
    except (JobNotFound, InvalidTransition) as exc:
        return _fail(str(exc), exitcodes.FAILURE)
    except StoreError as exc:
        return _fail(str(exc), exitcodes.FAILURE)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"jobd: {message}\n")
    return code


def run() -> None:
    sys.exit(main())
