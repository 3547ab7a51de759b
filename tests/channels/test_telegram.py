"""Telegram specifics beyond the contract: the real python-telegram-bot against the emulator."""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr, ValidationError

from approvals.alert import EXERCISE_MARKING, MsgType, Status
from channels.base import (
    AmbiguousError,
    AuthError,
    PermanentError,
    Post,
    Receipt,
    Target,
    TargetMode,
    TransientError,
)
from channels.emulators.base import Fault, FaultKind
from channels.emulators.telegram import FLOOD_LIMIT, TelegramEmulator
from channels.telegram import (
    LANGUAGE_DIVIDER,
    TELEGRAM_LIMIT,
    TelegramChannel,
    TelegramSettings,
    telegram_length,
)
from channels.telegram_inbox import MemoryUpdateInbox
from tests.channels import samples

LANGUAGES = ("en-US", "es-US", "fr-CA", "zh-CN")


@pytest.fixture
async def emulator() -> AsyncIterator[TelegramEmulator]:
    emulator = TelegramEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


def _channel(
    emulator: TelegramEmulator, token: str | None = None, **settings: Any
) -> TelegramChannel:
    # Five seconds: nothing here waits out a timeout, and one second once ran out on a
    # loaded machine.
    target = emulator.target(timeout_seconds=5.0)
    target = Target(
        target.settings.model_copy(update=settings),
        {"bot_token": SecretStr(token or emulator.token)},
    )
    channel = emulator.channel(target)
    assert isinstance(channel, TelegramChannel)
    return channel


@pytest.fixture
async def channel(emulator: TelegramEmulator) -> AsyncIterator[TelegramChannel]:
    channel = _channel(emulator)
    yield channel
    await channel.aclose()


def _posts(emulator: TelegramEmulator) -> list[dict[str, Any]]:
    return [effect.data for effect in emulator.effects_of("post")]


def _version_with_description(description: str, **options: Any) -> Any:
    version = samples.version(channels=("telegram",), **options)
    info = version.content.infos[0].model_copy(update={"description": description})
    content = version.content.model_copy(update={"infos": (info,)})
    return dataclasses.replace(version, content=content)


async def _publish_thread(channel: TelegramChannel, posts: list[Post], key: str) -> list[Receipt]:
    receipts: list[Receipt] = []
    for post in posts:
        reply_to = receipts[-1] if receipts else None
        receipts.append(await channel.publish(post, f"{key}:{post.part}", reply_to=reply_to))
    return receipts


# --- rendering -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "version", "parts"),
    [
        ("short", samples.version(channels=("telegram",)), 1),
        ("long fits one message", samples.version(long=True, channels=("telegram",)), 1),
        ("four languages", samples.version(languages=LANGUAGES, channels=("telegram",)), 1),
        ("very long", _version_with_description(samples.LONG_DESCRIPTION * 10), 3),
        # 3,000 waves are 3,000 code points but 6,000 UTF-16 units: more than one message.
        ("emoji", _version_with_description("🌊" * 3000), 3),
        (
            "exercise, very long",
            _version_with_description(samples.LONG_DESCRIPTION * 10, status=Status.exercise),
            3,
        ),
        ("beyond four parts", _version_with_description(samples.LONG_DESCRIPTION * 40), 4),
    ],
)
async def test_rendered_messages_fit_and_telegram_takes_every_one(
    channel: TelegramChannel, emulator: TelegramEmulator, label: str, version: Any, parts: int
) -> None:
    posts = channel.render(version)
    assert len(posts) == parts, label
    for post in posts:
        assert post.length == telegram_length(post.text) <= TELEGRAM_LIMIT
        assert (EXERCISE_MARKING in post.text) == (version.content.status is Status.exercise)
    await _publish_thread(channel, posts, "render")
    recorded = _posts(emulator)
    assert [p["text"] for p in recorded] == [post.text for post in posts]
    assert [p["reply_to"] for p in recorded] == [None] + [p["id"] for p in recorded[:-1]]


