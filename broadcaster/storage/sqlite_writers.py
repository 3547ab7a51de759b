"""Writers on one SQLite file take turns promptly, across processes.

Every transaction here begins with BEGIN IMMEDIATE (storage/engine.py), which takes SQLite's one
write lock. When another process holds it, SQLite's busy handler polls in growing sleeps (1, 2,
5, 10 ... up to 100 ms between looks), so a waiting process often sleeps on long after the lock
was freed, and two busy processes (`serve` and a `broadcaster worker`) end up taking turns in
bursts: each idles while the other works, and together they move little more than one alone.

So each connection first takes an advisory lock of its own on a file beside the database
(`<database>-writer.lock`, flock(2)) and looks for it every millisecond, then begins; the
lock is let go when the transaction ends. SQLite's own locking is unchanged and still decides
what is safe: the advisory lock only keeps the queue short. A process that dies lets go of it
with its files. Waiting gives up after the connection's busy timeout with the error SQLite
itself would raise ("database is locked").

Everything here runs in aiosqlite's thread (the connection's own), never on the event loop.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from typing import Any, Final

__all__ = ["WriterQueueConnection", "lock_path"]

_LOOK_EVERY: Final = 0.001  # seconds between looks at a taken lock
_BEGIN: Final = "BEGIN IMMEDIATE"


def lock_path(database: str) -> str:
    return f"{database}-writer.lock"


class _Cursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        connection = self.connection
        if sql == _BEGIN and isinstance(connection, WriterQueueConnection):
            connection.take_turn()
            try:
                return super().execute(sql, parameters)
            except BaseException:
                connection.end_turn()
                raise
        return super().execute(sql, parameters)


class WriterQueueConnection(sqlite3.Connection):
    """A sqlite3 connection (pass as `factory=` to sqlite3/aiosqlite connect) whose BEGIN
    IMMEDIATE waits its turn on the advisory writer lock first."""

    def __init__(self, database: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._patience = float(kwargs.get("timeout", 5.0))
        self._lock_fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT, 0o600)
        self._turn = False

    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)

    def take_turn(self) -> None:
        if self._turn:
            return
        deadline = time.monotonic() + self._patience
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError("database is locked") from None
                time.sleep(_LOOK_EVERY)
                continue
            self._turn = True
            return

    def end_turn(self) -> None:
        if self._turn:
            self._turn = False
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            # A COMMIT that failed leaves the transaction open (and the turn ours) until the
            # rollback that follows.
            if not self.in_transaction:
                self.end_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.end_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.end_turn()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1
