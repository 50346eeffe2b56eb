"""The master/worker messages."""

from __future__ import annotations

import json

import pytest

from jobd import wire
from jobd.records import Claim
from jobd.wire import (
    BootError,
    Done,
    Hello,
    Horse,
    JobError,
    LineReader,
    Malformed,
    WorkerLines,
    decode_from_worker,
    encode,
    encode_boot_error,
    encode_done,
    encode_hello,
    encode_horse,
    run_message,
)


def test_run_message_splices_stored_json_verbatim() -> None:
    c = Claim(12, "app.jobs:resize", "images", 3, 2, 5, '[1,"a\\nb"]', '{"w":640}', 1.25, 2.5, 2)
    message = run_message(c)
    assert message.endswith(b"\n") and message.count(b"\n") == 1
    assert json.loads(message) == {
        "op": "run",
        "id": 12,
        "routine": "app.jobs:resize",
        "queue": "images",
        "attempt": 2,
        "max_attempts": 5,
        "enqueued_at": 1.25,
        "args": [1, "a\nb"],
        "kwargs": {"w": 640},
    }


def test_line_reader_reassembles_split_messages() -> None:
    reader = LineReader()
    data = encode({"op": "hello", "pid": 1}) + encode({"op": "done", "id": 2, "result": "[1]"})
    assert reader.feed(data[:5]) == []
    messages = reader.feed(data[5:])
    assert [m["op"] for m in messages] == ["hello", "done"]
    assert messages[1]["result"] == "[1]"


def test_a_garbled_line_is_reported_not_raised() -> None:
    (message,) = LineReader().feed(b'{"op":"run","id":5,"args":[oops}\n')
    assert message["op"] == "garbled" and message["line"].startswith('{"op":"run","id":5')


# -- worker -> master: the encoders and the checked decoder ----------------------------

FAILED = Done(
    7, False, 1.5, 2.25, 0.01, 5 << 20, 4 << 20, None, "soft_timeout",
    JobError("jobd.JobTimeout", 'over "10s" \u2603', "Traceback ...\n"),
)  # fmt: skip
MESSAGES = [
    Hello(41, 3),
    Hello(41),
    Horse(7, 4242),
    BootError("worker_boot hook: RuntimeError: no\nway"),
    Done(7, True, 1800000000.123456, 1800000000.5, 0.000843, 23 << 20, 22 << 20, '{"a":[1]}'),
    Done(8, True, 1.0, 2.0),
    FAILED,
    Done(9, False, 1.0, 2.0, outcome="killed", error=JobError("SIGKILL", "died")),
]


