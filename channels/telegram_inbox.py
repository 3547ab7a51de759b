"""Where a Telegram bot keeps the updates it read, before telling Telegram to forget them.

getUpdates is one queue per bot. An update stays in it until a later getUpdates call passes an
offset beyond it, and then it is gone for good; a page holds at most 100 updates. The adapter
needs two things from that queue: the comments people send (for the triage queue) and the
automatic forwards of our own channel posts (the only way a bot can learn what it posted, which
reconciliation needs after an ambiguous failure). Several processes read the same queue: the
poller and every dispatcher reconciling.

So every update is kept in an inbox before its offset is confirmed, and both needs are answered
from the inbox: the service keeps it in its database (broadcaster/telegram_inbox.py) so that
what one process confirmed every other process still sees; `MemoryUpdateInbox` keeps it in
this process only, for an adapter used on its own.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

__all__ = [
    "FRESH_FOR",
    "KeptUpdate",
    "MemoryUpdateInbox",
    "PostForward",
    "UpdateInbox",
    "text_digest",
]

MEMORY_KEEPS: Final = 5000  # updates a MemoryUpdateInbox holds; the oldest go first
# Telegram numbers updates in sequence, but after a week without any it may start again from a
# random number: an offset taken from older updates could then confirm (lose) new ones unread.
# So only updates kept within this window set the offset.
FRESH_FOR: Final = timedelta(days=6)


def text_digest(text: str) -> str:
    """How a post's text is looked up: Telegram may trim the ends, never the middle."""
    return hashlib.sha256(text.strip().encode()).hexdigest()


@dataclass(frozen=True)
class PostForward:
    """Telegram's copy of one of our channel posts in the linked discussion group."""

    post_id: int  # the post's message id in the channel: what a receipt names
    group_message_id: int  # the copy's id in the group: comments thread under it
    text: str
    posted_at: datetime


@dataclass(frozen=True)
class KeptUpdate:
    update_id: int
    body: Mapping[str, Any]  # the Update as the Bot API sent it (Update.to_dict())
    forward: PostForward | None = None  # set when it is the forward of one of our posts


class UpdateInbox(Protocol):
    async def next_offset(self) -> int | None:
        """The offset the next getUpdates passes: one past the newest update kept, or None
        (read from the oldest pending update) when nothing recent is kept."""
        ...

    async def keep(self, updates: Sequence[KeptUpdate]) -> None:
        """Keep `updates` durably before returning; keeping one again is harmless."""
        ...

    async def forward_with_text(self, text: str) -> PostForward | None:
        """The newest forward of our post whose text is `text` (ends stripped)."""
        ...

    async def forward_in_group(self, group_message_id: int) -> PostForward | None:
        """The forward that is message `group_message_id` of the discussion group."""
        ...

    async def messages_from(self, update_id: int | None, limit: int) -> Sequence[KeptUpdate]:
        """Updates that are not forwards of our posts, from `update_id` on, oldest first."""
        ...

    async def forget_messages_before(self, update_id: int) -> None:
        """Drop the people's messages before `update_id`: the reader has stored them (as
        reports, under their retention rules) and needs them no more. Forwards stay."""
        ...


class MemoryUpdateInbox:
    """An inbox in this process only: what another process confirmed it never sees."""

    def __init__(
        self, keeps: int = MEMORY_KEEPS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._keeps = keeps
        self._clock = clock  # seconds
        self._updates: OrderedDict[int, KeptUpdate] = OrderedDict()
        self._kept_at: dict[int, float] = {}

    async def next_offset(self) -> int | None:
        fresh_since = self._clock() - FRESH_FOR.total_seconds()
        fresh = [i for i, at in self._kept_at.items() if at > fresh_since]
        return max(fresh) + 1 if fresh else None

    async def keep(self, updates: Sequence[KeptUpdate]) -> None:
        now = self._clock()
        for update in updates:
            self._updates[update.update_id] = update
            self._kept_at[update.update_id] = now
        if len(self._updates) > self._keeps:
            for update_id in sorted(self._updates)[: len(self._updates) - self._keeps]:
                del self._updates[update_id], self._kept_at[update_id]

    async def forward_with_text(self, text: str) -> PostForward | None:
        wanted = text.strip()
        for update_id in sorted(self._updates, reverse=True):
            forward = self._updates[update_id].forward
            if forward is not None and forward.text.strip() == wanted:
                return forward
        return None

    async def forward_in_group(self, group_message_id: int) -> PostForward | None:
        for update in self._updates.values():
            if update.forward is not None and update.forward.group_message_id == group_message_id:
                return update.forward
        return None

    async def messages_from(self, update_id: int | None, limit: int) -> Sequence[KeptUpdate]:
        start = update_id if update_id is not None else -(2**63)
        found = [
            self._updates[i]
            for i in sorted(self._updates)
            if i >= start and self._updates[i].forward is None
        ]
        return found[:limit]

    async def forget_messages_before(self, update_id: int) -> None:
        for kept_id in [i for i, u in self._updates.items() if i < update_id and not u.forward]:
            del self._updates[kept_id], self._kept_at[kept_id]
