"""One place for connections and transactions: `Database`.

Every statement module of the store (writes, claims, queries, nodes,
schedules, retention, doubt) takes a `Database` and runs its statements in
the connections and transactions it gives; none opens a connection itself.

Connections are kept, one per thread, for the life of the store: a pool
checkout per call costs more than the insert it wraps (measured: 4,200
single-row enqueues/s through `engine.begin()` against 9,700/s on a kept
connection, SQLite). After a fork the child drops them unused (they belong
to the parent) and opens its own.

Two kinds of transaction:

- `transaction()`: a SQLAlchemy `Connection` in a transaction, for every
  statement built with SQLAlchemy Core and run through it;
- `write()`: the driver's connection in a write transaction, for the
  statements compiled once and run on the driver's cursor (hotpath.py):
  enqueue, settle, record, claim. On SQLite it is BEGIN IMMEDIATE and
  COMMIT on the kept connection, without SQLAlchemy's transaction
  bookkeeping (measured: 224 us of CPU per single-job enqueue through
  Connection.begin() around ~60 us of SQLite work; after an idle pause,
  when every instruction runs cold, the master's claim transaction fell
  from 1.0 ms to 0.41 ms p50, see docs/architecture.md). On PostgreSQL,
  where the round trips dwarf that bookkeeping and the connection's state
  must stay SQLAlchemy's to know (a broken COMMIT, doubt.py), it is the
  SQLAlchemy transaction, yielding its driver connection. Which of the two
  is chosen once, when the database is opened.

Driver errors become `StoreError`s here, with the driver's own words on one
line; on SQLite a failure on a full disk says so.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from select import select as wait_readable
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from jobd.store.contract import InvalidTransition, JobNotFound, SchemaError, StoreError
from jobd.store.engine import (
    SQLiteConnection,
    arm,
    build_engine,
    dialect_of,
    normalize_url,
    sqlite_path,
)

SQLITE_FULL = 13  # sqlite3's primary result code for "database or disk is full"


class Database:
    """The engine, the kept connection of each thread and the transactions on it."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        sqlite_synchronous: str = "normal",
        create: bool = False,
    ) -> None:
        self.url = normalize_url(url)
        self.dialect = dialect_of(self.url)
        self.timeout = timeout
        self.engine = build_engine(self.url, timeout, sqlite_synchronous)
        self.path = sqlite_path(self.url)  # the SQLite file; None on PostgreSQL
        # Only `jobd db upgrade` (and the demo) may create a SQLite file: a typo
        # in a path must not leave an empty database behind.
        self.create = create
        self._local = threading.local()
        self._pid = os.getpid()
        self._driver_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        self.write: Callable[[], AbstractContextManager[Any]] = (
            self._sqlite_write if self.dialect == "sqlite" else self._postgres_write
        )

    # -- connections ----------------------------------------------------------

    def connection(self) -> Connection:
        """The thread's kept SQLAlchemy connection, (re)opened when needed."""
        if self._pid != os.getpid():
            # A forked child must not touch the parent's connections, not even to close them.
            self.engine.dispose(close=False)
            self._local = threading.local()
            self._pid = os.getpid()
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated or not self._usable(conn):
            conn = self._connect()
        return conn

    def _connect(self) -> Connection:
        path = self.path
        if path and not os.path.exists(path):
            if not self.create:
                raise SchemaError(f"{path} does not exist: create it with `jobd db upgrade`")
            if path != ":memory:" and not path.startswith("file:"):
                self._create_file(path)
        try:
            conn = self.engine.connect()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot connect to {self.describe()}: {self.reason(exc)}") from None
        self._local.conn = conn
        self._local.raw = None
        return conn

    def _create_file(self, path: str) -> None:
        """Create the empty SQLite file readable by its owner only (0600), or also
        by the directory's group where the directory is shared (setgid): 0660.

        SQLite would create it 0644 less the umask, and gives the -wal and -shm
        files the mode of the database file: jobs' arguments and results must
        not be readable by every user of the host. An empty file is an empty
        database to SQLite.
        """
        directory = os.path.dirname(os.path.abspath(path))
        try:
            shared = os.stat(directory).st_mode & stat.S_ISGID
        except OSError:
            return  # SQLite's own error says what is wrong with the directory
        mode = 0o660 if shared else 0o600
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            return  # created meanwhile by another process: its mode stands
        except OSError as exc:
            raise StoreError(f"cannot create {path}: {self.reason(exc)}") from None
        try:
            os.fchmod(fd, mode)  # exactly this mode, whatever the umask
        finally:
            os.close(fd)

    def sqlite_connection(self) -> SQLiteConnection:
        """The thread's kept SQLite DBAPI connection, armed for one transaction.

        `connection()` checks the SQLAlchemy connection through several
        properties per call; here one attribute read suffices once it has
        been checked.
        """
        raw: SQLiteConnection | None = getattr(self._local, "raw", None)
        if raw is None or self._pid != os.getpid():
            raw = self.connection().connection.dbapi_connection  # type: ignore[assignment]
            assert isinstance(raw, SQLiteConnection)
            self._local.raw = raw
        raw.deadline = time.monotonic() + self.timeout
        return raw

    def _usable(self, conn: Connection) -> bool:
        if self.dialect != "postgresql" or _alive(conn):
            return True
        self.drop_connection()  # terminated or broken while idle: replaced, never reused
        return False

    def drop_connection(self) -> None:
        """Close and forget the thread's kept connection (after a failure)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = self._local.raw = None
        if conn is not None:
            with suppress(SQLAlchemyError):
                conn.close()

    def listen_connection(self) -> Any:
        """A new autocommit psycopg connection to the database (LISTEN)."""
        import psycopg

        _, params = self.engine.dialect.create_connect_args(self.engine.url)
        params["connect_timeout"] = max(int(self.timeout + 0.999), 1)
        return psycopg.connect(**params, autocommit=True)

    def describe(self) -> str:
        """The database, for messages (no password)."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.drop_connection()
        self.engine.dispose()

    # -- transactions ---------------------------------------------------------

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Connection]:
        """The kept connection in a transaction (SQLite: BEGIN IMMEDIATE to write)."""
        conn = self.connection()
        try:
            arm(conn, write, self.timeout)
            with conn.begin():
                yield conn
        except (InvalidTransition, JobNotFound, SchemaError):
            raise
        except (SQLAlchemyError, self._driver_error) as exc:
            # Statements run on the driver's cursor raise its errors unwrapped.
            raise self.failure(exc) from None

    @contextmanager
    def _sqlite_write(self) -> Iterator[SQLiteConnection]:
        """`write()` on SQLite: BEGIN IMMEDIATE and COMMIT on the kept connection.

        Only statements run on the DBAPI cursor (hotpath.Compiled) may be used
        inside: a SQLAlchemy execute would begin a transaction of its own.
        """
        raw = self.sqlite_connection()
        try:
            raw.execute("BEGIN IMMEDIATE")
            try:
                yield raw
                raw.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):
                    raw.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self.failure(exc) from None

    @contextmanager
    def _postgres_write(self) -> Iterator[Any]:
        """`write()` on PostgreSQL: the SQLAlchemy transaction's driver connection.

        `transaction()`'s body, not a call of it: the exchange runs this for
        every batch, and a second generator per call is the cost avoided.
        """
        conn = self.connection()
        try:
            arm(conn, True, self.timeout)
            with conn.begin():
                yield conn.connection.dbapi_connection
        except (SQLAlchemyError, self._driver_error) as exc:
            raise self.failure(exc) from None

    def autocommit(self, sql: str, params: dict[str, Any]) -> Any:
        """PostgreSQL: run one statement as its own transaction on the kept
        connection's driver (autocommit), and return its first row."""
        raw: Any = self.connection().connection.dbapi_connection
        try:
            raw.autocommit = True  # the connection is idle between transactions
            row = raw.execute(sql, params).fetchone()
            raw.autocommit = False
        except self._driver_error as exc:
            raise self.failure(exc) from None  # in whatever state the failure left it
        except BaseException:
            self.drop_connection()
            raise
        return row

    def upgrade(self) -> tuple[str | None, str]:
        """Migrate the schema to the head revision, creating the SQLite file (and
        its directory) if need be; (before, after)."""
        from jobd.store.migrate import upgrade

        self.create = True  # the one operation that may create the database
        if self.path and self.path != ":memory:" and not self.path.startswith("file:"):
            directory = os.path.dirname(os.path.abspath(self.path))
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create {directory}: {exc.strerror or exc}") from None
        conn = self.connection()
        arm(conn, True, self.timeout)
        try:
            return upgrade(conn)
        except SchemaError as exc:
            raise SchemaError(f"{self.describe()}: {exc}") from None
        except SQLAlchemyError as exc:
            raise self.failure(exc) from None

    # -- errors ---------------------------------------------------------------

    def failure(self, exc: Exception) -> StoreError:
        """The StoreError for a failed statement; the connection is dropped (it
        is in whatever state the failure left it)."""
        self.drop_connection()
        return StoreError(f"{self.describe()}: {self.reason(exc)}")

    def reason(self, exc: Exception) -> str:
        """The driver's own words, on one line; on SQLite, that the disk is full."""
        text = _reason(exc)
        if self.path is not None and _disk_full(self.path, exc):
            directory = os.path.dirname(os.path.abspath(self.path))
            return f"the disk holding {directory} is full ({text})"
        return text


