"""Writers on one SQLite file queue on the advisory lock beside it (storage/sqlite_writers.py)."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from broadcaster.settings import DatabaseSettings
from broadcaster.storage.engine import create_engine
from broadcaster.storage.sqlite_writers import WriterQueueConnection, lock_path


def _connect(path: Path, timeout: float = 5.0) -> WriterQueueConnection:
    connection = sqlite3.connect(
        str(path), timeout=timeout, factory=WriterQueueConnection, check_same_thread=False
    )
    assert isinstance(connection, WriterQueueConnection)
    connection.isolation_level = None
    return connection


def _run(connection: sqlite3.Connection, sql: str) -> sqlite3.Cursor:
    # Through a cursor, as aiosqlite and SQLAlchemy run statements: Connection.execute goes
    # straight to C and would bypass the queue.
    return connection.cursor().execute(sql)


def test_a_second_writer_waits_for_the_first_to_commit_then_goes(tmp_path: Path) -> None:
    path = tmp_path / "one.db"
    first, second = _connect(path), _connect(path)
    _run(first, "CREATE TABLE t (n INTEGER)")
    _run(first, "BEGIN IMMEDIATE")
    _run(first, "INSERT INTO t VALUES (1)")
    began = threading.Event()

    def write_second() -> None:
        _run(second, "BEGIN IMMEDIATE")
        began.set()
        _run(second, "INSERT INTO t VALUES (2)")
        second.commit()

    waiting = threading.Thread(target=write_second)
    waiting.start()
    assert not began.wait(0.3), "the second writer began while the first held its turn"
    first.commit()
    waiting.join(10)
    assert began.is_set()
    assert [row[0] for row in _run(first, "SELECT n FROM t ORDER BY n")] == [1, 2]
    first.close()
    second.close()


def test_a_writer_that_waits_too_long_gets_sqlites_own_error(tmp_path: Path) -> None:
    path = tmp_path / "two.db"
    holder, impatient = _connect(path), _connect(path, timeout=0.2)
    _run(holder, "BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        _run(impatient, "BEGIN IMMEDIATE")
    holder.rollback()  # a rollback ends the turn too
    _run(impatient, "BEGIN IMMEDIATE")
    impatient.commit()
    holder.close()
    impatient.close()


def test_the_advisory_lock_alone_holds_a_writer_back(tmp_path: Path) -> None:
    # Another process's turn, with SQLite itself unlocked: the writer waits for the turn.
    path = tmp_path / "turn.db"
    writer = _connect(path, timeout=0.2)
    other = os.open(lock_path(str(path)), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(other, fcntl.LOCK_EX)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        _run(writer, "BEGIN IMMEDIATE")
    fcntl.flock(other, fcntl.LOCK_UN)
    _run(writer, "BEGIN IMMEDIATE")
    writer.commit()
    os.close(other)
    writer.close()


def test_closing_a_connection_mid_transaction_frees_the_turn(tmp_path: Path) -> None:
    path = tmp_path / "three.db"
    gone, next_one = _connect(path), _connect(path, timeout=2.0)
    _run(gone, "BEGIN IMMEDIATE")
    gone.close()
    _run(next_one, "BEGIN IMMEDIATE")
    next_one.commit()
    next_one.close()


async def test_the_engine_for_a_file_queues_its_writers(tmp_path: Path) -> None:
    path = tmp_path / "service.db"
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"))
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (n INTEGER)"))
            await connection.execute(text("INSERT INTO t VALUES (1)"))
        assert os.path.exists(lock_path(str(path)))  # noqa: ASYNC240 (a test's one look)
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM t")) == 1
    finally:
        await engine.dispose()
