"""Waking masters at once on PostgreSQL: LISTEN/NOTIFY, watched for silent death.

Producers send `NOTIFY` in the transaction that inserts the jobs (writes.py),
so PostgreSQL delivers it at commit, also when the job is enqueued in the
application's own transaction. The payload is the SQLite datagram's:
`<earliest run_at> <queue>[,<queue>...]`. The channel is named after the
schema (`jobd.<schema>`), so stores that share a database but not a schema
do not wake each other.

The master's end, `PgListener`, is a dedicated connection in autocommit
mode that LISTENs and is then driven through libpq's non-blocking calls
only: `drain()` reads what the socket holds and never waits.

Why `fileno()` is an epoll descriptor of our own, not the connection's
socket: the master keeps that number registered in its selector until its
next `check()`. A socket closed in between could be reused for a worker's
socket, which the master's selector would refuse as already registered,
and a socket left open at EOF would be readable forever (a busy loop). The
wrapper stays open for the listener's life, holds the current connection's
socket while there is one, and is never readable while there is none.

A LISTEN connection can go deaf without a word (a NAT or firewall that
drops an idle flow, a server host that vanished): a known failure of job
queues built on LISTEN. So every `check()` (each heartbeat) sends a NOTIFY
to a channel only this connection listens on, and expects it back within
the store timeout; when it does not come, or the connection broke, the
listener reconnects (with backoff while that fails) and `check()` returns
False so the master claims once for what it may have missed.
"""

from __future__ import annotations

import contextlib
import logging
import select
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import pq, sql

log = logging.getLogger("jobd.store")

# The channel, computed by the server from the session's schema, on both ends
# (the producer's connection may be the application's). Channel names are
# limited to 63 bytes; two schemas that share their first 58 bytes would only
# wake each other needlessly.
CHANNEL_SQL = "'jobd.' || left(coalesce(current_schema(), 'public'), 58)"
NOTIFY_SQL = f"SELECT pg_notify({CHANNEL_SQL}, %(payload)s)"  # in the producer's transaction
PAYLOAD_MAX = 7000  # PostgreSQL's limit is 8000 bytes
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0


def payloads(queues: set[str], earliest_run_at: float) -> list[str]:
    """The NOTIFY payloads for an enqueue: one, unless the queue list is very long."""
    head = f"{earliest_run_at:.6f} "
    chunks: list[str] = []
    current: list[str] = []
    size = len(head)
    for queue in sorted(queues):
        if current and size + len(queue) + 1 > PAYLOAD_MAX:
            chunks.append(head + ",".join(current))
            current, size = [], len(head)
        current.append(queue)
        size += len(queue) + 1
    if current:
        chunks.append(head + ",".join(current))
    return chunks


def parse(payload: str) -> tuple[float, list[str]] | None:
    run_at, _, queues = payload.partition(" ")
    try:
        return float(run_at), queues.split(",")
    except ValueError:
        return None


