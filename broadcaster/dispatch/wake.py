"""Waking workers when there is work: at once in this process, by NOTIFY across processes.

A release, a resume or a requeue calls `notify_workers` inside its transaction: on PostgreSQL
that is `pg_notify`, which PostgreSQL delivers only when the transaction commits, to every
`broadcaster worker` listening (`listen`). In one process (`broadcaster serve` with its in-process
worker, the embedded SQLite default) the `Wakeup` is shared and set directly. Either way workers
also poll every `dispatch.poll_interval_seconds`, so a lost notification only costs that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

NOTIFY_CHANNEL: Final = "broadcaster_outbox"


class Wakeup:
    """A level-triggered wake-up for the dispatcher loop (many notifies, one wake)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    def take(self) -> bool:
        """Whether a wake-up came since the last wait or take (and it counts as seen now)."""
        came = self._event.is_set()
        self._event.clear()
        return came

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 (a poll interval, not a deadline)
        """True if woken, False if `timeout` passed first."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        # Cleared only here: a waiter cancelled (the dispatcher also waits for other things)
        # must not swallow a wake-up that came as it was cancelled.
        self._event.clear()
        return True


async def notify_workers(connection: AsyncConnection, wake: Wakeup | None = None) -> None:
    """Tell workers that deliveries became due; delivered when the caller's transaction commits."""
    if connection.dialect.name == "postgresql":
        await connection.execute(
            text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL}
        )
    if wake is not None:
        wake.notify()


@contextlib.asynccontextmanager
async def listen(engine: AsyncEngine, wake: Wakeup) -> AsyncIterator[None]:
    """While inside, NOTIFYs from other processes set `wake` (PostgreSQL; SQLite: nothing)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection

        def on_notify(*_args: object) -> None:
            wake.notify()

        await driver.add_listener(NOTIFY_CHANNEL, on_notify)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # the connection may already be gone
                await driver.remove_listener(NOTIFY_CHANNEL, on_notify)
