"""Delivery changes as a stream for live boards (GET /events), whichever process made them.

Workers may run in other processes and on other machines, so changes are read back from the
shared database: one poller per web process, only while someone listens, reads deliveries whose
`updated_at` moved since its cursor and hands each change to every subscriber. The cursor
trails by a couple of seconds (and changes already passed on are remembered), so a worker whose
clock is slightly behind, or a transaction that committed late, is not missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.dispatch.payload import mask_recipient
from broadcaster.storage.schema import alert_versions, deliveries

log = logging.getLogger(__name__)

POLL_SECONDS: Final = 0.5
OVERLAP: Final = timedelta(seconds=2)
_PAGE: Final = 2000
_QUEUE: Final = 10_000  # per listener; a listener that falls this far behind loses the oldest


def delivery_event(row: Any) -> dict[str, Any]:
    return {
        "delivery_id": row.id,
        "alert_id": row.alert_id,
        "version_id": row.version_id,
        "channel": row.channel,
        "target": row.target,
        "recipient": mask_recipient(row.recipient),
        "kind": row.kind,
        "state": row.state,
        "attempts": row.attempts,
        "url": row.external_url,
        "error": row.last_error,
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
    }


class DeliveryFeed:
    def __init__(self, engine: AsyncEngine, poll_seconds: float = POLL_SECONDS) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None
        self._cursor = datetime.now(UTC) - OVERLAP
        self._passed_on: dict[tuple[int, str], datetime] = {}
        self.closed = asyncio.Event()

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=_QUEUE)
        if not self._listeners:
            self._cursor = datetime.now(UTC) - OVERLAP
            self._passed_on.clear()
        self._listeners.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="delivery feed")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._listeners.discard(queue)

    async def close(self) -> None:
        self.closed.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _poll(self) -> None:
        while self._listeners and not self.closed.is_set():
            try:
                await self.read_once()
            except Exception as error:
                log.warning("reading delivery changes failed: %s", type(error).__name__)
            await asyncio.sleep(self.poll_seconds)

    async def read_once(self) -> int:
        """Pass on every change since the cursor (less the overlap); returns how many."""
        after_at, after_id = self._cursor - OVERLAP, 0
        passed = 0
        newest = self._cursor
        while True:
            rows = await self._page(after_at, after_id)
            for row in rows:
                seen = (row.id, row.updated_at.isoformat())
                if seen in self._passed_on:
                    continue
                self._passed_on[seen] = row.updated_at
                newest = max(newest, row.updated_at)
                event = delivery_event(row)
                for queue in list(self._listeners):
                    if queue.full():
                        queue.get_nowait()  # the slowest board loses its oldest change
                    queue.put_nowait(event)
                passed += 1
            if len(rows) < _PAGE:
                break
            after_at, after_id = rows[-1].updated_at, rows[-1].id
        self._cursor = newest
        horizon = self._cursor - 2 * OVERLAP
        self._passed_on = {k: at for k, at in self._passed_on.items() if at >= horizon}
        return passed

    async def _page(self, after_at: datetime, after_id: int) -> list[Any]:
        query = (
            select(
                deliveries.c.id,
                deliveries.c.version_id,
                alert_versions.c.alert_id,
                deliveries.c.channel,
                deliveries.c.target,
                deliveries.c.recipient,
                deliveries.c.kind,
                deliveries.c.state,
                deliveries.c.attempts,
                deliveries.c.external_url,
                deliveries.c.last_error,
                deliveries.c.updated_at,
            )
            .join(alert_versions, alert_versions.c.id == deliveries.c.version_id)
            .where(
                or_(
                    deliveries.c.updated_at > after_at,
                    and_(deliveries.c.updated_at == after_at, deliveries.c.id > after_id),
                )
            )
            .order_by(deliveries.c.updated_at, deliveries.c.id)
            .limit(_PAGE)
        )
        async with self.engine.connect() as connection:
            return list((await connection.execute(query)).all())