def encoded(message: object) -> bytes:
    encoders = {Hello: encode_hello, Horse: encode_horse, BootError: encode_boot_error}
    return encoders.get(type(message), encode_done)(message)  # type: ignore[operator]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_each_encoder_is_read_back_by_the_checked_decoder(message: object) -> None:
    line = encoded(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_from_worker(line[:-1]) == message
    assert WorkerLines().feed(line) == [message]


def test_worker_lines_reassemble_split_and_batched_messages() -> None:
    data = b"".join(encoded(m) for m in MESSAGES)
    reader = WorkerLines()
    out = []
    for n in range(0, len(data), 7):
        out += reader.feed(data[n : n + 7])
    assert out == MESSAGES
    assert WorkerLines().feed(data) == MESSAGES  # one batch
    assert reader.leftover() is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"op":"done","id":5,"ok":true,"star', "not JSON (Unterminated string"),
        (b'{"op":"done","id":5', "not JSON (Expecting ',' delimiter"),
        (b"", "not JSON (Expecting value"),
        (b'{"op":"hello","pid":1} trailing', "not JSON (Extra data"),
        (b'{"op":"hello","pid":"\xff\xfe"}', "not JSON (not UTF-8: byte 0xff at 21)"),
        (b"[1,2]", "not a JSON object: [1, 2]"),
        (b'{"pid":1}', "unknown kind None"),
        (b'{"op":"goodbye"}', "unknown kind goodbye"),
        (b'{"op":7}', "unknown kind 7"),
        (b'{"op":"hello"}', "hello: missing field 'pid'"),
        (b'{"op":"hello","pid":null}', "hello: field 'pid' is null"),
        (b'{"op":"hello","pid":"1"}', "hello: field 'pid' is str, not int"),
        (b'{"op":"hello","pid":1,"slot":1.5}', "hello: field 'slot' is float, not int"),
        (b'{"op":"horse","id":1}', "horse: missing field 'pid'"),
        (b'{"op":"boot_error","error":3}', "boot_error: field 'error' is int, not str"),
        (b'{"op":"done","id":1,"started":1.0,"finished":2.0}', "done: missing field 'ok'"),
        (b'{"op":"done","id":1,"ok":"yes","started":1.0,"finished":2.0}', "field 'ok' is str"),
        (b'{"op":"done","id":"1","ok":true,"started":1.0,"finished":2.0}', "field 'id' is str"),
        (b'{"op":"done","id":1,"ok":true,"finished":2.0}', "done: missing field 'started'"),
        (b'{"op":"done","id":1,"ok":true,"started":1.0,"finished":2.0,"rss":1.5}', "'rss' is f"),
        (b'{"op":"done","id":1,"ok":true,"started":1,"finished":2,"result":[1]}', "'result' is l"),
        (b'{"op":"done","id":1,"ok":false,"started":1,"finished":2,"error":"x"}', "'error' is str"),
        (
            b'{"op":"done","id":1,"ok":false,"started":1,"finished":2,"error":{"type":"E"}}',
            "done.error: missing field 'message'",
        ),
    ],
)
def test_the_decoder_says_what_is_wrong_in_one_line(line: bytes, reason: str) -> None:
    with pytest.raises(Malformed) as caught:
        decode_from_worker(line)
    assert reason in str(caught.value) and "\n" not in str(caught.value)
    # in a stream, and in a batch with good lines around it, it stands in its place
    hello = encode_hello(Hello(1))
    assert [str(m) if isinstance(m, Malformed) else m for m in WorkerLines().feed(
        hello + line + b"\n" + hello
    )] == [Hello(1), str(caught.value), Hello(1)]  # fmt: skip


def test_the_reason_quotes_at_most_a_short_excerpt() -> None:
    with pytest.raises(Malformed) as caught:
        decode_from_worker(b"x" * 10_000)
    assert len(str(caught.value)) < 200


def test_ints_are_read_as_floats_where_floats_are_due() -> None:
    line = b'{"op":"done","id":1,"ok":true,"started":1,"finished":2,"cpu":0}'
    assert decode_from_worker(line) == Done(1, True, 1.0, 2.0, 0.0)


def test_an_over_long_line_is_malformed_before_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "MAX_LINE", 100)
    reader = WorkerLines()
    assert reader.feed(b"x" * 60) == []
    (over,) = reader.feed(b"x" * 60)  # over the limit, and no end yet: said at once
    assert isinstance(over, Malformed) and "over the limit" in str(over)
    assert reader.feed(b"x" * 500) == []  # the rest of it is skipped
    assert reader.feed(b"xx\n" + encode_hello(Hello(2))) == [Hello(2)]
    (whole,) = WorkerLines().feed(b"y" * 150 + b"\n")
    assert isinstance(whole, Malformed) and "a line of 150 bytes" in str(whole)


def test_a_stream_that_ends_mid_line_leaves_an_incomplete_message() -> None:
    reader = WorkerLines()
    assert reader.feed(encode_hello(Hello(1)) + b'{"op":"done","id":3') == [Hello(1)]
    left = reader.leftover()
    assert isinstance(left, Malformed) and "incomplete message at the end" in str(left)
    assert '{"op":"done","id":3' in str(left)
