"""Processes and their channels: the launcher, the worker template process, a worker's socket.

`Launcher` is everything the master does to processes: start a template,
send signals, reap. The real one is here; the unit tests pass a fake one
and drive the other ends of real socketpairs themselves.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import sys
from typing import Any, Protocol

from jobd.processes import set_child_subreaper
from jobd.settings import Settings, to_json
from jobd.supervisor.signals import HANDLED
from jobd.wire import FromWorker, Malformed, WorkerLines, decode_from_template, encode_datagram


class Channel:
    """The master's end of one worker's socket: non-blocking, line-framed."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._reader = WorkerLines()
        self._outbox = bytearray()

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> list[FromWorker | Malformed] | None:
        """Messages that arrived, each checked (wire.py: a `Malformed` for a line that
        cannot be trusted); None once the worker's end is closed."""
        try:
            data = self.sock.recv(262144)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not data:
            return None
        return self._reader.feed(data)

    def send(self, data: bytes) -> None:
        """Queue `data`; what the socket does not take now waits in the outbox."""
        if self._outbox:
            self._outbox += data
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the worker is gone; its death is noticed by the reaper
        if sent < len(data):
            self._outbox += data[sent:]

    @property
    def wants_write(self) -> bool:
        return bool(self._outbox)

    def flush(self) -> None:
        try:
            sent = self.sock.send(self._outbox)
        except BlockingIOError:
            return
        except OSError:
            self._outbox.clear()
            return
        del self._outbox[:sent]

    def leftover(self) -> Malformed | None:
        """Once closed: the incomplete message the worker left, if any."""
        return self._reader.leftover()

    def close(self) -> None:
        self.sock.close()


class Template(Protocol):
    pid: int
    generation: int

    def fileno(self) -> int: ...

    def receive(self) -> list[dict[str, Any]] | None: ...

    def fork_worker(self, slot: int, pool: str) -> Channel: ...

    def run_failed_hooks(self, ended: dict[str, Any]) -> None: ...

    def stop(self) -> None: ...


class Launcher(Protocol):
    def start_template(self, settings: Settings, generation: int) -> Template: ...

    def kill(self, pid: int, signum: int) -> None: ...

    def kill_group(self, pgid: int, signum: int) -> None: ...

    def rss(self, pid: int, with_children: bool = False) -> int | None: ...

    def reap(self) -> list[tuple[int, int]]: ...


class TemplateProcess:
    """`python -m jobd.worker.template`, talking over a SEQPACKET socketpair."""

    def __init__(self, settings: Settings, generation: int) -> None:
        self.generation = generation
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        os.set_inheritable(theirs.fileno(), True)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
        }
        argv = [
            sys.executable,
            "-P",  # no working directory in front of sys.path (it goes last: template.py)
            "-m",
            "jobd.worker.template",
            str(theirs.fileno()),
            str(os.getpid()),
        ]
        try:
            self.pid = os.posix_spawn(sys.executable, argv, env, setsigmask=(), setsigdef=HANDLED)
        finally:
            theirs.close()
        self.ctl = ours
        message = {
            "op": "init",
            "settings": to_json(settings),
            "generation": generation,
            "master_pid": os.getpid(),
        }
        self.ctl.send(encode_datagram(message))
        self.ctl.setblocking(False)

    def fileno(self) -> int:
        return self.ctl.fileno()

    def receive(self) -> list[dict[str, Any]] | None:
        messages: list[dict[str, Any]] = []
        while True:
            try:
                data = self.ctl.recv(1 << 20)
            except BlockingIOError:
                return messages
            except OSError:
                return None
            if not data:
                return messages or None
            messages.append(decode_from_template(data))

    def fork_worker(self, slot: int, pool: str) -> Channel:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            order = encode_datagram({"op": "fork", "slot": slot, "pool": pool})
            socket.send_fds(self.ctl, [order], [theirs.fileno()])
        finally:
            theirs.close()
        return Channel(ours)

    def run_failed_hooks(self, ended: dict[str, Any]) -> None:
        """The application's job_failed hooks for an attempt its worker could not
        report (worker/aftermath.py); best effort: a template gone skips them."""
        with contextlib.suppress(OSError):
            self.ctl.send(encode_datagram({"op": "failed_hooks", **ended}))

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.ctl.send(encode_datagram({"op": "exit"}))
        self.ctl.close()


class ProcessLauncher:
    """The real thing: processes, signals and waitpid."""

    def __init__(self) -> None:
        # Workers are forked by the template through an intermediate child that
        # exits at once; as a subreaper the master inherits them (template.py).
        set_child_subreaper()

    def start_template(self, settings: Settings, generation: int) -> Template:
        return TemplateProcess(settings, generation)

    def kill(self, pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    def kill_group(self, pgid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signum)

    def rss(self, pid: int, with_children: bool = False) -> int | None:
        """Current resident memory of a process (and its descendants), or None if gone."""
        import psutil

        try:
            process = psutil.Process(pid)
            total = int(process.memory_info().rss)
            if with_children:
                for child in process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        total += int(child.memory_info().rss)
            return total
        except psutil.Error:
            return None

    def reap(self) -> list[tuple[int, int]]:
        """Every child that has exited, until none is left (WNOHANG).

        Level-triggered on purpose: SIGCHLD only says "at least one child
        changed", several exits can share one signal, so the loop asks the
        kernel until it says no more.
        """
        reaped: list[tuple[int, int]] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return reaped
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if pid == 0:
                return reaped
            reaped.append((pid, status))


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
