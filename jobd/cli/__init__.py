"""The `jobd` command: argv to commands, errors to one line and an exit code.

Exit codes (jobd.exitcodes): 0 ok, 1 runtime failure, 2 usage or config,
3 worker boot failure (`jobd run`), 4 schema missing or out of date.

Every command and option is declared here, in the order `jobd --help` lists
them; the commands themselves are in `jobs` (enqueue, jobs ...),
`inspection` (status, stats, routines, logs, schedules, health),
`administration` (run, db upgrade, cleanup) and `demo`, which share
`common` (settings, client, UsageError) and `output` (tables, JSON).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from jobd import exitcodes
from jobd.cli import administration, demo, inspection, jobs
from jobd.cli.common import UsageError
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
        type=_config_path,
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

    add("run", administration.run, "run the daemon in the foreground (what systemd runs)")
    _add_jobs(add, sub, [common, as_json])
    _add_inspection(add)
    _add_administration(add, sub, [common])
    return parser


def _add_jobs(
    add: Callable[..., argparse.ArgumentParser],
    sub: Any,
    parents: list[argparse.ArgumentParser],
) -> None:
    """enqueue, and jobs list/show/retry/cancel: adding jobs and acting on them."""
    enqueue = add("enqueue", jobs.enqueue, "add a job; prints its id", json=True)
    enqueue.add_argument("routine", help="module:function")
    enqueue.add_argument("--args", default="[]", help="positional arguments, a JSON array")
    enqueue.add_argument("--kwargs", default="{}", help="keyword arguments, a JSON object")
    enqueue.add_argument("--queue", help="override the routine's queue")
    enqueue.add_argument("--priority", type=int, help="higher runs first")
    enqueue.add_argument("--delay", help="run after this long (e.g. 30s, 5m)")
    enqueue.add_argument("--at", help="run at this ISO 8601 time (with a time zone)")
    enqueue.add_argument("--unique-key", help="deduplicate on this key while a job with it is live")
    enqueue.add_argument("--max-attempts", type=int, help="override the routine's max_attempts")
    enqueue.add_argument(
        "--no-check",
        action="store_true",
        help="enqueue a routine no worker has registered yet (one a newer deploy will bring); "
        "by default such a name is refused with exit 2",
    )

    group = sub.add_parser("jobs", help="list, show, retry or cancel jobs")
    jobs_sub = group.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    listing = jobs_sub.add_parser("list", parents=parents, help="list jobs, newest first")
    listing.set_defaults(handler=jobs.jobs_list)
    listing.add_argument(
        "--state", choices=["queued", "running", "succeeded", "failed", "cancelled"]
    )
    listing.add_argument("--queue")
    listing.add_argument("--routine")
    listing.add_argument("--limit", type=_count, default=50)
    for action, handler, help in (
        ("show", jobs.jobs_show, "a job and its attempts"),
        ("retry", jobs.jobs_retry, "put a failed or cancelled job back in its queue"),
        ("cancel", jobs.jobs_cancel, "cancel a queued job, or stop a running one"),
    ):
        command = jobs_sub.add_parser(action, parents=parents, help=help)
        command.set_defaults(handler=handler)
        command.add_argument("id", type=_job_id, help="job id")


def _add_inspection(add: Callable[..., argparse.ArgumentParser]) -> None:
    """status, stats, logs, routines, schedules, health: looking at a running jobd."""
    add("status", inspection.status, "queues, nodes and workers", json=True)
    stats = add(
        "stats",
        inspection.stats,
        "per routine: runs, success rate, durations, memory, limits hit",
        json=True,
    )
    stats.add_argument("--since", default="24h", help="the window of attempts (default 24h)")
    stats.add_argument("--routine", help="only this routine")
    logs = add("logs", inspection.logs, "the journal of the jobd unit, by worker or job")
    logs.add_argument("--worker", type=_count, help="only this worker (slot number)")
    logs.add_argument("--job", type=_job_id, help="only this job (every attempt)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new entries")
    logs.add_argument("-n", "--lines", type=_count, help="the last N entries")
    logs.add_argument("--unit", default="jobd", help="the systemd unit (default jobd)")
    add(
        "routines",
        inspection.routines,
        "the routines workers registered, with their policy",
        json=True,
    )
    add("schedules", inspection.schedules, "schedules, their next fire and last outcome", json=True)
    add(
        "health",
        inspection.health,
        "check the master, ready jobs, running jobs and the failure rate; "
        "exit 0 healthy, 1 unhealthy",
        json=True,
    )


def _add_administration(
    add: Callable[..., argparse.ArgumentParser],
    sub: Any,
    parents: list[argparse.ArgumentParser],
) -> None:
    """cleanup, db upgrade, demo (run comes first in the list, as the main command)."""
    cleanup = add(
        "cleanup",
        administration.cleanup,
        "delete old finished jobs (the retention cleanup)",
        json=True,
    )
    cleanup.add_argument(
        "--completed-days",
        type=float,
        help="delete succeeded and cancelled jobs this many days old "
        "(default: retention.completed_after, 7 days)",
    )
    cleanup.add_argument(
        "--failed-days",
        type=float,
        help="delete failed jobs this many days old (default: retention.failed_after, 30 days)",
    )

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_sub.add_parser("upgrade", parents=parents, help="create or migrate the schema")
    upgrade.set_defaults(handler=administration.db_upgrade)

    command = add("demo", demo.demo, "run jobd on a local SQLite file with example jobs")
    command.add_argument(
        "--dir", default="jobd-demo", help="where the demo's files go (default: ./jobd-demo)"
    )
    command.add_argument("--rate", type=float, default=2.0, help="example jobs enqueued per second")


def _bounded_int(low: int, high: int, what: str) -> Callable[[str], int]:
    """An int argument that fits the database's columns (ids are 64-bit)."""

    def parse(text: str) -> int:
        value = int(text)  # a ValueError: argparse says "invalid int value: 'x'"
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range for {what} ({low}..{high})")
        return value

    parse.__name__ = "int"
    return parse


_job_id = _bounded_int(1, 2**63 - 1, "a job id")
_count = _bounded_int(0, 2**31 - 1, "a count")


def _config_path(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("the config file name is empty")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # `jobd status | head`: the reader left; stop quietly, as other tools do.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return exitcodes.FAILURE
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
