"""A Telegram bot's updates kept in the database: what one process confirms, all still see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.storage.schema import telegram_updates
from broadcaster.targets import ConfiguredTarget, Directory
from broadcaster.telegram_inbox import SqlUpdateInbox
from channels.base import Post, Target
from channels.emulators.telegram import TelegramEmulator
from channels.telegram import TelegramChannel
from channels.telegram_inbox import FRESH_FOR, KeptUpdate, PostForward

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _forward(update_id: int, post_id: int, text: str) -> KeptUpdate:
    forward = PostForward(post_id, 1000 + post_id, text, NOW)
    return KeptUpdate(update_id, {"update_id": update_id, "message": {"text": text}}, forward)


def _comment(update_id: int, text: str) -> KeptUpdate:
    return KeptUpdate(update_id, {"update_id": update_id, "message": {"text": text}})


async def test_kept_updates_answer_offsets_forwards_and_messages(engine: AsyncEngine) -> None:
    inbox = SqlUpdateInbox(engine, "telegram-live", Clock())
    assert await inbox.next_offset() is None
    await inbox.keep([_forward(10, 1, "Evacuate now"), _comment(11, "Is Elm St closed?")])
    await inbox.keep([_forward(12, 2, "Evacuate now"), _comment(13, "Thanks")])
    # Read again by another process: kept once.
    await inbox.keep([_comment(13, "Thanks"), _forward(12, 2, "Evacuate now")])
    assert await inbox.next_offset() == 14

    newest = await inbox.forward_with_text("  Evacuate now\n")
    assert newest == PostForward(2, 1002, "Evacuate now", NOW)
    assert await inbox.forward_with_text("Evacuate") is None
    assert await inbox.forward_in_group(1001) == PostForward(1, 1001, "Evacuate now", NOW)
    assert await inbox.forward_in_group(5) is None

    assert [u.update_id for u in await inbox.messages_from(None, 10)] == [11, 13]
    assert [u.update_id for u in await inbox.messages_from(12, 10)] == [13]
    assert [u.body["message"]["text"] for u in await inbox.messages_from(0, 1)] == [
        "Is Elm St closed?"
    ]
    # Once the poller has stored the messages before 13, they are dropped; forwards stay.
    await inbox.forget_messages_before(13)
    assert [u.update_id for u in await inbox.messages_from(None, 10)] == [13]
    assert await inbox.forward_in_group(1001) is not None
    # Each bot has its own queue.
    assert await SqlUpdateInbox(engine, "telegram-drill", Clock()).next_offset() is None


async def test_a_week_old_update_sets_no_offset_and_is_deleted(engine: AsyncEngine) -> None:
    # After a week without updates Telegram may number them afresh from a random point; an
    # offset from the old numbers could confirm new updates unread.
    clock = Clock()
    inbox = SqlUpdateInbox(engine, "telegram-live", clock)
    await inbox.keep([_comment(500, "old")])
    clock.now = NOW + FRESH_FOR + timedelta(minutes=1)
    assert await inbox.next_offset() is None
    inbox_later = SqlUpdateInbox(engine, "telegram-live", clock)  # a process started since
    await inbox_later.keep([_comment(7, "new")])
    assert await inbox_later.next_offset() == 8
    async with engine.connect() as connection:
        kept = await connection.scalar(select(func.count()).select_from(telegram_updates))
    assert kept == 1, "the week-old update was deleted"


@pytest.fixture
async def emulator() -> AsyncIterator[TelegramEmulator]:
    emulator = TelegramEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


def _directory(emulator: TelegramEmulator, engine: AsyncEngine) -> Directory:
    directory = Directory()
    target = emulator.target(timeout_seconds=1.0)
    target = Target(target.settings, {"bot_token": SecretStr(emulator.token)})
    directory.add(ConfiguredTarget(target, TelegramChannel))
    directory.keep_adapter_state_in(engine)
    return directory


async def test_processes_sharing_the_database_see_what_another_confirmed(
    engine: AsyncEngine, emulator: TelegramEmulator
) -> None:
    # Two processes: each its own Directory and adapter, one database.
    polling, dispatching = _directory(emulator, engine), _directory(emulator, engine)
    [name] = polling.targets
    poller, reconciler = polling.adapter(name), dispatching.adapter(name)
    try:
        sent = await reconciler.publish(Post(text="Evacuate Riverside now"), "db:1")
        comments = await emulator.generate_replies(2, "Is Elm St closed?", sent.external_id)
        for number in range(150):  # more than one getUpdates page nobody read
            emulator.public_message(f"message {number}", private=True)
        late = await reconciler.publish(Post(text="Shelter at Main St school"), "db:2")

        messages, cursor = await poller.fetch_inbound(None)
        await poller.fetch_inbound(cursor)  # confirms: Telegram forgets them
        assert emulator.updates == []
        assert len(messages) == 152
        assert [m.in_reply_to for m in messages[:2]] == [sent.external_id] * 2
        assert messages[0].external_id.endswith(f":{comments[0]['message_id']}")

        for post, receipt in (
            ("Evacuate Riverside now", sent),
            ("Shelter at Main St school", late),
        ):
            found = await reconciler.find_published(Post(text=post), "db:1")
            assert found is not None and found.external_id == receipt.external_id
        assert await reconciler.find_published(Post(text="Never sent"), "db:3") is None

        # A comment that arrives next is read by the reconciler first (and confirmed by it);
        # the poller still gets it, once.
        emulator.public_message("Water at the door", private=True)
        await reconciler.find_published(Post(text="Never sent"), "db:3")
        await reconciler.find_published(Post(text="Never sent"), "db:3")
        assert emulator.updates == []
        messages, cursor = await poller.fetch_inbound(cursor)
        assert [m.text for m in messages] == ["Water at the door"]
        # The 152 messages the poller had stored before are no longer kept here.
        async with engine.connect() as connection:
            kept = await connection.scalar(
                select(func.count())
                .select_from(telegram_updates)
                .where(telegram_updates.c.post_id.is_(None))
            )
        assert kept == 1
        again, _ = await poller.fetch_inbound(cursor)
        assert list(again) == []
    finally:
        await polling.aclose()
        await dispatching.aclose()
