"""The master/worker messages."""

from __future__ import annotations

import json

from jobd.records import Claim
from jobd.wire import LineReader, encode, run_message


def test_run_message_splices_stored_json_verbatim() -> None:
    c = Claim(12, "app.jobs:resize", "images", 3, 2, 5, '[1,"a\\nb"]', '{"w":640}', 1.25, 2.5)
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
