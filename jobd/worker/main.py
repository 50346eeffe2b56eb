"""A worker process: after-fork hygiene, then one job at a time until told to stop.

Workers are forked by the template (see template.py) through a short-lived
intermediate child, so the kernel hands them to the master, which is a
child subreaper: the master reaps its workers with waitpid like any child.
Only once the master is its parent does a worker ask for SIGKILL on the
master's death (PR_SET_PDEATHSIG is tied to the parent at the time of the
call), and it checks the parent again afterwards to close the race with a
master that died in between.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from setproctitle import setproctitle

from jobd import logs
from jobd.errors import JobTerminated
from jobd.hooks import WorkerInfo, registered_hooks
from jobd.processes import one_line, set_parent_death_signal
from jobd.settings import Settings
from jobd.wire import BootError, Hello, LineReader, encode_boot_error, encode_hello
from jobd.worker.execute import Runner, malformed
from jobd.worker.limits import METER

log = logging.getLogger("jobd.worker")

EXIT_OK = 0
EXIT_BOOT_ERROR = 3
EXIT_ORPHANED = 4

# Signals the template blocks across fork; the worker unblocks them once its
# own handlers are in place.
FORK_BLOCKED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1}


@dataclass(frozen=True)
class WorkerSpec:
    """Who a new worker is: what the template knows when it forks one."""

    slot: int
    pool: str
    generation: int
    master_pid: int
    settings: Settings

    @property
    def queues(self) -> tuple[str, ...]:
        for pool in self.settings.pool_specs():
            if pool.name == self.pool:
                return pool.queues
        return ()


def worker_main(sock: socket.socket, spec: WorkerSpec) -> NoReturn:
    """Entry point in the forked worker; never returns."""
    code = 70
    try:
        code = _serve(sock, spec)
    except JobTerminated:
        code = 0
    except (BrokenPipeError, ConnectionResetError):
        # The master's end of the socket is gone: it died (its SIGKILL to us,
        # PR_SET_PDEATHSIG, may land a moment later) or dropped us. Nothing to
        # report to anyone: the attempt we held is the rescue's, as for a kill.
        code = EXIT_ORPHANED
    except BaseException:
        log.exception("worker %s crashed", spec.slot)
    finally:
        logging.shutdown()
    os._exit(code)


def _serve(sock: socket.socket, spec: WorkerSpec) -> int:
    if not _adopted_by(spec.master_pid):
        return EXIT_ORPHANED
    _install_signals()
    slot, settings = spec.slot, spec.settings
    title = f"jobd: worker {slot} [{','.join(spec.queues)}]"
    setproctitle(f"{title} idle")
    logs.setup(settings.jobd.log_level, "worker", slot)
    worker = WorkerInfo(slot=slot, pid=os.getpid(), generation=spec.generation)
    try:
        for hooks in registered_hooks():
            hooks.worker_boot(worker)
    except Exception as exc:
        log.exception("worker_boot hook failed")
        sock.sendall(encode_boot_error(BootError(f"worker_boot hook: {type(exc).__name__}: {exc}")))
        return EXIT_BOOT_ERROR
    sock.sendall(encode_hello(Hello(worker.pid, slot)))
    return _job_loop(sock, Runner(worker, settings, sock.sendall), title)


def _adopted_by(master_pid: int, timeout: float = 5.0) -> bool:
    """Wait until the intermediate child has exited and the master adopted us."""
    deadline = time.monotonic() + timeout
    while os.getppid() != master_pid:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0002)
    set_parent_death_signal(signal.SIGKILL)
    return os.getppid() == master_pid


def _install_signals() -> None:
    # Stop orders come from the master over the socket; a terminal's ^C or a
    # SIGHUP to the process group is the master's business, not ours.
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORK_BLOCKED)


def _terminate(signum: int, frame: Any) -> None:
    # Unwinds the running job (its finally blocks run), then the worker exits.
    raise JobTerminated()


def _job_loop(sock: socket.socket, runner: Runner, title: str) -> int:
    reader = LineReader()
    METER.reset_peak()  # and after each reply: each attempt's peak is its own
    while True:
        data = sock.recv(262144)
        if not data:
            return EXIT_OK  # the master closed our socket: it is gone or done with us
        for message in reader.feed(data):
            op = message.get("op")
            if op == "run":
                setproctitle(f"{title} busy {one_line(str(message['routine']))} #{message['id']}")
                sock.sendall(runner.run(message))
                METER.reset_peak()
                setproctitle(f"{title} idle")
            elif op == "stop":
                return EXIT_OK
            elif op == "garbled":
                reply = malformed(message["line"])
                if reply is not None:
                    sock.sendall(reply)
            else:
                log.error("unexpected message from the master: %r", message)
