"""Deleting what sign-in no longer needs: old sessions and sign-in attempts, every hour."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Final

from aiohttp import web
from sqlalchemy import delete

from broadcaster.auth import throttle
from broadcaster.auth.sessions import SessionStore
from broadcaster.auth.web_sessions import SESSIONS
from broadcaster.storage.schema import sessions

log = logging.getLogger(__name__)
EVERY_SECONDS: Final = 3600.0
# Sessions are kept this long after their last use (who was signed in when), then deleted.
KEEP_SESSIONS: Final = timedelta(days=30)


async def purge(store: SessionStore) -> tuple[int, int]:
    """Delete sessions and sign-in attempts nobody needs any more; (sessions, attempts)."""
    now = store.clock()
    async with store.engine.begin() as connection:
        attempts = await throttle.purge(connection, now)
        result = await connection.execute(
            delete(sessions).where(sessions.c.last_seen_at < now - KEEP_SESSIONS)
        )
    return int(result.rowcount), attempts


async def housekeeping(app: web.Application) -> AsyncIterator[None]:
    async def loop() -> None:
        while True:
            await asyncio.sleep(EVERY_SECONDS)
            try:
                await purge(app[SESSIONS])
            except Exception:
                log.exception("console housekeeping failed; it runs again in an hour")

    task = asyncio.create_task(loop(), name="console housekeeping")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
