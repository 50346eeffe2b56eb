"""The worker template: a lean process that imports the application once and
forks workers on the master's request.

Why a template (measured, see docs/architecture.md): the master holds
SQLAlchemy (+25 MB, 0.3 s to import) and must never import user code. A
worker forked from the master would carry SQLAlchemy in its RSS (36 MB per
idle worker) and then import the application itself, per worker. The
template is a fresh interpreter (`python -m jobd.worker.template`) that
imports only the worker runtime and `modules`; every worker forked from it
starts with the application already imported (a fork, ~1 ms, instead of
an import), shares its code copy-on-write, and all workers of one
generation run the same code even if files change on disk. SIGHUP starts
a new template: new config and new code.

Each fork is a double fork: the intermediate child reports the worker's pid
and exits at once, so the worker is re-parented to the master (a child
subreaper) and the master reaps it directly.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Iterator
from typing import Any

from setproctitle import setproctitle

from jobd import logs
from jobd.processes import set_parent_death_signal
from jobd.routines import REGISTRY
from jobd.settings import Settings, from_json
from jobd.wire import encode_datagram
from jobd.worker.aftermath import fork_failed_hooks
from jobd.worker.main import EXIT_BOOT_ERROR, FORK_BLOCKED, WorkerSpec, worker_main

log = logging.getLogger("jobd.template")

BUILTIN_MODULES = ("jobd.failure", "jobd.maintenance")


def main(argv: list[str]) -> int:
    ctl = socket.socket(fileno=int(argv[1]))
    master_pid = int(argv[2])
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != master_pid:
        return 1
    os.environ.pop("NOTIFY_SOCKET", None)
    # The master stops the template with an "exit" message, or its death does
    # (PDEATHSIG); a signal meant for the whole process group is not for us.
    for signum in (
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGUSR1,
    ):
        signal.signal(signum, signal.SIG_IGN)
    init = _receive(ctl)
    if init is None:
        return 0
    settings = from_json(init[0]["settings"])
    generation = int(init[0]["generation"])
    setproctitle(f"jobd: template [generation {generation}]")
    logs.setup(settings.jobd.log_level, "template")
    try:
        catalog = load_application(settings)
    except BaseException as exc:
        ctl.send(encode_datagram({"op": "boot_error", "error": describe_import_error(exc)}))
        return EXIT_BOOT_ERROR
    ctl.send(encode_datagram({"op": "ready", "catalog": catalog, "pid": os.getpid()}))
    return _serve(ctl, master_pid, generation, settings)


def load_application(settings: Settings) -> dict[str, dict[str, Any]]:
    """Import the built-in and configured modules; the routine catalog."""
    # `pythonpath` goes in front; the working directory (where an application
    # run from its checkout lives) last, so that nothing in it can shadow an
    # installed package, jobd included (the template runs with `python -P`).
    for entry in reversed(settings.jobd.pythonpath):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for module in (*BUILTIN_MODULES, *settings.jobd.modules):
        importlib.import_module(module)
    # What the workers run, now and for good: a job never imports anything.
    REGISTRY.seal(settings.jobd.modules)
    catalog = REGISTRY.catalog(settings)
    for name, policy in catalog.items():
        registered = REGISTRY.get(name)
        policy["failed_hook"] = registered is not None and registered.failed_hook is not None
    return catalog


def describe_import_error(exc: BaseException) -> str:
    """One line saying what failed to import and why, plus where."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    for frame in reversed(frames):
        if "importlib" not in frame.filename:
            where = f" ({frame.filename}:{frame.lineno})"
            break
    return f"importing modules failed: {type(exc).__name__}: {exc}{where}"


def _receive(ctl: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    import json

    data, fds, _flags, _addr = socket.recv_fds(ctl, 1 << 20, 1)
    if not data:
        return None
    message: dict[str, Any] = json.loads(data)
    return message, fds


def _serve(ctl: socket.socket, master_pid: int, generation: int, settings: Settings) -> int:
    while True:
        received = _receive(ctl)
        if received is None:
            return 0
        message, fds = received
        if message.get("op") == "exit":
            return 0
        if message.get("op") == "fork" and fds:
            pool = str(message.get("pool", "default"))
            spec = WorkerSpec(int(message["slot"]), pool, generation, master_pid, settings)
            _fork_worker(ctl, fds[0], spec)
        elif message.get("op") == "failed_hooks":
            with _signals_blocked():
                try:
                    fork_failed_hooks(ctl, message, settings, generation)
                except Exception:  # a malformed order costs the hooks, not the template
                    log.exception("could not run the failed hooks of %r", message.get("job"))
        else:
            for fd in fds:
                os.close(fd)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORK_BLOCKED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _fork_worker(ctl: socket.socket, fd: int, spec: WorkerSpec) -> None:
    with _signals_blocked():
        intermediate = os.fork()
        if intermediate == 0:
            _intermediate(ctl, fd, spec)
        os.close(fd)
        os.waitpid(intermediate, 0)


def _intermediate(ctl: socket.socket, fd: int, spec: WorkerSpec) -> None:
    """In the first child: fork the worker, report its pid, exit so it is re-parented."""
    try:
        pid = os.fork()
        if pid == 0:
            ctl.close()
            os.setpgid(0, 0)
            worker_main(socket.socket(fileno=fd), spec)
        # Each worker leads a process group, so that what its jobs start dies with
        # it (workforce.py). Set on both sides: it holds before the master knows
        # the pid, whichever runs first.
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        with contextlib.suppress(OSError):
            ctl.send(encode_datagram({"op": "forked", "slot": spec.slot, "pid": pid}))
    finally:
        os._exit(0)


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except ConnectionError:
        return 0  # the master closed our socket (it stopped or died): nobody to tell


if __name__ == "__main__":
    sys.exit(run(sys.argv))
