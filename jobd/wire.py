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
"""

from __future__ import annotations

import json
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
