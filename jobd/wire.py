"""Messages between the master, the worker template and the workers.

Master <-> worker: one JSON object per line on a stream socketpair. Lines
keep framing trivial (JSON text never contains a raw newline) and let a
worker read a pipelined job while the master writes the next.

    master -> worker  {"op":"run","id":..,"routine":..,"queue":..,"attempt":..,
                       "max_attempts":..,"enqueued_at":..,"args":[..],"kwargs":{..}}
                      {"op":"stop"}                 finish the current job, exit
    worker -> master  {"op":"hello","pid":..}       booted, ready for jobs
                      {"op":"done","id":..,"ok":true,"result":"<json text>",
                       "started":..,"finished":..,"cpu":..,"rss":..}
                      {"op":"done","id":..,"ok":false,"outcome":"error",
                       "error":{"type":..,"message":..,"traceback":..}, ...}
                      {"op":"boot_error","error":"..."}

The master never decodes job arguments: it splices the stored JSON text
into the run message, and the worker returns a result as JSON *text*
(`"result"` is a string), which the master stores as is.

Master <-> template: JSON datagrams on a SOCK_SEQPACKET pair, so a fork
request can carry the worker's socket as SCM_RIGHTS.

    master -> template  {"op":"init","settings":{..},"generation":..,"master_pid":..}
                        {"op":"fork","slot":..} + fd    {"op":"exit"}
    template -> master  {"op":"ready","catalog":{..}}   {"op":"boot_error","error":".."}
                        {"op":"forked","slot":..,"pid":..}

Worker -> master messages are typed here, one slotted dataclass per kind
(`Hello`, `Horse`, `Done`, `BootError`), each with the one encoder every
sender uses (`encode_hello`, ...). The master reads them only through
`decode_from_worker` (or `WorkerLines`, which frames and decodes a stream):
a line it cannot trust becomes a `Malformed` with a one-line reason, so a
worker's bug costs that worker, never the master's loop. Encoders stay
f-strings: a `done` line is written once per job. The classes are not
`frozen` (that costs a microsecond per `done` on each side); treat them as
values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobd.records import Claim

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_names: dict[str, str] = {}
STOP = b'{"op":"stop"}\n'


def _quoted(name: str) -> str:
    quoted = _names.get(name)
    if quoted is None:
        quoted = _names[name] = _dumps(name)
    return quoted


def run_message(claim: Claim) -> bytes:
    """The run order for a claimed job, spliced from its stored JSON text."""
    return (
        f'{{"op":"run","id":{claim.id},"routine":{_quoted(claim.routine)},'
        f'"queue":{_quoted(claim.queue)},"attempt":{claim.attempt},'
        f'"max_attempts":{claim.max_attempts},"enqueued_at":{claim.enqueued_at!r},'
        f'"args":{claim.args_json},"kwargs":{claim.kwargs_json}}}\n'
    ).encode()


def encode(message: dict[str, Any]) -> bytes:
    return _dumps(message).encode() + b"\n"


def encode_datagram(message: dict[str, Any]) -> bytes:
    return _dumps(message).encode()


class LineReader:
    """Splits a byte stream into decoded JSON messages."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        if self._buffer:
            data = self._buffer + data
        lines = data.split(b"\n")
        self._buffer = lines.pop()
        if len(lines) > 1:
            try:  # one decode for the batch: half the cost per message
                batch: list[dict[str, Any]] = json.loads(b"[" + b",".join(lines) + b"]")
                if len(batch) == len(lines):
                    return batch
            except ValueError:
                pass  # a garbled line among them: decode one by one
        messages = []
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                message = {"op": "garbled", "line": line[:200].decode("utf-8", "replace")}
            messages.append(message)
        return messages


# -- worker -> master --------------------------------------------------------


class Malformed(ValueError):
    """A worker's line the master cannot trust; `str()` is a one-line reason."""


@dataclass(slots=True)
class Hello:
    """Booted, ready for jobs."""

    pid: int
    slot: int | None = None


@dataclass(slots=True)
class Horse:
    """The isolated process (and process group) running job `id`."""

    id: int
    pid: int


@dataclass(slots=True)
class JobError:
    type: str
    message: str
    traceback: str | None = None


@dataclass(slots=True)
class Done:
    """An attempt ended; `result` is JSON text, `outcome` is set when not `ok`."""

    id: int
    ok: bool
    started: float
    finished: float
    cpu: float | None = None
    rss: int | None = None
    rss_now: int | None = None
    result: str | None = None
    outcome: str | None = None
    error: JobError | None = None


@dataclass(slots=True)
class BootError:
    """The worker cannot boot (a worker_boot hook raised)."""

    error: str


FromWorker = Hello | Horse | Done | BootError


def encode_hello(message: Hello) -> bytes:
    slot = "null" if message.slot is None else message.slot
    return f'{{"op":"hello","pid":{message.pid},"slot":{slot}}}\n'.encode()


def encode_horse(message: Horse) -> bytes:
    return f'{{"op":"horse","id":{message.id},"pid":{message.pid}}}\n'.encode()


def encode_boot_error(message: BootError) -> bytes:
    return f'{{"op":"boot_error","error":{_dumps(message.error)}}}\n'.encode()


