"""SQLite statements make one trip to aiosqlite's thread each (storage/sqlite_cursor.py), and
behave as SQLAlchemy's own adapter makes them behave: rows, counts, ids, errors, transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite.core
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.settings import DatabaseSettings
from broadcaster.storage.engine import create_engine
from broadcaster.storage.sqlite_cursor import OneTripConnection
from broadcaster.storage.sqlite_writers import WriterQueueConnection

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False, unique=True),
    Column("size", Integer, nullable=False, default=0),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'trips.db'}"))
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def trips() -> Iterator[list[str]]:
    """The calls made in aiosqlite's thread (each a trip there and back), by function name."""
    made: list[str] = []
    real = aiosqlite.core.Connection._execute

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        made.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    aiosqlite.core.Connection._execute = counted  # type: ignore[method-assign]
    try:
        yield made
    finally:
        aiosqlite.core.Connection._execute = real  # type: ignore[method-assign]


async def test_the_engine_uses_one_trip_connections(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        assert isinstance(raw.dbapi_connection, OneTripConnection)


async def test_a_transaction_is_one_trip_per_statement_and_one_to_commit(
    engine: AsyncEngine, trips: list[str]
) -> None:
    async with engine.begin() as connection:
        await connection.execute(insert(things), [{"name": "a"}, {"name": "b"}])
        await connection.execute(update(things).where(things.c.name == "a").values(size=3))
        rows = (await connection.execute(select(things.c.name).order_by(things.c.id))).all()
    assert [row.name for row in rows] == ["a", "b"]
    # BEGIN went with the first statement; SQLAlchemy's adapter made 4 trips a statement and
    # one each to begin and to roll back on the way back to the pool: 15 in all.
    assert trips == ["_statement", "_statement", "_statement", "_commit"]


async def test_a_read_is_one_trip_and_one_to_end_it(engine: AsyncEngine, trips: list[str]) -> None:
    async with engine.connect() as connection:
        assert await connection.scalar(select(things.c.id)) is None
    async with engine.begin():
        pass  # a transaction with no statement never reaches SQLite
    # (Every transaction begins IMMEDIATE, a read's too: its end lets the write lock go.)
    assert trips == ["_statement", "_rollback"]


async def test_counts_ids_and_rows_are_what_the_statements_did(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        one = await connection.execute(insert(things).values(name="one", size=1))
        assert one.inserted_primary_key == (1,)
        many = await connection.execute(
            insert(things), [{"name": f"n{n}", "size": n} for n in range(2, 6)]
        )
        assert many.rowcount == 4
        grown = await connection.execute(
            update(things).where(things.c.size >= 3).values(size=things.c.size * 10)
        )
        assert grown.rowcount == 3
        returned = await connection.execute(
            update(things)
            .where(things.c.name == "n2")
            .values(size=7)
            .returning(things.c.id, things.c.size)
        )
        assert returned.all() == [(2, 7)]
        result = await connection.execute(
            select(things.c.name, things.c.size).order_by(things.c.id)
        )
        assert list(result.keys()) == ["name", "size"]
        assert result.fetchmany(2) == [("one", 1), ("n2", 7)]
        assert result.fetchone() == ("n3", 30)
        assert result.all() == [("n4", 40), ("n5", 50)]


async def test_an_error_rolls_back_and_the_connection_goes_on(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(insert(things).values(name="taken"))
    with pytest.raises(IntegrityError):  # noqa: PT012 (the transaction is the subject)
        async with engine.begin() as connection:
            await connection.execute(insert(things).values(name="kept back"))
            await connection.execute(insert(things).values(name="taken"))
    with pytest.raises(OperationalError, match="no such table"):
        async with engine.begin() as connection:  # the error is in the trip that begins
            await connection.execute(text("SELECT * FROM nowhere"))
    async with engine.begin() as connection:
        await connection.execute(insert(things).values(name="after"))
    async with engine.connect() as connection:
        names = (await connection.execute(select(things.c.name).order_by(things.c.id))).all()
    assert [row.name for row in names] == ["taken", "after"]  # "kept back" rolled back


async def test_the_writer_turn_is_let_go_after_commit_and_after_an_error(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    # Another connection (another process, as far as the lock file knows) can write at once.
    async def someone_else_writes(name: str) -> None:
        other = sqlite3.connect(
            str(tmp_path / "trips.db"),
            factory=WriterQueueConnection,
            timeout=0.5,
            check_same_thread=False,
        )
        other.isolation_level = None
        try:
            other.cursor().execute("BEGIN IMMEDIATE")
            other.cursor().execute("INSERT INTO things (name, size) VALUES (?, 0)", (name,))
            other.commit()
        finally:
            other.close()

    async with engine.begin() as connection:
        await connection.execute(insert(things).values(name="ours"))
    await someone_else_writes("theirs 1")
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(insert(things).values(name="ours"))
    await someone_else_writes("theirs 2")
    async with engine.connect() as connection:
        assert await connection.scalar(select(things.c.id).where(things.c.name == "x")) is None
    await someone_else_writes("theirs 3")  # a read's transaction was ended too
    async with engine.connect() as connection:
        count = await connection.scalar(text("SELECT count(*) FROM things"))
    assert count == 4


async def test_a_streamed_read_runs_inside_its_transaction(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    # Server-side cursors keep SQLAlchemy's own class; the transaction's BEGIN (IMMEDIATE: it
    # holds the write lock) still goes first, so another writer waits until the read ends.
    async with engine.begin() as connection:
        await connection.execute(insert(things), [{"name": f"s{n}"} for n in range(5)])
    other = sqlite3.connect(str(tmp_path / "trips.db"), factory=WriterQueueConnection, timeout=0.2)
    other.isolation_level = None
    try:
        async with engine.connect() as connection:
            streamed = await connection.stream(select(things.c.name).order_by(things.c.id))
            names = [row.name async for row in streamed]
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.cursor().execute("BEGIN IMMEDIATE")
        other.cursor().execute("BEGIN IMMEDIATE")
        other.rollback()
    finally:
        other.close()
    assert names == [f"s{n}" for n in range(5)]
