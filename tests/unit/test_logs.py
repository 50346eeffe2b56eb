"""Logging: the journal's native protocol and the plain-line fallback."""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobd import logs
from jobd.cli.inspection import journal_command
from jobd.hooks import JobContext, WorkerInfo, set_current_job


def parse_datagram(data: bytes) -> dict[str, str]:
    """The inverse of the native protocol, as journald reads it."""
    fields = {}
    while data:
        line, _, rest = data.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            data = rest
        else:
            (size,) = struct.unpack("<Q", rest[:8])
            fields[line.decode()] = rest[8 : 8 + size].decode()
            data = rest[8 + size + 1 :]
    return fields


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "journal.sock"))
    sock.settimeout(5)
    yield sock
    sock.close()
    logs.Identity.role, logs.Identity.slot = "master", None
    set_current_job(None)


def job() -> JobContext:
    return JobContext(812, "app.jobs:resize", "images", 2, 5, 0.0, WorkerInfo(3, 99, 1))


def test_records_carry_the_worker_and_job_fields(journal: socket.socket) -> None:
    handler = logs.JournalHandler(journal.getsockname())
    handler.setFormatter(logging.Formatter("%(message)s"))
    logs.Identity.role, logs.Identity.slot = "worker", 3
    set_current_job(job())
    record = logging.LogRecord("app", logging.WARNING, __file__, 10, "line one\nline two", (), None)
    handler.emit(record)
    fields = parse_datagram(journal.recv(65536))
    assert fields["MESSAGE"] == "line one\nline two"  # newlines survive: length-prefixed
    assert fields["PRIORITY"] == "4" and fields["SYSLOG_IDENTIFIER"] == "jobd"
    assert (fields["JOBD_WORKER"], fields["JOBD_WORKER_PID"]) == ("3", str(os.getpid()))
    assert (fields["JOBD_JOB_ID"], fields["JOBD_ROUTINE"]) == ("812", "app.jobs:resize")
    assert (fields["JOBD_QUEUE"], fields["JOBD_ATTEMPT"]) == ("images", "2")


def test_printed_lines_become_tagged_records(journal: socket.socket) -> None:
    handler = logs.JournalHandler(journal.getsockname())
    logs.Identity.role, logs.Identity.slot = "worker", 1
    set_current_job(job())
    out = logs.JournalLines(handler, 6, "stdout")
    print("first", file=out)
    print("second, no newline yet", end="", file=out)
    out.flush()
    first = parse_datagram(journal.recv(65536))
    second = parse_datagram(journal.recv(65536))
    assert (first["MESSAGE"], first["JOBD_OUTPUT"], first["PRIORITY"]) == ("first", "stdout", "6")
    assert second["MESSAGE"] == "second, no newline yet" and second["JOBD_JOB_ID"] == "812"


def test_journald_is_used_only_when_stderr_is_the_journal_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    st = os.fstat(sys.stderr.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    assert logs.under_journald()
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
    assert not logs.under_journald()  # stderr was redirected elsewhere
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not logs.under_journald()


def test_plain_lines_name_the_worker_and_job() -> None:
    formatter = logs.LineFormatter("%(levelname)s %(jobd_who)s: %(message)s")
    logs.Identity.role, logs.Identity.slot = "worker", 3
    set_current_job(job())
    try:
        record = logging.LogRecord("app", logging.INFO, __file__, 1, "resized", (), None)
        assert formatter.format(record) == "INFO worker 3 job 812 app.jobs:resize: resized"
    finally:
        set_current_job(None)
        logs.Identity.role, logs.Identity.slot = "master", None


def test_plain_lines_cannot_be_forged_by_a_message_or_a_traceback() -> None:
    # A routine's error message with a newline made a second, made-up record
    # (issue 21 A4): the message is escaped, a traceback's lines indented.
    formatter = logs.LineFormatter("%(levelname)s %(jobd_who)s: %(message)s")
    forged = "boom\nINFO master: stopped: 0 succeeded\x00"
    try:
        raise ValueError(forged)
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "jobd", logging.ERROR, __file__, 1, "failed: %s", (forged,), exc_info
    )
    lines = formatter.format(record).split("\n")
    assert lines[0] == "ERROR master: failed: boom\\x0aINFO master: stopped: 0 succeeded\\x00"
    assert all(line.startswith("  ") for line in lines[1:]) and len(lines) > 2
    assert "  INFO master: stopped: 0 succeeded\x00" in lines
    assert not any(line.startswith(("INFO", "ERROR")) for line in lines[1:])


def test_jobd_logs_builds_the_journalctl_matches() -> None:
    assert journal_command("/bin/journalctl", "jobd", 3, None, True, 50) == [
        "/bin/journalctl", "--unit", "jobd", "JOBD_WORKER=3", "--follow", "--lines", "50",
    ]  # fmt: skip
    assert journal_command("journalctl", "app-jobs", None, 812, False, None) == [
        "journalctl", "--unit", "app-jobs", "JOBD_JOB_ID=812",
    ]  # fmt: skip
