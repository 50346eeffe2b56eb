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
a line it cannot trust (not UTF-8, not JSON, an unknown kind, a field
missing or of the wrong type, longer than `MAX_LINE`) becomes a `Malformed`
with a one-line reason, so a worker's bug costs that worker, never the
master's loop. Encoders stay f-strings: a `done` line is written once per
job, and read once: its common shape is checked in one expression, and
lines are decoded by json's scanner directly (`benchmarks/wire_cost.py`). The classes are not
`frozen` (that costs a microsecond per `done` on each side); treat them as
values.
"""

from __future__ import annotations

import json
import json.decoder
import json.encoder
import json.scanner
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobd.records import Claim

_dumps = json.JSONEncoder(separators=(",", ":")).encode
# A str's JSON text, in C: what `_dumps` does for a str after its Python-level checks.
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii
# json.loads of a bytes line is mostly Python (encoding detection, two regex
# matches around the value); the scanner it ends in, called on the str, costs
# half as much for a done line (benchmarks/wire_cost.py).
_scan: Callable[[str, int], tuple[Any, int]] = (
    json.scanner.c_make_scanner or json.scanner.py_make_scanner  # type: ignore[attr-defined]
)(json.decoder.JSONDecoder())

# The longest line a worker may send: a `done` line holds the job's result
# whole, and this is bigger than any result worth storing in a row, but it
# bounds what a worker that writes without newlines costs the master.
MAX_LINE = 64 << 20
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
    return f'{{"op":"boot_error","error":{_quote(message.error)}}}\n'.encode()


def _text(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def encode_done(done: Done) -> bytes:
    """The `done` line: an f-string, as this is written once per job."""
    if done.ok:
        result = done.result  # JSON text, quoted as a string; None for no result
        head = (
            f'{{"op":"done","id":{done.id},"ok":true,'
            f'"result":{"null" if result is None else _quote(result)}'
        )
    else:
        error = done.error
        error_json = (
            "null"
            if error is None
            else f'{{"type":{_quote(error.type)},"message":{_quote(error.message)},'
            f'"traceback":{_text(error.traceback)}}}'
        )
        head = (
            f'{{"op":"done","id":{done.id},"ok":false,"outcome":{_text(done.outcome)},'
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
    if len(line) > MAX_LINE:
        raise Malformed(f"a line of {len(line)} bytes, over the {MAX_LINE} a message may have")
    try:
        value = _loads(line.decode())
    except ValueError as exc:  # UnicodeDecodeError too
        raise Malformed(f"not JSON ({_reason(exc)}): {_excerpt(line)}") from None
    return _checked(value)


def _loads(text: str) -> Any:
    """json.loads for one UTF-8 decoded line, by the scanner first (see `_scan`)."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # no JSON value starts here: json.loads says why
        end = -1
    if end == len(text):
        return value
    return json.loads(text)  # whitespace around the value, or trailing data


def _reason(exc: ValueError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8: byte {exc.object[exc.start]:#04x} at {exc.start}"
    return str(exc)


def _checked(value: Any) -> FromWorker:
    """`from_worker_json`, with the `done` line (one per job) checked first."""
    if type(value) is dict and value.get("op") == "done":
        return _done(value)
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
    # The common line (every field there, as encode_done writes it), checked in
    # one expression; anything else takes the field-by-field path, which says
    # what is wrong. Subscripts, not .get: 0.13 us of 0.85 per line.
    try:
        id_, ok, started, finished = m["id"], m["ok"], m["started"], m["finished"]
        cpu, rss, rss_now, result = m["cpu"], m["rss"], m["rss_now"], m["result"]
    except KeyError:
        return _done_checked(m)
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


def decode_from_template(data: bytes) -> dict[str, Any]:
    """A datagram from the worker template: a JSON object with an "op", or
    Malformed with a one-line reason (the master then takes the template for
    gone: it no longer trusts what it says)."""
    try:
        value = json.loads(data)
    except ValueError as exc:  # UnicodeDecodeError is one
        raise Malformed(f"not JSON ({exc}): {_excerpt(data)}") from None
    if not isinstance(value, dict) or not isinstance(value.get("op"), str):
        raise Malformed(f"not an object with an op: {_excerpt(data)}")
    return value


def _excerpt(value: object) -> str:
    """At most 120 characters of what arrived, escaped to one line."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = repr(value) if not isinstance(value, str) else value
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 120 else text[:117] + "..."


class WorkerLines:
    """Splits a worker's byte stream into checked messages (a `Malformed` for a bad line).

    A line longer than `MAX_LINE` is a `Malformed` as soon as that much of it
    has arrived, and the rest of it is skipped; what is left when the stream
    ends is an incomplete message (`leftover`).
    """

    __slots__ = ("_pending", "_size", "_skipping")

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # the start of a line, in the chunks it came in
        self._size = 0
        self._skipping = False  # the rest of an over-long line is dropped

    def feed(self, data: bytes) -> list[FromWorker | Malformed]:
        end = data.rfind(b"\n")
        if end < 0:  # no line ends here: kept in pieces, joined once a line ends
            return self._keep(data)
        head, rest = data[:end], data[end + 1 :]
        complete = True
        if self._skipping:  # the first line ending here ends the over-long one
            self._skipping = False
            cut = head.find(b"\n")
            complete, head = cut >= 0, head[cut + 1 :]
        elif self._pending:
            self._pending.append(head)
            head = b"".join(self._pending)
        self._pending, self._size = [], 0
        messages: list[FromWorker | Malformed] = []
        if complete:
            lines = head.split(b"\n")
            messages = _lines(lines) if len(head) <= MAX_LINE else _each(decode_from_worker, lines)
        if rest:
            messages += self._keep(rest)
        return messages

    def _keep(self, data: bytes) -> list[FromWorker | Malformed]:
        if self._skipping:
            return []
        self._pending.append(data)
        self._size += len(data)
        if self._size <= MAX_LINE:
            return []
        self._pending, self._size, self._skipping = [], 0, True
        return [Malformed(f"a line of over {MAX_LINE} bytes with no end, over the limit")]

    def leftover(self) -> Malformed | None:
        """The stream ended: the incomplete last line, if one was left."""
        if not self._pending:
            return None
        start = b"".join(self._pending)
        self._pending, self._size = [], 0
        return Malformed(f"incomplete message at the end of the stream: {_excerpt(start)}")


def _lines(lines: list[bytes]) -> list[FromWorker | Malformed]:
    if len(lines) == 1:
        try:
            return [decode_from_worker(lines[0])]
        except Malformed as exc:
            return [exc]
    if len(lines) > 1:
        try:  # one decode for the batch: half the cost per message
            batch = _loads((b"[" + b",".join(lines) + b"]").decode())
        except ValueError:
            batch = None  # a garbled line among them: decode one by one
        if type(batch) is list and len(batch) == len(lines):
            return _each_value(batch)
    return _each(decode_from_worker, lines)


def _each_value(values: list[Any]) -> list[FromWorker | Malformed]:
    """`_each(_checked, values)`, one call less per message: this is the hot path."""
    messages: list[FromWorker | Malformed] = []
    append = messages.append
    for value in values:
        try:
            if type(value) is dict and value.get("op") == "done":
                append(_done(value))
            else:
                append(from_worker_json(value))
        except Malformed as exc:
            append(exc)
    return messages


def _each(decode: Callable[[Any], FromWorker], values: list[Any]) -> list[FromWorker | Malformed]:
    messages: list[FromWorker | Malformed] = []
    append = messages.append
    for value in values:
        try:
            append(decode(value))
        except Malformed as exc:
            append(exc)
    return messages