def _disk_full(path: str, exc: Exception) -> bool:
    """Did a SQLite failure come from a full disk? SQLite says "disk I/O error"
    when it cannot grow its -shm or -wal file, and "database or disk is full"
    when a page write fails, so the file system is asked (only on failure)."""
    error = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    if not isinstance(error, sqlite3.OperationalError):
        return False
    if getattr(error, "sqlite_errorcode", 0) & 0xFF == SQLITE_FULL:
        return True
    try:
        return os.statvfs(os.path.dirname(os.path.abspath(path))).f_bavail == 0
    except OSError:
        return False


def _alive(conn: Connection) -> bool:
    """Is a kept PostgreSQL connection still usable? Checked before each transaction.

    An idle connection has nothing to read: a readable socket holds the
    server's goodbye (`pg_terminate_backend`, a shutdown) or its EOF. One
    non-blocking poll (a few microseconds) spares a failed transaction.
    """
    raw: Any = conn.connection.dbapi_connection
    if raw is None or raw.closed or raw.broken:
        return False
    try:
        readable, _, _ = wait_readable([raw.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _sqlite_reason(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "interrupted" in text:
        return "the statement ran past the store timeout"
    return text.splitlines()[0] if text else type(exc).__name__


def _reason(exc: Exception) -> str:
    """The driver's own words, on one line, without SQLAlchemy's boilerplate."""
    if isinstance(exc, sqlite3.Error):
        return _sqlite_reason(exc)
    text = str(exc.orig) if isinstance(exc, DBAPIError) and exc.orig is not None else str(exc)
    if isinstance(exc, OperationalError) and "interrupted" in text:
        text = "the statement ran past the store timeout"
    if isinstance(exc, IntegrityError):
        text = f"integrity: {text}"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:300]
