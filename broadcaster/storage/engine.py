"""Opening the database: SQLite (embedded default) or PostgreSQL, chosen by the URL."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from broadcaster.settings import ConfigError, DatabaseSettings
from broadcaster.storage.sqlite_checkpoint import checkpoint_beside
from broadcaster.storage.sqlite_cursor import OneTripConnection, one_trip_dbapi
from broadcaster.storage.sqlite_writers import WriterQueueConnection


def create_engine(database: DatabaseSettings) -> AsyncEngine:
    """An async engine for the configured URL, with SQLite set up for concurrent safe use."""
    url = make_url(database.url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(database, url.database)
    if importlib.util.find_spec("asyncpg") is None:
        raise ConfigError(
            "database.url names PostgreSQL but asyncpg is not installed: "
            "pip install 'crisis-broadcaster[postgres]'"
        )
    engine = create_async_engine(url, echo=database.echo, pool_size=database.pool_size)
    _ping_when_idle(engine)
    return engine


# A connection taken from the pool is checked with a round trip first (with asyncpg, three:
# BEGIN, a query, ROLLBACK) only when it sat unused for this long: one used a moment ago is
# alive, and the dispatcher's and the ingestion's batch writers take connections hundreds of
# times a second. One that broke in between fails its transaction like any other database
# error, is discarded (SQLAlchemy recognises the disconnect), and the caller's retry gets a
# fresh one.
PING_AFTER_IDLE_SECONDS = 2.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    dialect = engine.dialect

    def fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is not None and time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                # The pool discards it and takes (or opens) another.
                raise DisconnectionError(str(error)) from error
            raise

    event.listen(engine.sync_engine, "connect", fresh)
    event.listen(engine.sync_engine, "checkin", fresh)
    event.listen(engine.sync_engine, "checkout", checkout)


def _sqlite_engine(database: DatabaseSettings, path: str | None) -> AsyncEngine:
    # A writer waits for the lock rather than failing at once under concurrent requests.
    connect_args: dict[str, Any] = {"timeout": 30}
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Processes sharing the file queue for the write lock without SQLite's long sleeps.
        connect_args["factory"] = WriterQueueConnection
    engine = create_async_engine(
        database.url,
        echo=database.echo,
        connect_args=connect_args,
        # One connection per process: every transaction takes SQLite's single write lock at
        # BEGIN anyway, and coroutines queueing for the connection are served in turn, where
        # connections of their own would wait in SQLite's busy handler, which sleeps in steps
        # of up to 100 ms (it halved the dispatcher's p99 approval-to-delivered).
        pool_size=1,
        max_overflow=0,
        module=one_trip_dbapi(),  # a statement per trip to aiosqlite's thread, not four
    )
    event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
    event.listen(engine.sync_engine, "begin", _begin_immediate)
    if "factory" in connect_args:
        # A file, in WAL mode: its log is checkpointed beside the writers, not in a commit.
        checkpoint_beside(engine, str(path))
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Take over transaction control from the driver so BEGIN IMMEDIATE below is what runs.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA foreign_keys=ON")  # SQLite leaves them off unless asked
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable with WAL; FULL costs an fsync per commit
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    # Every transaction takes the write lock at BEGIN: a read that later writes can then never
    # fail with "database is locked" half-way, which SQLite cannot retry for us. It goes to
    # SQLite with the transaction's first statement (one trip to aiosqlite's thread).
    adapted = connection.connection.dbapi_connection
    assert isinstance(adapted, OneTripConnection)  # this engine's module makes no other
    adapted.begin_with_next_statement("BEGIN IMMEDIATE")


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database cannot answer a trivial query."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
