"""The SQLite wake-up path: producers' datagrams reach every master's socket."""

from __future__ import annotations

import os
from pathlib import Path

from jobd.store.wake import WakeListener, Waker, wake_dir
from tests.waiting import wait_until


def _woken(waker: Waker, listener: WakeListener) -> list[tuple[float, list[str]]]:
    waker.wake({"default"}, 1.5)
    return listener.drain()


def test_a_master_that_binds_after_the_producer_looked_is_found(tmp_path: Path) -> None:
    database = str(tmp_path / "jobd.db")
    os.makedirs(wake_dir(database))
    waker = Waker(database)
    waker.wake({"default"}, 1.0)  # looks now: nobody listens yet
    listener = WakeListener(database)
    try:
        assert wait_until(lambda: _woken(waker, listener), timeout=5) == [(1.5, ["default"])]
    finally:
        listener.close()
        waker.close()


def test_a_socket_bound_in_the_same_mtime_tick_is_not_missed(tmp_path: Path) -> None:
    # Directory times tick coarsely: a socket bound in the tick of the change the
    # producer last saw leaves the mtime unchanged. Replayed here with utime.
    database = str(tmp_path / "jobd.db")
    directory = wake_dir(database)
    os.makedirs(directory)
    waker = Waker(database)
    waker.wake({"default"}, 1.0)
    seen = os.stat(directory)
    listener = WakeListener(database)
    os.utime(directory, ns=(seen.st_atime_ns, seen.st_mtime_ns))
    try:
        assert wait_until(lambda: _woken(waker, listener), timeout=5) == [(1.5, ["default"])]
    finally:
        listener.close()
        waker.close()


def test_the_listener_reads_at_most_what_it_is_asked(tmp_path: Path) -> None:
    # The master reads one datagram, claims, then the rest (docs/performance.md).
    database = str(tmp_path / "jobd.db")
    listener = WakeListener(database)
    waker = Waker(database)
    try:
        for run_at in (1.0, 2.0, 3.0):
            waker.wake({"default"}, run_at)
        assert listener.drain(at_most=1) == [(1.0, ["default"])]
        assert listener.drain() == [(2.0, ["default"]), (3.0, ["default"])]
        assert listener.drain(at_most=1) == []
    finally:
        listener.close()
        waker.close()
