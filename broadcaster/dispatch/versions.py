"""The released versions deliveries belong to, as workers need them (cached: they never change)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.alert import AlertContent, Mode, MsgType
from broadcaster.alerts.publication import alert_page_url
from broadcaster.storage.schema import alert_versions
from channels.base import AlertVersion

_CACHED: Final = 2000


@dataclass(frozen=True)
class VersionInfo:
    alert_id: int
    number: int
    released: bool  # has a CAP identity: only released versions may ever be sent
    mode: Mode
    msg_type: MsgType
    version: AlertVersion | None  # None when not released


class VersionCache:
    def __init__(self, engine: AsyncEngine, public_base: str) -> None:
        self.engine = engine
        self.public_base = public_base
        self._known: OrderedDict[int, VersionInfo] = OrderedDict()
        # Reads under way: a release's tries all start at once and ask for the same version;
        # one read answers them all (eight reads, on eight pooled connections, held up the
        # first posts of a release to eight channels).
        self._reading: dict[int, asyncio.Task[VersionInfo | None]] = {}

    async def get(self, version_id: int) -> VersionInfo | None:
        known = self._known.get(version_id)
        if known is not None:
            self._known.move_to_end(version_id)
            return known
        reading = self._reading.get(version_id)
        if reading is None or reading.done():  # a finished read is never an answer: ask again
            reading = asyncio.ensure_future(self._read(version_id))
            self._reading[version_id] = reading
            reading.add_done_callback(self._forget_read(version_id))
        # Shielded: one asker cancelled (its try stopped) does not cancel the others' answer.
        return await asyncio.shield(reading)

    def _forget_read(self, version_id: int) -> Callable[[asyncio.Task[VersionInfo | None]], None]:
        def forget(read: asyncio.Task[VersionInfo | None]) -> None:
            if self._reading.get(version_id) is read:
                del self._reading[version_id]
            if not read.cancelled():
                read.exception()  # seen: every asker may have stopped waiting for it

        return forget

    async def _read(self, version_id: int) -> VersionInfo | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(alert_versions).where(alert_versions.c.id == version_id)
                )
            ).first()
        if row is None:
            return None
        content = AlertContent.model_validate(row.content)
        released = row.released_at is not None and row.identifier is not None
        version = (
            AlertVersion(
                alert_id=row.alert_id,
                version_id=row.id,
                number=row.number,
                identifier=row.identifier,
                sender=row.sender,
                sent=row.sent_at,
                content=content,
                public_url=alert_page_url(self.public_base, row.alert_id),
            )
            if released
            else None
        )
        info = VersionInfo(
            row.alert_id, row.number, released, content.mode, content.msg_type, version
        )
        if released:  # an unreleased version may still be released: do not remember that
            self._known[version_id] = info
            while len(self._known) > _CACHED:
                self._known.popitem(last=False)
        return info
