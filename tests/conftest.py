"""Shared fixtures: a clean database per test, on SQLite and on PostgreSQL.

Storage tests take the `engine` (or `database_url`) fixture and so run once per backend. The
PostgreSQL variant runs whenever BROADCASTER_TEST_POSTGRES_URL names a server we may create
databases on (`.ci/run` sets it); without it those variants are skipped, never silently passed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from broadcaster.settings import DatabaseSettings
from broadcaster.storage import migrate
from broadcaster.storage.engine import create_engine
from broadcaster.storage.schema import metadata

POSTGRES_ENV = "BROADCASTER_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]
REPO_ROOT = Path(__file__).resolve().parent.parent


async def _migrated(url: str) -> None:
    engine = create_engine(DatabaseSettings(url=url))
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


async def _admin(admin_url: str, statement: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy, which is faster than migrating again."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(_migrated(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database of this test session's own, dropped at the end."""
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(f"{POSTGRES_ENV} is not set; PostgreSQL variants need a server to run on")
    name = f"cb_test_{os.getpid()}_{secrets.token_hex(3)}"
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(_migrated(url))
        yield url
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate_all(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
            await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """The URL of a clean, migrated database on each backend in turn."""
    if request.param == "sqlite":
        path = tmp_path / "broadcaster.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    # Requested lazily so SQLite-only runs never need a PostgreSQL server.
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(_truncate_all(url))
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(DatabaseSettings(url=database_url))
    yield engine
    await engine.dispose()


@pytest.fixture
def postgres_empty_url() -> Iterator[str]:
    """A brand-new, empty PostgreSQL database (no migrations run), dropped afterwards."""
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(f"{POSTGRES_ENV} is not set; PostgreSQL variants need a server to run on")
    name = f"cb_empty_{os.getpid()}_{secrets.token_hex(3)}"
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield url
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