class PgListener:
    """`jobd.store.contract.WakeSource` on a LISTEN connection; see the module docstring."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect_fn = connect
        self.timeout = timeout
        self._clock = clock
        self._epoll = select.epoll()
        self._conn: psycopg.Connection[Any] | None = None
        self._socket = -1
        self._probe_channel = b""
        self._probe_sent: float | None = None  # when the unanswered probe went out
        self._missed = False  # since the last check: wake-ups may have been lost
        self._failures = 0
        self._retry_at = 0.0
        self._connected_once = False
        self.reconnects = 0  # connections made after the first (for tests and logs)
        self._open()

    @property
    def backend_pid(self) -> int | None:
        """The server process of the LISTEN connection (None while disconnected)."""
        return None if self._conn is None else self._conn.info.backend_pid

    # -- the WakeSource --------------------------------------------------------

    def fileno(self) -> int:
        return self._epoll.fileno()

    def drain(self, at_most: int | None = None) -> list[tuple[float, list[str]]]:
        """Every wake-up the connection has received (`at_most` aside: they arrive
        together); never waits."""
        conn = self._conn
        if conn is None:
            return []
        pgconn = conn.pgconn
        wakeups: list[tuple[float, list[str]]] = []
        try:
            pgconn.consume_input()
            while not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:
                    break
                if result.status == pq.ExecStatus.FATAL_ERROR:
                    raise psycopg.OperationalError(result.get_error_message())
            while (notify := pgconn.notifies()) is not None:
                if notify.relname == self._probe_channel:
                    self._probe_sent = None
                    continue
                found = parse(notify.extra.decode("utf-8", "replace"))
                if found is not None:
                    wakeups.append(found)
        except psycopg.Error as exc:
            self._lost(f"LISTEN connection failed: {exc}")
            return wakeups
        if pgconn.status == pq.ConnStatus.BAD:
            self._lost("LISTEN connection closed by the server")
        return wakeups

    def check(self) -> bool:
        """Still listening? Reconnect if not (returns False: wake-ups may be lost)."""
        if self._conn is None:
            if self._clock() >= self._retry_at:
                self._open()
            self._missed = False
            return False
        if self._probe_sent is not None:
            if self._clock() - self._probe_sent < self.timeout:
                return self._take_missed()  # still in flight: judged at a later check
            self._lost(f"LISTEN connection silent: no answer to a probe within {self.timeout:g}s")
            self._open()
            self._missed = False
            return False
        self._send_probe()
        return self._take_missed()

    def close(self) -> None:
        self._close_connection()
        self._epoll.close()

    # -- connecting --------------------------------------------------------------

    def _open(self) -> None:
        """Connect, LISTEN, hand the socket to the epoll; on failure, back off."""
        try:
            conn = self._connect_fn()
        except psycopg.Error as exc:
            self._failed(f"cannot connect: {_first_line(exc)}")
            return
        try:
            millis = max(int(self.timeout * 1000), 1)
            conn.execute(f"SET statement_timeout = {millis}")
            channel = conn.execute(f"SELECT {CHANNEL_SQL}").fetchone()
            assert channel is not None
            probe = f"jobd.probe.{conn.info.backend_pid}"
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel[0])))
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(probe)))
        except psycopg.Error as exc:
            conn.close()
            self._failed(f"cannot LISTEN: {_first_line(exc)}")
            return
        conn.pgconn.nonblocking = 1
        self._conn, self._socket = conn, conn.pgconn.socket
        self._probe_channel = probe.encode()
        self._probe_sent = None
        self._epoll.register(self._socket, select.EPOLLIN)
        if self._connected_once:
            self.reconnects += 1
            log.info("wake-ups: LISTEN connection re-established")
        self._connected_once = True
        self._failures = 0

    def _failed(self, reason: str) -> None:
        self._failures += 1
        backoff = min(BACKOFF_FIRST * 2 ** (self._failures - 1), BACKOFF_MAX)
        self._retry_at = self._clock() + backoff
        if self._failures == 1 or self._failures % 10 == 0:
            log.warning("wake-ups: %s (polling meanwhile; retry in %.1fs)", reason, backoff)

    def _lost(self, reason: str) -> None:
        log.warning("wake-ups: %s; reconnecting", reason)
        self._close_connection()
        self._missed = True
        self._retry_at = 0.0

    def _close_connection(self) -> None:
        if self._conn is None:
            return
        if self._socket >= 0:
            with contextlib.suppress(OSError):  # the socket was closed under us
                self._epoll.unregister(self._socket)
        with contextlib.suppress(psycopg.Error):
            self._conn.close()
        self._conn, self._socket, self._probe_sent = None, -1, None

    # -- probing -------------------------------------------------------------------

    def _send_probe(self) -> None:
        conn = self._conn
        assert conn is not None
        pgconn = conn.pgconn
        channel = self._probe_channel.decode()
        try:
            # Never read the socket here: what it holds is drain()'s to return,
            # and the master calls drain() only when the socket is readable.
            if pgconn.is_busy():
                return  # the last probe's result is still on its way: probe next time
            pgconn.send_query(f'NOTIFY "{channel}"'.encode())
            pgconn.flush()  # non-blocking: what the kernel cannot take now goes later
        except psycopg.Error as exc:
            self._lost(f"LISTEN connection failed: {_first_line(exc)}")
            self._open()
            return
        self._probe_sent = self._clock()

    def _take_missed(self) -> bool:
        missed, self._missed = self._missed, False
        return not missed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
