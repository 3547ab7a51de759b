"""A Telegram bot's inbox in the service's database, shared by every process of the service.

The poller (comments for the triage queue) and each dispatcher (reconciling after an ambiguous
send) all read the bot's one getUpdates queue, and whatever one of them confirms Telegram
forgets. Each keeps what it read in `telegram_updates` before confirming it, so the others
still find the forwards of our posts and the comments there (channels/telegram_inbox.py says
why the adapter needs both).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.storage.schema import telegram_updates
from channels.telegram_inbox import FRESH_FOR, KeptUpdate, PostForward, text_digest

__all__ = ["SqlUpdateInbox"]

log = logging.getLogger(__name__)

# Updates are kept FRESH_FOR: only those that recent set the offset (Telegram may renumber after
# a week of silence), and older ones are deleted. Six days of forwards also cover every
# reconciliation, which ends within hours of the try it checks.
PURGE_EVERY_SECONDS: Final = 3600.0

_t = telegram_updates.c
_KEPT_COLUMNS: Final = (
    "body",
    "post_id",
    "group_message_id",
    "text_digest",
    "posted_at",
    "kept_at",
)


class SqlUpdateInbox:
    """The updates of target `target`'s bot, kept in `telegram_updates`."""

    def __init__(
        self,
        engine: AsyncEngine,
        target: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.target = target
        self.clock = clock
        self._purged_at: float | None = None

    async def next_offset(self) -> int | None:
        recent = self.clock() - FRESH_FOR
        async with self.engine.connect() as connection:
            newest = await connection.scalar(
                select(func.max(_t.update_id)).where(_t.target == self.target, _t.kept_at > recent)
            )
        return None if newest is None else int(newest) + 1

    async def keep(self, updates: Sequence[KeptUpdate]) -> None:
        if not updates:
            return
        now = self.clock()
        rows = [self._row(update, now) for update in updates]
        async with self.engine.begin() as connection:
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(telegram_updates)
            # The same update read again by another process: the same content, kept once. (An
            # id Telegram reused after a week's silence replaces the old row, never the reverse.)
            await connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[_t.target, _t.update_id],
                    set_={name: statement.excluded[name] for name in _KEPT_COLUMNS},
                ),
                rows,
            )
            if self._purged_at is None or time.monotonic() - self._purged_at > PURGE_EVERY_SECONDS:
                self._purged_at = time.monotonic()
                await connection.execute(
                    delete(telegram_updates).where(
                        _t.target == self.target, _t.kept_at < now - FRESH_FOR
                    )
                )

    async def forward_with_text(self, text: str) -> PostForward | None:
        return await self._forward(_t.text_digest == text_digest(text))

    async def forward_in_group(self, group_message_id: int) -> PostForward | None:
        return await self._forward(_t.group_message_id == group_message_id)

    async def messages_from(self, update_id: int | None, limit: int) -> Sequence[KeptUpdate]:
        query = select(_t.update_id, _t.body).where(_t.target == self.target, _t.post_id.is_(None))
        if update_id is not None:
            query = query.where(_t.update_id >= update_id)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query.order_by(_t.update_id).limit(limit))).all()
        return [KeptUpdate(int(row.update_id), row.body) for row in rows]

    async def forget_messages_before(self, update_id: int) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                delete(telegram_updates).where(
                    _t.target == self.target, _t.post_id.is_(None), _t.update_id < update_id
                )
            )

    async def _forward(self, condition: ColumnElement[bool]) -> PostForward | None:
        """The newest kept forward of our posts that meets `condition`."""
        query = (
            select(_t.post_id, _t.group_message_id, _t.body, _t.posted_at)
            .where(_t.target == self.target, _t.post_id.is_not(None), condition)
            .order_by(_t.update_id.desc())
            .limit(1)
        )
        async with self.engine.connect() as connection:
            row = (await connection.execute(query)).first()
        if row is None:
            return None
        message = row.body.get("message") or {}
        return PostForward(
            int(row.post_id), int(row.group_message_id), message.get("text") or "", row.posted_at
        )

    def _row(self, update: KeptUpdate, now: datetime) -> dict[str, Any]:
        forward = update.forward
        return {
            "target": self.target,
            "update_id": update.update_id,
            "body": dict(update.body),
            "post_id": forward.post_id if forward else None,
            "group_message_id": forward.group_message_id if forward else None,
            "text_digest": text_digest(forward.text) if forward else None,
            "posted_at": forward.posted_at if forward else None,
            "kept_at": now,
        }