def test_every_language_is_in_the_one_message_first_language_first(
    channel: TelegramChannel,
) -> None:
    [post] = channel.render(samples.version(languages=LANGUAGES, channels=("telegram",)))
    headlines = ["Evacuate Riverside", "Evacúe Riverside", "Évacuez Riverside", "立即撤离河滨区"]
    positions = [post.text.index(headline) for headline in headlines]
    assert positions == sorted(positions)
    assert post.text.count(LANGUAGE_DIVIDER) == 3
    assert post.language == "en-US"


def test_a_message_cut_at_four_parts_says_so_and_keeps_the_link(channel: TelegramChannel) -> None:
    version = _version_with_description(samples.LONG_DESCRIPTION * 40)
    posts = channel.render(version)
    assert version.public_url in posts[0].text
    assert posts[-1].text.split("\n")[-2].endswith("…")


def test_utf16_length_counts_astral_characters_twice() -> None:
    assert telegram_length("abc") == 3
    assert telegram_length("Évacuez 立即") == 10
    assert telegram_length("🌊") == 2


# --- errors, as Telegram says them -----------------------------------------------------------


async def test_a_message_over_4096_utf16_units_is_refused_as_too_long(
    channel: TelegramChannel, emulator: TelegramEmulator
) -> None:
    text = "🌊" * 2049  # 2,049 code points, 4,098 UTF-16 units
    with pytest.raises(PermanentError) as caught:
        await channel.publish(Post(text=text), "long:1")
    assert "message is too long" in caught.value.message.lower()
    assert caught.value.status == 400
    assert _posts(emulator) == []


@pytest.mark.parametrize(
    ("token", "status"),
    [
        ("7100000001:" + "A" * 35, 401),  # well formed, not this bot's: 401 Unauthorized
        ("not-a-token", 401),  # malformed: Telegram answers 404 Not Found
    ],
)
async def test_a_rejected_token_is_an_auth_error_that_never_shows_the_token(
    emulator: TelegramEmulator, token: str, status: int
) -> None:
    channel = _channel(emulator, token=token)
    try:
        with pytest.raises(AuthError) as caught:
            await channel.publish(Post(text="Test"), "auth:1")
    finally:
        await channel.aclose()
    assert caught.value.status == status
    assert token not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_a_bot_removed_from_the_channel_is_an_auth_error(
    channel: TelegramChannel, emulator: TelegramEmulator
) -> None:
    emulator.bot_in_channel = False
    with pytest.raises(AuthError) as caught:
        await channel.publish(Post(text="Test"), "kicked:1")
    assert "bot is not a member of the channel chat" in caught.value.message.lower()
    assert caught.value.status == 403


async def test_a_channel_the_bot_cannot_see_is_an_auth_error(emulator: TelegramEmulator) -> None:
    channel = _channel(emulator, chat_id="@no_such_channel")
    try:
        with pytest.raises(AuthError) as caught:
            await channel.publish(Post(text="Test"), "nochat:1")
    finally:
        await channel.aclose()
    assert "chat not found" in caught.value.message.lower()


async def test_flood_control_gives_telegrams_own_wait(
    channel: TelegramChannel, emulator: TelegramEmulator
) -> None:
    for n in range(FLOOD_LIMIT):
        await channel.publish(Post(text=f"Message {n}"), f"flood:{n}")
    with pytest.raises(TransientError) as caught:
        await channel.publish(Post(text="One too many"), "flood:x")
    assert caught.value.retry_after is not None
    assert 55 <= caught.value.retry_after <= 61
    assert caught.value.status == 429
    assert len(_posts(emulator)) == FLOOD_LIMIT


@pytest.mark.parametrize(
    ("status", "writes", "expected"),
    [
        (500, True, AmbiguousError),  # Telegram's JSON 500: the message may exist
        (502, True, AmbiguousError),  # nginx's HTML page
        (500, False, TransientError),  # a read: nothing to reconcile
        (502, False, TransientError),
    ],
)
async def test_server_errors_are_ambiguous_on_sends_and_transient_on_reads(
    channel: TelegramChannel,
    emulator: TelegramEmulator,
    status: int,
    writes: bool,
    expected: type[Exception],
) -> None:
    emulator.add_fault(Fault(FaultKind.server_error, status=status))
    call = channel.publish(Post(text="Test"), "5xx:1") if writes else channel.fetch_inbound(None)
    with pytest.raises(expected):
        await call


