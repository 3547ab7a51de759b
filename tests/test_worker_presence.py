"""A worker registers itself even when the database is busy as it starts (SQLite's write lock
held by other processes past the busy timeout): it waits and tries again instead of dying."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import create_async_engine

from broadcaster.settings import WorkerSettings
from broadcaster.storage import migrate
from broadcaster.storage.schema import workers
from broadcaster.worker import WorkerPresence


async def test_registration_waits_out_a_database_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    # A short busy timeout, so the lock outlasts it and registration sees "database is locked".
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0.05})

    @event.listens_for(engine.sync_engine, "begin")
    def _immediate(connection: object) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # type: ignore[attr-defined]

    @event.listens_for(engine.sync_engine, "connect")
    def _manual(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None

    try:
        await migrate.upgrade(engine)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process writing, for a while
        presence = WorkerPresence(engine, WorkerSettings())
        starting = asyncio.create_task(presence.start())
        await asyncio.sleep(0.3)
        assert not starting.done(), "registration gave up instead of waiting"
        other.execute("COMMIT")
        other.close()
        await starting
        async with engine.connect() as connection:
            registered = (await connection.execute(select(workers.c.id))).scalars().all()
        assert registered == [presence.id]
        await presence.stop()
    finally:
        await engine.dispose()
