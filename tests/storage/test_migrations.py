"""The migrations build exactly the schema the code expects, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.settings import DatabaseSettings
from broadcaster.storage import migrate
from broadcaster.storage.database import open_database
from broadcaster.storage.engine import create_engine
from broadcaster.storage.schema import metadata


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_database_at_head_matches_the_schema_module(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    assert differences == [], f"migrations and schema.py disagree: {differences}"
    assert await migrate.current_revision(engine) == migrate.head_revision()


async def test_upgrade_twice_changes_nothing(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert {"users", "alert_versions", "deliveries", "reports", "audit_log"} <= tables


async def test_sqlite_is_upgraded_automatically_on_open(tmp_path: Path) -> None:
    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/nested/dir/fresh.db")
    engine = await open_database(settings)
    try:
        assert await migrate.current_revision(engine) == migrate.head_revision()
        async with engine.connect() as connection:
            journal = await connection.exec_driver_sql("PRAGMA journal_mode")
            assert journal.scalar() == "wal"
            foreign_keys = await connection.exec_driver_sql("PRAGMA foreign_keys")
            assert foreign_keys.scalar() == 1
    finally:
        await engine.dispose()


async def test_an_empty_postgres_database_is_refused_until_upgraded(
    postgres_empty_url: str,
) -> None:
    engine = create_engine(DatabaseSettings(url=postgres_empty_url))
    try:
        with pytest.raises(migrate.SchemaOutOfDate, match="run `broadcaster db upgrade`"):
            await open_database(DatabaseSettings(url=postgres_empty_url))
        await migrate.upgrade(engine)
        reopened = await open_database(DatabaseSettings(url=postgres_empty_url))
        await reopened.dispose()
    finally:
        await engine.dispose()