def encode_done(done: Done) -> bytes:
    """The `done` line: an f-string, as this is written once per job."""
    if done.ok:
        head = f'{{"op":"done","id":{done.id},"ok":true,"result":{_dumps(done.result)}'
    else:
        error = done.error
        error_json = (
            "null"
            if error is None
            else f'{{"type":{_dumps(error.type)},"message":{_dumps(error.message)},'
            f'"traceback":{_dumps(error.traceback)}}}'
        )
        head = (
            f'{{"op":"done","id":{done.id},"ok":false,"outcome":{_dumps(done.outcome)},'
            f'"error":{error_json}'
        )
    # repr of a float is its shortest round-trip text, which JSON reads back as is
    cpu, rss, rss_now = done.cpu, done.rss, done.rss_now
    return (
        f'{head},"started":{done.started!r},"finished":{done.finished!r},'
        f'"cpu":{"null" if cpu is None else repr(cpu)},'
        f'"rss":{"null" if rss is None else rss},'
        f'"rss_now":{"null" if rss_now is None else rss_now}}}\n'
    ).encode()


def decode_from_worker(line: bytes) -> FromWorker:
    """One line from a worker, checked; raises `Malformed` saying what is wrong."""
    try:
        value = json.loads(line)
    except ValueError as exc:  # UnicodeDecodeError too
        raise Malformed(f"not JSON ({exc}): {_excerpt(line)}") from None
    return from_worker_json(value)


def from_worker_json(value: Any) -> FromWorker:
    """A decoded JSON value, checked as a worker -> master message."""
    if type(value) is not dict:
        raise Malformed(f"not a JSON object: {_excerpt(value)}")
    op = value.get("op")
    check = _CHECKS.get(op) if type(op) is str else None
    if check is None:
        raise Malformed(f"unknown kind {_excerpt(op)}")
    return check(value)


def _hello(m: dict[str, Any]) -> Hello:
    return Hello(_field(m, "hello", "pid", int), _optional(m, "hello", "slot", int))


def _horse(m: dict[str, Any]) -> Horse:
    return Horse(_field(m, "horse", "id", int), _field(m, "horse", "pid", int))


def _boot_error(m: dict[str, Any]) -> BootError:
    return BootError(_field(m, "boot_error", "error", str))


def _done(m: dict[str, Any]) -> Done:
    # The common line, checked in one expression; anything else takes the
    # field-by-field path, which says what is wrong.
    get = m.get
    id_, ok, started, finished = get("id"), get("ok"), get("started"), get("finished")
    cpu, rss, rss_now, result = get("cpu"), get("rss"), get("rss_now"), get("result")
    if (
        ok is True
        and type(id_) is int
        and type(started) is float
        and type(finished) is float
        and (cpu is None or type(cpu) is float)
        and (rss is None or type(rss) is int)
        and (rss_now is None or type(rss_now) is int)
        and (result is None or type(result) is str)
    ):
        return Done(id_, True, started, finished, cpu, rss, rss_now, result)
    return _done_checked(m)


def _done_checked(m: dict[str, Any]) -> Done:
    ok = _field(m, "done", "ok", bool)
    error = m.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise Malformed(f"done: field 'error' is {type(error).__name__}, not an object")
        error = JobError(
            _field(error, "done.error", "type", str),
            _field(error, "done.error", "message", str),
            _optional(error, "done.error", "traceback", str),
        )
    return Done(
        id=_field(m, "done", "id", int),
        ok=ok,
        started=_field(m, "done", "started", float),
        finished=_field(m, "done", "finished", float),
        cpu=_optional(m, "done", "cpu", float),
        rss=_optional(m, "done", "rss", int),
        rss_now=_optional(m, "done", "rss_now", int),
        result=_optional(m, "done", "result", str),
        outcome=None if ok else (_optional(m, "done", "outcome", str) or "error"),
        error=error,
    )


_CHECKS: dict[str, Callable[[dict[str, Any]], FromWorker]] = {
    "hello": _hello,
    "horse": _horse,
    "done": _done,
    "boot_error": _boot_error,
}


def _field(m: dict[str, Any], kind: str, name: str, cls: type[Any]) -> Any:
    if name not in m:
        raise Malformed(f"{kind}: missing field {name!r}")
    value = _optional(m, kind, name, cls)
    if value is None:
        raise Malformed(f"{kind}: field {name!r} is null")
    return value


def _optional(m: dict[str, Any], kind: str, name: str, cls: type[Any]) -> Any:
    value = m.get(name)
    if value is None or type(value) is cls:
        return value
    if cls is float and type(value) is int:
        return float(value)
    raise Malformed(f"{kind}: field {name!r} is {type(value).__name__}, not {cls.__name__}")


def _excerpt(value: object) -> str:
    """At most 120 characters of what arrived, escaped to one line."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = repr(value) if not isinstance(value, str) else value
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 120 else text[:117] + "..."


class WorkerLines:
    """Splits a worker's byte stream into checked messages (a `Malformed` for a bad line)."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[FromWorker | Malformed]:
        if self._buffer:
            data = self._buffer + data
        lines = data.split(b"\n")
        self._buffer = lines.pop()
        if len(lines) > 1:
            try:  # one decode for the batch: half the cost per message
                batch = json.loads(b"[" + b",".join(lines) + b"]")
            except ValueError:
                batch = None  # a garbled line among them: decode one by one
            if isinstance(batch, list) and len(batch) == len(lines):
                return _each(from_worker_json, batch)
        return _each(decode_from_worker, lines)


def _each(decode: Callable[[Any], FromWorker], values: list[Any]) -> list[FromWorker | Malformed]:
    messages: list[FromWorker | Malformed] = []
    append = messages.append
    for value in values:
        try:
            append(decode(value))
        except Malformed as exc:
            append(exc)
    return messages
