"""`jobd demo`: the daemon on a local SQLite file, fed with example jobs.

It writes a config next to the database (./jobd-demo/ by default), creates
the schema, starts a small producer process that enqueues a mix of the
bundled example routines, and runs the master in the foreground, exactly
as `jobd run` does. ^C drains and stops both.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any, cast

from jobd.cli.administration import run_master
from jobd.cli.common import UsageError
from jobd.client import Client
from jobd.routines import Routine
from jobd.settings import Settings, load

CONFIG = """\
# jobd demo configuration (see docs/settings.md)
[jobd]
database = "sqlite:///jobd.db"      # relative to this file
modules = ["jobd.examples"]
log_level = "info"

[pool]
min_workers = 2
max_workers = 4
graceful_timeout = "10s"
"""


def demo(args: argparse.Namespace) -> int:
    return run_demo(Path(args.dir), args.rate)


def run_demo(directory: Path, rate: float) -> int:
    from jobd.store import open_store

    config = directory / "jobd.toml"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not config.exists():
            config.write_text(CONFIG)
    except OSError as exc:
        raise UsageError(f"demo: cannot use {directory} ({exc.strerror or exc})") from None
    settings = load(config)
    store = open_store(settings.jobd.database)
    try:
        store.upgrade()
    finally:
        store.close()
    shown = os.path.relpath(config)
    sys.stderr.write(
        f"jobd demo: config {shown}, database {settings.jobd.database}\n"
        f"  in another terminal:  .venv/bin/jobd -c {shown} status\n"
        f"                        .venv/bin/jobd -c {shown} jobs list\n"
        f"                        .venv/bin/jobd -c {shown} enqueue jobd.examples:hello "
        "--args '[\"you\"]'\n"
        "  ^C to drain and stop\n"
    )
    producer = _start_producer(settings, rate)
    try:
        return run_master(settings, reload=lambda: load(config))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(producer, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(producer, 0)


def _start_producer(settings: Settings, rate: float) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from jobd.processes import set_parent_death_signal

        set_parent_death_signal(signal.SIGTERM)
        _produce(settings, rate)
    except BaseException:
        code = 1
    os._exit(code)


def _produce(settings: Settings, rate: float) -> None:
    """Enqueue a mix of example jobs, `rate` per second, until killed."""
    # A producer imports the routines it enqueues, as an application does: the
    # names need no catalog then (the workers may not have registered it yet).
    from jobd import examples

    names = ["ada", "grace", "linus", "barbara", "ken"]
    with Client(settings=settings) as client:
        for n in range(sys.maxsize):
            pick = random.random()
            if pick < 0.4:
                client.enqueue(examples.hello, random.choice(names))
            elif pick < 0.6:
                client.enqueue(examples.add, n, random.randint(1, 100))
            elif pick < 0.8:
                client.enqueue(examples.flaky, 0.5)
            elif pick < 0.95:
                client.enqueue(examples.sleep, round(random.uniform(0.1, 2.0), 2))
            else:
                report = cast(Routine[Any, Any], examples.Report)  # a class decorated into one
                client.enqueue(report, f"report {n}", fail=random.random() < 0.5)
            time.sleep(1.0 / rate)  # a producer's pace, not synchronisation