async def test_telegram_out_of_reach_is_transient_even_for_a_send() -> None:
    emulator = TelegramEmulator()
    await emulator.start()
    channel = _channel(emulator)
    await emulator.stop()  # nothing listens there now: the request can never have arrived
    try:
        with pytest.raises(TransientError):
            await channel.publish(Post(text="Test"), "down:1")
    finally:
        await channel.aclose()


async def test_a_webhook_on_the_bot_stops_polling_with_a_clear_permanent_error(
    channel: TelegramChannel, emulator: TelegramEmulator
) -> None:
    emulator.webhook = "https://elsewhere.example/hook"
    with pytest.raises(PermanentError) as caught:
        await channel.fetch_inbound(None)
    assert caught.value.status == 409
    assert "deleteWebhook" in caught.value.message


async def test_a_migrated_chat_names_the_new_id() -> None:
    # Telegram answers this for a group that became a supergroup; the emulator's chats never
    # migrate, so a bare server gives Telegram's exact body.
    async def migrated(_request: web.Request) -> web.Response:
        body = {
            "ok": False,
            "error_code": 400,
            "description": "Bad Request: group chat was upgraded to a supergroup chat",
            "parameters": {"migrate_to_chat_id": -1001234567890},
        }
        return web.json_response(body, status=400)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", migrated)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    settings = TelegramSettings(
        name="t",
        mode=TargetMode.live,
        chat_id="-1001000000009",
        base_url=f"http://127.0.0.1:{runner.addresses[0][1]}",
    )
    channel = TelegramChannel(Target(settings, {"bot_token": SecretStr("1:" + "b" * 35)}))
    try:
        with pytest.raises(PermanentError) as caught:
            await channel.publish(Post(text="Test"), "moved:1")
    finally:
        await channel.aclose()
        await runner.cleanup()
    assert "-1001234567890" in caught.value.message


