"""SQLAlchemy's aiosqlite adapter, one trip to the connection's thread per statement.

aiosqlite runs each call on its connection in a thread of its own. SQLAlchemy's adapter makes
four calls per statement (open a cursor, execute, fetch the rows, close the cursor), one more to
begin each transaction, and one to roll back every connection going back to the pool. Each call
is a trip to that thread and back through the event loop. On a loop busy with hundreds of HTTP
requests (a fan-out to a big list) a trip waited about a millisecond, so on SQLite's one
connection per process a transaction spent two thirds of its time on trips rather than SQL, and
the claims that feed the dispatcher's lanes queued behind it.

Here:
- a statement is one trip: cursor, execute, rows and close all happen in the thread, and what
  SQLAlchemy reads afterwards (description, rowcount, lastrowid, the rows) comes back at once;
- BEGIN goes with the transaction's first statement (`begin_with_next_statement`); a
  transaction that ran no statement has nothing to commit or roll back, and makes no trip;
- a rollback or commit with no transaction open in SQLite makes no trip either.

It reaches aiosqlite's `_execute` and `_conn`, as SQLAlchemy's own adapter does for its isolation
level. Server-side (streaming) cursors keep SQLAlchemy's class, after a BEGIN still due.
Install it by passing `module=one_trip_dbapi()` to create_async_engine.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    AsyncAdapt_aiosqlite_ss_cursor,
)
from sqlalchemy.util import immutabledict
from sqlalchemy.util.concurrency import await_

__all__ = ["OneTripConnection", "one_trip_dbapi"]

T = TypeVar("T")
# description, rows, rowcount, lastrowid, whether a transaction is open afterwards
_Outcome = tuple[Any, list[Any], int, int | None, bool]


def _statement(
    connection: sqlite3.Connection, begin: str | None, operation: str, parameters: Any, many: bool
) -> _Outcome:
    """In aiosqlite's thread: the transaction's BEGIN if it is due, then the whole statement."""
    cursor = connection.cursor()
    try:
        if begin is not None:
            cursor.execute(begin)
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid, connection.in_transaction
    finally:
        cursor.close()


def _begin_now(connection: sqlite3.Connection, begin: str) -> bool:
    cursor = connection.cursor()
    try:
        cursor.execute(begin)
    finally:
        cursor.close()
    return connection.in_transaction


def _commit(connection: sqlite3.Connection) -> bool:
    connection.commit()
    return connection.in_transaction


def _rollback(connection: sqlite3.Connection) -> bool:
    connection.rollback()
    return connection.in_transaction


class _StreamingCursor(AsyncAdapt_aiosqlite_ss_cursor):
    """SQLAlchemy's server-side cursor, after the transaction's BEGIN."""

    __slots__ = ()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        connection: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        connection.begin_now()
        return super().execute(operation, parameters)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        connection: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        connection.begin_now()
        return super().executemany(operation, seq_of_parameters)


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_begin", "_open")

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._begin: str | None = None  # the BEGIN the next statement runs first
        self._open = False  # a transaction is open in SQLite (as of the last trip)

    _ss_cursor_cls = _StreamingCursor

    def cursor(self, server_side: bool = False) -> Any:
        if server_side:
            return super().cursor(server_side)
        return OneTripCursor(self)

    def begin_now(self) -> None:
        """Send a BEGIN still due, in a trip of its own (before a streaming statement, which
        goes through aiosqlite's own cursor)."""
        begin, self._begin = self._begin, None
        if begin is not None:
            self._open = self._trip(_begin_now, begin)

    def begin_with_next_statement(self, begin: str) -> None:
        """Begin the transaction with `begin`, in the trip of its first statement."""
        self._begin = begin

    def _trip(self, function: Callable[..., T], *args: Any) -> T:
        connection = self._connection
        try:
            return await_(connection._execute(function, connection._conn, *args))  # type: ignore[no-any-return]
        except Exception as error:
            self._handle_exception(error)

    def run_statement(self, operation: str, parameters: Any, many: bool) -> _Outcome:
        begin, self._begin = self._begin, None
        try:
            outcome = self._trip(_statement, begin, operation, parameters, many)
        except BaseException:
            self._open = self._open or begin is not None  # let the rollback run, to be sure
            raise
        self._open = outcome[4]
        return outcome

    def commit(self) -> None:
        self._begin = None
        if self._open and self._connection._connection:
            self._open = self._trip(_commit)

    def rollback(self) -> None:
        self._begin = None
        if self._open and self._connection._connection:
            self._open = self._trip(_rollback)


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose execute is one trip; nothing stays open in the driver."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: OneTripConnection) -> None:
        # Not the parent's __init__: it opens a driver cursor (a trip) that is never needed.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = immutabledict()
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def arraysize(self) -> int:
        return 1  # fetchmany's default; the rows are here already

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:  # type: ignore[override]
        return self._lastrowid

    def _run(self, operation: str, parameters: Any, many: bool) -> None:
        connection: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        description, rows, self._rowcount, self._lastrowid, _open = connection.run_statement(
            operation, parameters, many
        )
        self._description = description
        self._rows = collections.deque(rows)

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._run(operation, parameters, False)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        self._run(operation, seq_of_parameters, True)

    async def _async_soft_close(self) -> None:
        return None  # the driver's cursor closed in its trip

    def close(self) -> None:
        self._rows.clear()


class _OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        adapted = super().connect(*arg, **kw)
        return OneTripConnection(self, adapted._connection)


def one_trip_dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The aiosqlite DBAPI adapter whose connections make one trip per statement."""
    return _OneTripDbapi(aiosqlite, sqlite3)
