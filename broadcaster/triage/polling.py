"""Polling the channels that are read rather than pushed (Mastodon, Telegram), and the webhook
channels as a fallback (X mentions with since_id, Facebook and Instagram comments).

Each target's cursor lives in channel_state.inbound_cursor and moves only after the messages it
covers are stored, so a crash re-reads them (and idempotent ingestion makes that harmless).
A paused target (breach response) is not polled: its credentials are not used at all.
On PostgreSQL an advisory lock per target lets only one process poll it at a time (Telegram
would answer two pollers with 409 Conflict); SQLite has one process.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broadcaster.storage.schema import channel_state
from broadcaster.targets import ConfiguredTarget, Directory
from broadcaster.triage.ingest import IngestBusy, Ingestor, IngestSlow
from broadcaster.triage.metrics import TriageMetrics
from broadcaster.triage.normalise import Normaliser
from channels.base import ChannelError, InboundMode

__all__ = ["PollResult", "Poller", "polled_targets"]

log = logging.getLogger(__name__)
_POLLED = (InboundMode.poll, InboundMode.poll_and_webhook)


def polled_targets(directory: Directory) -> list[ConfiguredTarget]:
    return [t for t in directory if t.channel_class.limits.inbound in _POLLED]


@dataclass(frozen=True)
class PollResult:
    target: str
    received: int
    new: int
    cursor: str | None
    error: str | None = None


class Poller:
    def __init__(
        self,
        engine: AsyncEngine,
        directory: Directory,
        normaliser: Normaliser,
        ingestor: Ingestor,
        metrics: TriageMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.engine = engine
        self.directory = directory
        # What a poll reads, a dispatcher reconciling may have confirmed first (Telegram).
        directory.keep_adapter_state_in(engine)
        self.normaliser = normaliser
        self.ingestor = ingestor
        self.metrics = metrics
        self.clock = clock

    async def poll_all(self) -> list[PollResult]:
        return [await self.poll(configured.name) for configured in polled_targets(self.directory)]

    async def poll(self, target_name: str) -> PollResult:
        configured = self.directory.targets[target_name]
        channel = configured.channel_class.name
        if self.engine.dialect.name != "postgresql":
            return await self._poll(target_name, channel)
        async with self.engine.connect() as lock:
            if not await _try_lock(lock, target_name):
                return PollResult(target_name, 0, 0, None, "another process is polling it")
            try:
                return await self._poll(target_name, channel)
            finally:
                await _unlock(lock, target_name)

    async def _poll(self, target_name: str, channel: str) -> PollResult:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(channel_state.c.inbound_cursor, channel_state.c.paused).where(
                        channel_state.c.channel == channel, channel_state.c.target == target_name
                    )
                )
            ).first()
        if row is not None and row.paused:
            self.metrics.polls.labels(target_name, "paused").inc()
            return PollResult(target_name, 0, 0, row.inbound_cursor, "paused")
        cursor = row.inbound_cursor if row is not None else None
        adapter = self.directory.adapter(target_name)
        try:
            messages, next_cursor = await adapter.fetch_inbound(cursor)
        except ChannelError as error:
            self.metrics.polls.labels(target_name, "error").inc()
            log.warning("triage: polling %s failed: %s", target_name, error.message)
            return PollResult(target_name, 0, 0, cursor, error.message)
        found = [self.normaliser.from_message(message, target_name) for message in messages]
        try:
            results = await self.ingestor.submit(found)
        except (IngestBusy, IngestSlow) as busy:
            # The cursor stays where it was: the next poll reads these messages again.
            self.metrics.polls.labels(target_name, "busy").inc()
            return PollResult(target_name, len(messages), 0, cursor, type(busy).__name__)
        new = sum(1 for result in results if result.created)
        if next_cursor != cursor:
            await self._save_cursor(channel, target_name, next_cursor)
        self.metrics.polls.labels(target_name, "ok").inc()
        return PollResult(target_name, len(messages), new, next_cursor)

    async def _save_cursor(self, channel: str, target_name: str, cursor: str | None) -> None:
        now = self.clock()
        async with self.engine.begin() as connection:
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            await connection.execute(
                dialect.insert(channel_state)
                .values(channel=channel, target=target_name, inbound_cursor=cursor, updated_at=now)
                .on_conflict_do_update(
                    index_elements=["channel", "target"],
                    set_={"inbound_cursor": cursor, "updated_at": now},
                )
            )


def _lock_key(target_name: str) -> int:
    digest = hashlib.sha256(b"triage-poll:" + target_name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _try_lock(connection: AsyncConnection, target_name: str) -> bool:
    got = await connection.scalar(
        text("SELECT pg_try_advisory_lock(:key)"), {"key": _lock_key(target_name)}
    )
    await connection.commit()
    return bool(got)


async def _unlock(connection: AsyncConnection, target_name: str) -> None:
    await connection.execute(
        text("SELECT pg_advisory_unlock(:key)"), {"key": _lock_key(target_name)}
    )
    await connection.commit()
