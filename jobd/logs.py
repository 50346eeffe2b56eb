"""Logging for the master, the template and the workers.

Under systemd, when `JOURNAL_STREAM` names our stderr, each record goes to
journald through its native protocol (a datagram to
/run/systemd/journal/socket) with fields a query can match:

    journalctl -u jobd JOBD_WORKER=3           one worker
    journalctl -u jobd JOBD_JOB_ID=812         one job, every attempt

    SYSLOG_IDENTIFIER=jobd, PRIORITY, JOBD_ROLE (master/template/worker),
    JOBD_WORKER (slot), JOBD_WORKER_PID, and while a job runs JOBD_JOB_ID,
    JOBD_ROUTINE, JOBD_QUEUE, JOBD_ATTEMPT.

In a worker under systemd, what a routine prints through `sys.stdout` and
`sys.stderr` becomes journal records with the same fields, one per line
(PRIORITY 6 for stdout, 4 for stderr). Output written straight to the file
descriptors (C extensions, child processes) still reaches the journal
through the service's stream, with the worker's pid but without the fields.

Elsewhere: one line per record on stderr, `LEVEL worker 3 job 812 app:fn: msg`.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import struct
import sys

from jobd.hooks import current_job
from jobd.processes import one_line

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class Identity:
    """Who this process is, for every record it logs."""

    role = "master"
    slot: int | None = None

    @classmethod
    def fields(cls) -> dict[str, str]:
        fields = {"JOBD_ROLE": cls.role}
        if cls.slot is not None:
            fields["JOBD_WORKER"] = str(cls.slot)
            fields["JOBD_WORKER_PID"] = str(os.getpid())
        job = current_job()
        if job is not None:
            fields.update(
                JOBD_JOB_ID=str(job.id),
                JOBD_ROUTINE=job.routine,
                JOBD_QUEUE=job.queue,
                JOBD_ATTEMPT=str(job.attempt),
            )
        return fields

    @classmethod
    def prefix(cls) -> str:
        who = f"worker {cls.slot}" if cls.slot is not None else cls.role
        job = current_job()
        return f"{who} job {job.id} {job.routine}" if job is not None else who


def under_journald() -> bool:
    """True when our stderr is the journal stream systemd gave us."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def journal_datagram(fields: dict[str, str]) -> bytes:
    """The native protocol: KEY=value lines; values with newlines length-prefixed."""
    parts = []
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            parts.append(key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(key.encode() + b"=" + data + b"\n")
    return b"".join(parts)


class JournalHandler(logging.Handler):
    def __init__(self, path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.path = path
        self._sock: socket.socket | None = None
        self._pid = -1

    def _socket(self) -> socket.socket:
        if self._sock is None or self._pid != os.getpid():  # forked: our own socket
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._pid = os.getpid()
        return self._sock

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            fields = {
                "MESSAGE": message,
                "PRIORITY": str(SYSLOG_PRIORITY.get(record.levelno, 6)),
                "SYSLOG_IDENTIFIER": "jobd",
                "LOGGER": record.name,
                "CODE_FILE": record.pathname or "",
                "CODE_LINE": str(record.lineno),
                "CODE_FUNC": record.funcName or "",
                **Identity.fields(),
            }
            self.send({key: value for key, value in fields.items() if value})
        except Exception:
            self.handleError(record)

    def send(self, fields: dict[str, str]) -> None:
        try:
            self._socket().sendto(journal_datagram(fields), self.path)
        except OSError:
            # Too big for a datagram, or journald busy: the stream still works.
            os.write(2, (fields.get("MESSAGE", "") + "\n").encode("utf-8", "replace"))


class LineFormatter(logging.Formatter):
    """One line per record; what follows it (a traceback) is indented.

    Text from outside (a routine name, an exception's message) cannot forge a
    record: control characters in the message are escaped, and every line
    after the first, a traceback's included, starts with two spaces, which no
    record does.
    """

    def format(self, record: logging.LogRecord) -> str:
        record.jobd_who = one_line(Identity.prefix())
        return super().format(record).replace("\n", "\n  ")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = one_line(record.message)
        return super().formatMessage(record)


class JournalLines(io.TextIOBase):
    """sys.stdout/sys.stderr of a worker under journald: a record per line."""

    def __init__(self, handler: JournalHandler, priority: int, stream: str) -> None:
        self._handler = handler
        self._priority = str(priority)
        self._stream = stream
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self._emit(self._partial)
            self._partial = ""

    def _emit(self, line: str) -> None:
        self._handler.send(
            {
                "MESSAGE": line,
                "PRIORITY": self._priority,
                "SYSLOG_IDENTIFIER": "jobd",
                "JOBD_OUTPUT": self._stream,
                **Identity.fields(),
            }
        )


def setup(level: str, role: str, slot: int | None = None) -> None:
    """Configure the root logger for this process (master, template or worker)."""
    Identity.role = role
    Identity.slot = slot
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if under_journald():
        journal = JournalHandler()
        journal.setFormatter(logging.Formatter("%(message)s"))
        handler = journal
        if role == "worker":
            sys.stdout = JournalLines(journal, 6, "stdout")
            sys.stderr = JournalLines(journal, 4, "stderr")
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(LineFormatter("%(levelname)s %(jobd_who)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.INFO))


def set_level(level: str) -> None:
    logging.getLogger().setLevel(LEVELS.get(level, logging.INFO))