async def test_no_log_line_carries_the_bot_token(
    emulator: TelegramEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    channel = _channel(emulator)
    try:
        await channel.publish(Post(text="Test"), "log:1")
        await channel.fetch_inbound(None)
    finally:
        await channel.aclose()
    urls = [r.getMessage() for r in caplog.records if r.name in ("httpx", "telegram.Bot")]
    assert any("/bot<bot-token>/sendMessage" in line for line in urls), "httpx logged the call"
    assert all(emulator.token not in record.getMessage() for record in caplog.records)


# --- reconciliation --------------------------------------------------------------------------


async def test_find_published_matches_the_exact_text_only(
    channel: TelegramChannel, emulator: TelegramEmulator
) -> None:
    sent = await channel.publish(Post(text="Evacuate Riverside now"), "exact:1")
    assert await channel.find_published(Post(text="Evacuate Riverside"), "x:1") is None
    found = await channel.find_published(Post(text="Evacuate Riverside now"), "x:1")
    assert found is not None and found.external_id == sent.external_id
    assert found.url == f"https://t.me/{emulator.channel_chat['username']}/{sent.external_id}"


async def test_find_published_remembers_forwards_the_poller_already_confirmed(
    channel: TelegramChannel, emulator: TelegramEmulator
) -> None:
    sent = await channel.publish(Post(text="Evacuate Riverside now"), "seen:1")
    _, cursor = await channel.fetch_inbound(None)
    await channel.fetch_inbound(cursor)  # confirms: Telegram forgets those updates
    assert emulator.updates == []
    found = await channel.find_published(Post(text="Evacuate Riverside now"), "seen:1")
    assert found is not None and found.external_id == sent.external_id


async def test_find_published_sees_what_another_process_confirmed_through_a_shared_inbox(
    emulator: TelegramEmulator,
) -> None:
    # A poller in one process confirms the forward (Telegram forgets it); a dispatcher in
    # another reconciles from the inbox they share (the service's database).
    shared = MemoryUpdateInbox()
    poller, reconciler, alone = _channel(emulator), _channel(emulator), _channel(emulator)
    for adapter in (poller, reconciler):
        adapter.keep_updates_in(shared)
    try:
        sent = await poller.publish(Post(text="Evacuate Riverside now"), "shared:1")
        _, cursor = await poller.fetch_inbound(None)
        await poller.fetch_inbound(cursor)
        assert emulator.updates == []
        found = await reconciler.find_published(Post(text="Evacuate Riverside now"), "shared:1")
        assert found is not None and found.external_id == sent.external_id
        # An adapter with an inbox of its own cannot tell: a retry may post a second copy.
        assert await alone.find_published(Post(text="Evacuate Riverside now"), "shared:1") is None
    finally:
        for adapter in (poller, reconciler, alone):
            await adapter.aclose()


async def test_find_published_sees_past_a_backlog_of_unread_updates(
    channel: TelegramChannel, emulator: TelegramEmulator
) -> None:
    # 250 direct messages nobody polled, then the post: its forward is on getUpdates' third
    # page, beyond the 100 one call returns.
    for number in range(250):
        emulator.public_message(f"message {number}", private=True)
    sent = await channel.publish(Post(text="Evacuate Riverside now"), "deep:1")
    found = await channel.find_published(Post(text="Evacuate Riverside now"), "deep:1")
    assert found is not None and found.external_id == sent.external_id


async def test_comments_a_reconciliation_confirmed_still_reach_the_poller(
    emulator: TelegramEmulator,
) -> None:
    shared = MemoryUpdateInbox()
    poller, reconciler = _channel(emulator), _channel(emulator)
    for adapter in (poller, reconciler):
        adapter.keep_updates_in(shared)
    try:
        original = await reconciler.publish(Post(text="Evacuate"), "confirm:1")
        await emulator.generate_replies(2, "Is Elm St closed?", original.external_id)
        await reconciler.find_published(Post(text="Evacuate"), "confirm:1")
        await reconciler.find_published(Post(text="Evacuate"), "confirm:1")  # confirms them
        assert emulator.updates == []
        messages, _ = await poller.fetch_inbound(None)
        assert [(m.text, m.in_reply_to) for m in messages] == [
            ("Is Elm St closed?", original.external_id)
        ] * 2
    finally:
        for adapter in (poller, reconciler):
            await adapter.aclose()


# --- cancel and correct ----------------------------------------------------------------------


async def test_retract_edits_the_original_and_replies_with_the_cancellation(
    channel: TelegramChannel, emulator: TelegramEmulator
) -> None:
    [post] = channel.render(samples.version(channels=("telegram",)))
    original = await channel.publish(post, "orig:1")
    cancel = samples.version(2, msg_type=MsgType.cancel, channels=("telegram",))
    reply = await channel.retract(original, cancel)
    [edit] = [e.data for e in emulator.effects_of("edit")]
    assert edit["id"] == original.external_id
    assert edit["text"].startswith("CANCEL: All clear")
    assert _posts(emulator)[-1] == {
        "id": reply.external_id,
        "text": edit["text"],
        "reply_to": original.external_id,
        "chat_id": emulator.channel_chat["id"],
    }
    # The discussion group's copy says the same, as Telegram keeps it in step.
    forward_id = emulator.forward_of[int(original.external_id)]
    assert emulator.messages[emulator.group_chat["id"]][forward_id]["text"] == edit["text"]
    # A repeated retract finds the edit already made ("not modified") and still replies.
    await channel.retract(original, cancel)
    assert len(emulator.effects_of("edit")) == 1


async def test_retracting_a_deleted_message_still_sends_the_cancellation(
    channel: TelegramChannel, emulator: TelegramEmulator
) -> None:
    original = await channel.publish(Post(text="Evacuate"), "gone:1")
    del emulator.messages[emulator.channel_chat["id"]][int(original.external_id)]
    cancel = samples.version(2, msg_type=MsgType.cancel, channels=("telegram",))
    reply = await channel.retract(original, cancel)
    assert _posts(emulator)[-1]["id"] == reply.external_id
    assert _posts(emulator)[-1]["reply_to"] is None, "sent on its own, not as a reply"


# --- inbound ---------------------------------------------------------------------------------


async def test_comments_replies_to_comments_and_direct_messages_come_in(
    channel: TelegramChannel, emulator: TelegramEmulator
) -> None:
    original = await channel.publish(Post(text="Evacuate"), "in:1")
    [comment] = await emulator.generate_replies(1, "Is Elm St closed?", original.external_id)
    emulator.public_message("Yes, since 9", reply_to=comment["message_id"])
    emulator.public_message("I need a wheelchair ride", private=True)
    emulator.public_message("", location=(38.05, -121.95))
    messages, cursor = await channel.fetch_inbound(None)
    assert [(m.text, m.in_reply_to) for m in messages] == [
        ("Is Elm St closed?", original.external_id),
        ("Yes, since 9", original.external_id),  # through the comment thread
        ("I need a wheelchair ride", None),
        ("", None),
    ]
    assert (messages[-1].latitude, messages[-1].longitude) == (38.05, -121.95)
    assert messages[0].external_id == f"{emulator.group_chat['id']}:{comment['message_id']}"
    assert (
        messages[0].url == f"https://t.me/{emulator.group_chat['username']}/{comment['message_id']}"
    )
    assert messages[2].raw["chat_type"] == "private"
    again, _ = await channel.fetch_inbound(cursor)
    assert list(again) == []


async def test_messages_numbered_afresh_after_a_quiet_week_still_come_in(
    emulator: TelegramEmulator,
) -> None:
    now = [0.0]
    channel = _channel(emulator)
    channel.keep_updates_in(MemoryUpdateInbox(clock=lambda: now[0]))
    try:
        await channel.publish(Post(text="Evacuate"), "quiet:1")  # its forward stays kept
        emulator.public_message("first", private=True)
        _, cursor = await channel.fetch_inbound(None)
        await channel.fetch_inbound(cursor)
        # A week without updates: Telegram may go on from a random, lower number, which an
        # offset taken from the old numbers would confirm unread.
        now[0] += 7 * 24 * 3600
        emulator._update_ids = itertools.count(1_000)
        emulator.public_message("after the quiet week", private=True)
        messages, cursor = await channel.fetch_inbound(cursor)
        assert [m.text for m in messages] == ["after the quiet week"]
        emulator.public_message("and the next day", private=True)
        messages, _ = await channel.fetch_inbound(cursor)
        assert [m.text for m in messages] == ["and the next day"]
    finally:
        await channel.aclose()


async def test_the_channels_own_copies_never_come_in_as_public_messages(
    channel: TelegramChannel,
) -> None:
    await channel.publish(Post(text="Evacuate"), "own:1")
    await channel.publish(Post(text="Evacuate, part 2"), "own:2")
    messages, cursor = await channel.fetch_inbound(None)
    assert list(messages) == []
    assert cursor is not None


# --- the emulator checks what Telegram checks ------------------------------------------------


async def test_the_emulator_answers_like_the_bot_api(emulator: TelegramEmulator) -> None:
    async with aiohttp.ClientSession() as http:
        base = f"{emulator.url}/bot{emulator.token}"
        async with http.post(f"{base}/sendMessage", json={"chat_id": "@county_alerts_emu"}) as r:
            assert r.status == 400
            assert await r.json() == {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: message text is empty",
            }
        async with http.get(f"{base}/noSuchMethod") as r:
            assert r.status == 404
        forged = f"{emulator.url}/bot{emulator.bot_id}:{'Z' * 35}/getMe"
        async with http.get(forged) as r:
            assert (r.status, (await r.json())["description"]) == (401, "Unauthorized")
        query = {"chat_id": "@county_alerts_emu", "text": "From the query string"}
        async with http.get(f"{base}/sendMessage", params=query) as r:
            assert (await r.json())["result"]["text"] == "From the query string"
        async with http.post(f"{base}/getUpdates", data={"offset": "-1"}) as r:
            [update] = (await r.json())["result"]
            assert update["message"]["is_automatic_forward"] is True


def test_settings_take_a_channel_username_or_id_only() -> None:
    for good in ("@county_alerts", "-1001234567890"):
        assert TelegramSettings(name="t", mode=TargetMode.live, chat_id=good).chat_id == good
    for bad in ("county_alerts", "12345", "@a"):
        with pytest.raises(ValidationError, match="chat_id"):
            TelegramSettings(name="t", mode=TargetMode.live, chat_id=bad)
    assert TelegramChannel.credential_names == ("bot_token",)
