"""Running and keeping jobd: `jobd run`, `jobd db upgrade` and `jobd cleanup`."""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from typing import Any

from jobd import exitcodes
from jobd.cli.common import UsageError, load_settings, open_client
from jobd.cli.output import print_json
from jobd.maintenance import DAY, delete_old
from jobd.settings import Settings


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    return run_master(settings, reload=lambda: load_settings(args))


def run_master(settings: Settings, reload: Callable[[], Settings] | None = None) -> int:
    from jobd import logs
    from jobd.store import open_store
    from jobd.supervisor.master import Master

    logs.setup(settings.jobd.log_level, "master")
    if settings.source is not None:
        # jobd's own routines (the retention cleanup) read the config the master runs with.
        os.environ["JOBD_CONFIG"] = str(settings.source.resolve())

    def opened() -> Any:
        return open_store(
            settings.jobd.database,
            timeout=settings.store.timeout,
            sqlite_synchronous=settings.store.sqlite_synchronous,
        )

    return Master(settings, None, reload=reload, open_store=opened).run()


def db_upgrade(args: argparse.Namespace) -> int:
    from jobd.store import open_store

    settings = load_settings(args)
    store = open_store(settings.jobd.database, sqlite_synchronous=settings.store.sqlite_synchronous)
    try:
        before, after = store.upgrade()
    finally:
        store.close()
    if before == after:
        print(f"{store.describe()}: schema already at revision {after}")
    else:
        print(f"{store.describe()}: schema upgraded from {before or 'nothing'} to revision {after}")
    return exitcodes.OK


def cleanup(args: argparse.Namespace) -> int:
    completed, failed = (
        _days(args.completed_days, "--completed-days"),
        _days(args.failed_days, "--failed-days"),
    )  # checked before touching the store
    with open_client(args) as client:
        retention = client.settings.retention
        completed = retention.completed_after if completed is None else completed
        failed = retention.failed_after if failed is None else failed
        counts = delete_old(client.store, time.time(), completed, failed, retention.batch_size)
    if args.json:
        print_json(counts)
    else:
        jobs = counts["succeeded"] + counts["cancelled"] + counts["failed"]
        print(
            f"deleted {jobs} jobs ({counts['succeeded']} succeeded, {counts['cancelled']} "
            f"cancelled, {counts['failed']} failed), {counts['attempts']} attempts, "
            f"{counts['schedule_fires']} schedule fires"
        )
    return exitcodes.OK


def _days(given: float | None, option: str) -> float | None:
    if given is None:
        return None
    if not math.isfinite(given) or given < 0:
        raise UsageError(f"{option} must be a number of days >= 0, not {given!r}")
    return given * DAY
