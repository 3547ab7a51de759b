"""X reconciliation reads the account's posts back over a time window, page by page through
tweepy against the X emulator, and says "try later" rather than "not found" when it cannot
read them all."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import tweepy.errors

from channels.base import AmbiguousError, Post, Receipt, Target, TransientError
from channels.emulators.base import Fault, FaultKind
from channels.emulators.x import XEmulator
from channels.x import XChannel, XSettings
from channels.x_timeline import PAGE_CAP_CODE
from tests.channels import samples


@pytest.fixture
async def emulator() -> AsyncIterator[XEmulator]:
    emulator = XEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


def _channel(emulator: XEmulator, **settings: Any) -> XChannel:
    target = emulator.target("x-busy", timeout_seconds=2.0)
    assert isinstance(target.settings, XSettings)
    return XChannel(Target(target.settings.model_copy(update=settings), target.credentials))


@pytest.fixture
async def channel(emulator: XEmulator) -> AsyncIterator[XChannel]:
    channel = _channel(emulator)
    yield channel
    await channel.aclose()


def _busy(emulator: XEmulator, count: int, *, at: datetime | None = None) -> list[str]:
    return emulator.seed_posts([f"Road closure update {n} of {count}" for n in range(count)], at=at)


async def _posted_ambiguously(
    channel: XChannel, emulator: XEmulator, post: Post, reply_to: Receipt | None = None
) -> str:
    """Publish `post`; X keeps it but the answer is lost. Its id."""
    emulator.add_fault(Fault(FaultKind.commit_then_error, path="^/2/tweets$"))
    with pytest.raises(AmbiguousError):
        await channel.publish(post, f"k:{post.part}", reply_to=reply_to)
    return str(emulator.effects_of("post")[-1].data["id"])


async def test_a_post_250_posts_back_is_found(channel: XChannel, emulator: XEmulator) -> None:
    [post] = channel.render(samples.version())
    posted = await _posted_ambiguously(channel, emulator, post)
    _busy(emulator, 250)  # three pages of 100 newer than it
    found = await channel.find_published(post, "k:1")
    assert found is not None and found.external_id == posted


async def test_a_thread_part_is_found_when_its_parent_is_on_the_next_page(
    channel: XChannel, emulator: XEmulator
) -> None:
    first, second = channel.render(samples.version(long=True))[:2]
    head = await channel.publish(first, "k:1")
    part = await _posted_ambiguously(channel, emulator, second, reply_to=head)
    _busy(emulator, 99)  # the part ends page one; its parent starts page two
    found = await channel.find_published(second, "k:2")
    assert found is not None and found.external_id == part
    assert found.extra["reply_to"] == head.external_id


async def test_a_thread_part_whose_parent_predates_the_window_is_found(
    channel: XChannel, emulator: XEmulator
) -> None:
    first, second = channel.render(samples.version(long=True))[:2]
    [head] = emulator.seed_posts([first.text], at=datetime.now(UTC) - timedelta(hours=5))
    [part] = emulator.seed_posts([second.text], reply_to=head)
    found = await channel.find_published(second, "k:2")
    assert found is not None and found.external_id == part


async def test_a_post_older_than_the_window_is_not_looked_for(emulator: XEmulator) -> None:
    channel = _channel(emulator, reconcile_window_minutes=180, reconcile_max_pages=1)
    try:
        [post] = channel.render(samples.version())
        long_ago = datetime.now(UTC) - timedelta(hours=4)
        _busy(emulator, 300, at=long_ago)  # three pages the lookup must not read
        emulator.seed_posts([post.text], at=long_ago)  # on page one, were it read
        _busy(emulator, 50)
        # One page covers the window: no page-cap error, and the old copy is not looked at.
        assert await channel.find_published(post, "k:1") is None
    finally:
        await channel.aclose()


async def test_more_pages_than_the_cap_is_a_transient_error_not_not_found(
    emulator: XEmulator,
) -> None:
    channel = _channel(emulator, reconcile_max_pages=2)
    try:
        [post] = channel.render(samples.version())
        await _posted_ambiguously(channel, emulator, post)
        _busy(emulator, 250)
        with pytest.raises(TransientError) as caught:
            await channel.find_published(post, "k:1")
        assert caught.value.code == PAGE_CAP_CODE
        assert not isinstance(caught.value, AmbiguousError)
        # A post within the pages it may read is still found.
        newest = dataclasses.replace(post, text="Road closure update 249 of 250")
        assert await channel.find_published(newest, "k:1") is not None
    finally:
        await channel.aclose()


async def test_retract_deletes_every_part_of_a_thread_with_many_newer_posts(
    channel: XChannel, emulator: XEmulator
) -> None:
    posts = channel.render(samples.version(long=True))
    receipts: list[Receipt] = []
    for post in posts:
        previous = receipts[-1] if receipts else None
        receipts.append(await channel.publish(post, f"t:{post.part}", reply_to=previous))
    _busy(emulator, 250)
    await channel.retract(receipts[0], samples.version(2))
    deleted = [effect.data["id"] for effect in emulator.effects_of("delete")]
    assert sorted(deleted) == sorted(receipt.external_id for receipt in receipts)


# --- the emulator serves the timeline as X does ------------------------------------------------


async def test_the_emulator_filters_the_timeline_by_start_time(
    channel: XChannel, emulator: XEmulator
) -> None:
    _busy(emulator, 5, at=datetime.now(UTC) - timedelta(hours=2))
    recent = _busy(emulator, 3)
    since = datetime.now(UTC) - timedelta(hours=1)
    page = await channel._api().get_users_tweets(
        emulator.account.id, start_time=since, max_results=10, user_auth=True
    )
    assert [tweet["id"] for tweet in page["data"]] == list(reversed(recent))


async def test_the_emulator_refuses_a_start_time_with_milliseconds(
    channel: XChannel, emulator: XEmulator
) -> None:
    with pytest.raises(tweepy.errors.BadRequest, match="start_time"):
        await channel._api().get_users_tweets(
            emulator.account.id, start_time="2026-01-01T00:00:00.000Z", user_auth=True
        )


async def test_the_emulator_serves_only_the_newest_3200_posts(
    channel: XChannel, emulator: XEmulator
) -> None:
    seeded = _busy(emulator, 3250)
    served: list[str] = []
    token: str | None = None
    while True:
        page = await channel._api().get_users_tweets(
            emulator.account.id, max_results=100, pagination_token=token, user_auth=True
        )
        served += [tweet["id"] for tweet in page.get("data", [])]
        token = page["meta"].get("next_token")
        if token is None:
            break
    assert served == list(reversed(seeded))[:3200]
