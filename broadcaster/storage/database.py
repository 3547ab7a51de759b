"""Opening the configured database ready for use by this version of the code."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.settings import DatabaseSettings
from broadcaster.storage import migrate
from broadcaster.storage.engine import create_engine


async def open_database(database: DatabaseSettings) -> AsyncEngine:
    """An engine on a schema at head: SQLite is upgraded in place, PostgreSQL must already be.

    PostgreSQL is upgraded by an operator (`broadcaster db upgrade`) so a rolling deploy of
    several processes never races a schema change; SQLite has one process and upgrades itself.
    """
    engine = create_engine(database)
    try:
        if database.is_sqlite:
            await migrate.upgrade(engine)
        else:
            await migrate.require_current(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine
