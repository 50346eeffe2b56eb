"""What a worker's message costs to encode (in the worker) and decode (in the master).

    python benchmarks/wire_cost.py

The `done` line is the hot path: one per job, encoded by the worker, read
and checked by the master. Each figure is CPU microseconds per message, the
best of many rounds (this machine is shared: the best round is the one
least disturbed). The "untyped" rows are what was done before the typed
messages: the worker's own f-string, and the master's `LineReader` (dicts,
no checks).
"""

from __future__ import annotations

import json
import time
import timeit
from collections.abc import Callable

from jobd import wire
from jobd.records import Claim

ROUNDS, NUMBER = 25, 20_000
ARGS = (812, None, 1800000000.123456, 1800000000.125, 0.000843, 23_000_000, 22_000_000)
WITH_RESULT = (812, '{"width":640,"path":"/img/812.png"}', *ARGS[2:])
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def untyped_done(
    id_: int, result: str | None, started: float, finished: float, cpu: float, rss: int, now: int
) -> bytes:
    """The worker's f-string before the typed messages."""
    return (
        f'{{"op":"done","id":{id_},"ok":true,"result":{_dumps(result)},'
        f'"started":{started!r},"finished":{finished!r},"cpu":{cpu!r},'
        f'"rss":{rss},"rss_now":{now}}}\n'
    ).encode()


def typed_done(
    id_: int, result: str | None, started: float, finished: float, cpu: float, rss: int, now: int
) -> bytes:
    return wire.encode_done(wire.Done(id_, True, started, finished, cpu, rss, now, result))


def attempt(claim: Claim, line: bytes) -> object:
    """Checked decode, then the attempt record the master builds from it."""
    from jobd.supervisor.outcomes import attempt_from_done

    (done,) = wire.WorkerLines().feed(line)
    return attempt_from_done(claim, done, 1, 1000)  # type: ignore[arg-type]


def best(cases: dict[str, tuple[Callable[[], object], int]]) -> dict[str, float]:
    """Microseconds per message of each case, its rounds interleaved with the others'."""
    times = {name: float("inf") for name in cases}
    for _ in range(ROUNDS):
        for name, (call, per_call) in cases.items():
            seconds = timeit.Timer(call, timer=time.process_time).timeit(NUMBER)
            times[name] = min(times[name], seconds / NUMBER / per_call * 1e6)
    return times


def main() -> None:
    line = typed_done(*ARGS)
    assert line == untyped_done(*ARGS), "the typed encoder writes the same line"
    batch = line * 16
    claim = Claim(812, "app.jobs:work", "default", 0, 1, 3, "[]", "{}", 1.0, 1.0, 1)
    cases: dict[str, tuple[Callable[[], object], int]] = {
        "encode done, untyped f-string": (lambda: untyped_done(*ARGS), 1),
        "encode done, Done + encode_done": (lambda: typed_done(*ARGS), 1),
        "encode done with a result, untyped": (lambda: untyped_done(*WITH_RESULT), 1),
        "encode done with a result, typed": (lambda: typed_done(*WITH_RESULT), 1),
        "decode done, 1 a read, untyped": (lambda: wire.LineReader().feed(line), 1),
        "decode done, 1 a read, checked": (lambda: wire.WorkerLines().feed(line), 1),
        "decode done, 16 a read, untyped": (lambda: wire.LineReader().feed(batch), 16),
        "decode done, 16 a read, checked": (lambda: wire.WorkerLines().feed(batch), 16),
        "decode done + its Attempt, 1 a read": (lambda: attempt(claim, line), 1),
    }
    for name, us in best(cases).items():
        print(f"{name:40} {us:5.2f} us")


if __name__ == "__main__":
    main()
