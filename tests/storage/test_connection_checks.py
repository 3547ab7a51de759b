"""PostgreSQL connections from the pool: checked after idling, recovered after a disconnect."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.settings import DatabaseSettings
from broadcaster.storage import engine as engine_module
from broadcaster.storage.engine import create_engine


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT pg_backend_pid()")))


async def _terminate(admin: AsyncEngine, pid: int) -> None:
    async with admin.connect() as connection:
        await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


@pytest.fixture
async def postgres_pair(database_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    if not database_url.startswith("postgresql"):
        pytest.skip("connection checks on checkout are PostgreSQL's (SQLite has no server)")
    settings = DatabaseSettings(url=database_url, pool_size=1)
    engine, admin = create_engine(settings), create_engine(settings)
    yield engine, admin
    await engine.dispose()
    await admin.dispose()


async def test_a_connection_killed_while_idle_is_replaced_before_use(
    postgres_pair: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, admin = postgres_pair
    first = await _backend_pid(engine)
    await _terminate(admin, first)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # "it sat idle"
    assert await _backend_pid(engine) != first  # checked, found dead, replaced: no error


async def test_a_connection_killed_between_quick_uses_fails_once_then_recovers(
    postgres_pair: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, admin = postgres_pair
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 3600.0)  # "used a moment ago"
    first = await _backend_pid(engine)
    await _terminate(admin, first)
    with pytest.raises(DBAPIError) as failed:
        await _backend_pid(engine)
    assert failed.value.connection_invalidated
    assert await _backend_pid(engine) != first  # the caller's retry gets a fresh connection
