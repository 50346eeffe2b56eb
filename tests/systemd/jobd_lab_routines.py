"""The application the systemd tests install in the lab (/srv/jobd-app).

The unit's workers import it by name (`modules` in the lab's config). It
runs under the unit's hardening, so it writes nothing: the test watches
jobs through the database and the journal, and opens "gates" (files in
/srv/jobd-lab/gates) that routines wait for.
"""

from __future__ import annotations

import logging
import os
import resource
import time

import jobd

GATES = "/srv/jobd-lab/gates"
HOLD_IMPORT = "/srv/jobd-lab/hold-import"
HOLD_LIMIT = 60.0  # a forgotten hold must not hang a test run for ever

log = logging.getLogger("jobd_lab_routines")


def _hold_import() -> None:
    """While the test holds it, importing this module (booting workers) waits."""
    deadline = time.monotonic() + HOLD_LIMIT
    while os.path.exists(HOLD_IMPORT) and time.monotonic() < deadline:
        time.sleep(0.01)


_hold_import()


def wait_gate(name: str) -> None:
    path = os.path.join(GATES, name)
    while not os.path.exists(path):
        time.sleep(0.005)


@jobd.routine(max_attempts=1)
def echo(tag: str) -> int:
    """Logs a line and prints one; both must reach the journal tagged with the job."""
    log.info("lab-log %s", tag)
    print(f"lab-print {tag}")
    return os.getpid()


@jobd.routine(max_attempts=1)
def echo_gated(tag: str, gate: str) -> int:
    """As echo, then waits for the gate: holds its worker so the next job goes elsewhere."""
    log.info("lab-log %s", tag)
    print(f"lab-print {tag}")
    wait_gate(gate)
    return os.getpid()


@jobd.routine(max_attempts=1)
def work(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@jobd.routine(max_attempts=3, retry_delay=0)
def gated(gate: str) -> str:
    wait_gate(gate)
    return "opened"


@jobd.routine(
    max_attempts=1,
    isolation="process",  # a forked child in its own process group
    time_limit="60s",
    memory_limit="1G",  # the master samples the RSS through /proc
    cpu_time_limit="60s",
    open_files_limit=256,  # setrlimit in the child
)
def limited() -> dict[str, int]:
    """Runs under every kind of limit; reports what the kernel says of them."""
    return {
        "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
        "pgid_is_pid": int(os.getpgid(0) == os.getpid()),
    }
