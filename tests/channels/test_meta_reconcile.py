"""Facebook and Instagram reconciliation read the account's posts back over a time window, page
by page through facebook-sdk against the emulators, and say "try later" rather than "not found"
when they cannot read them all."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from channels.base import AmbiguousError, Channel, PermanentError, Target, TransientError
from channels.emulators.facebook import PAGE_ID, FacebookEmulator
from channels.emulators.instagram import IG_USER_ID, InstagramEmulator
from channels.meta_graph import RECONCILE_PAGE_CAP, GraphClient, MetaSettings, _following
from tests.channels import samples

Meta = FacebookEmulator | InstagramEmulator


@pytest.fixture(params=["facebook", "instagram"])
async def emulator(request: pytest.FixtureRequest) -> AsyncIterator[Meta]:
    emulator: Meta = FacebookEmulator() if request.param == "facebook" else InstagramEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


def _channel(emulator: Meta, **settings: Any) -> Channel:
    target = emulator.target("meta-busy", timeout_seconds=2.0)
    assert isinstance(target.settings, MetaSettings)
    return emulator.channel(Target(target.settings.model_copy(update=settings), target.credentials))


def _busy(emulator: Meta, count: int, *, at: datetime | None = None) -> list[str]:
    return emulator.seed_posts([f"Road closure update {n} of {count}" for n in range(count)], at=at)


async def test_a_post_250_posts_back_is_found(emulator: Meta) -> None:
    channel = _channel(emulator)
    try:
        [post] = channel.render(samples.version(channels=(channel.name,)))
        [posted] = emulator.seed_posts([post.text])
        _busy(emulator, 250)  # three pages of 100 newer than it
        found = await channel.find_published(post, "k:1")
        assert found is not None and found.external_id == posted
        assert found.extra["reconciled"] is True
    finally:
        await channel.aclose()


async def test_a_post_older_than_the_window_is_not_looked_for(emulator: Meta) -> None:
    channel = _channel(emulator, reconcile_window_minutes=180, reconcile_max_pages=1)
    try:
        [post] = channel.render(samples.version(channels=(channel.name,)))
        long_ago = datetime.now(UTC) - timedelta(hours=4)
        _busy(emulator, 300, at=long_ago)  # three pages the lookup must not read
        emulator.seed_posts([post.text], at=long_ago)  # on page one, were it read
        _busy(emulator, 50)
        # One page covers the window: no page-cap error, and the old copy is not looked at.
        assert await channel.find_published(post, "k:1") is None
    finally:
        await channel.aclose()


async def test_more_pages_than_the_cap_is_a_transient_error_not_not_found(emulator: Meta) -> None:
    channel = _channel(emulator, reconcile_max_pages=2)
    try:
        [post] = channel.render(samples.version(channels=(channel.name,)))
        emulator.seed_posts([post.text])
        _busy(emulator, 250)
        with pytest.raises(TransientError) as caught:
            await channel.find_published(post, "k:1")
        assert caught.value.code == RECONCILE_PAGE_CAP
        assert not isinstance(caught.value, AmbiguousError)
        assert emulator.access_token not in caught.value.message
        # A post within the pages it may read is still found.
        newest = dataclasses.replace(post, text="Road closure update 249 of 250")
        assert await channel.find_published(newest, "k:1") is not None
    finally:
        await channel.aclose()


# --- the emulators page and filter as Graph does ------------------------------------------------


def _client(emulator: Meta) -> GraphClient:
    return GraphClient(
        access_token=emulator.access_token,
        app_secret=emulator.app_secret,
        timeout=2.0,
        base_url=emulator.url,
        where="test",
    )


def _edge(emulator: Meta) -> str:
    return f"{PAGE_ID}/posts" if isinstance(emulator, FacebookEmulator) else f"{IG_USER_ID}/media"


async def test_since_and_until_bound_the_edge(emulator: Meta) -> None:
    client = _client(emulator)
    try:
        _busy(emulator, 3, at=datetime.now(UTC) - timedelta(hours=3))
        middle = _busy(emulator, 2, at=datetime.now(UTC) - timedelta(hours=2))
        _busy(emulator, 4)
        since = int((datetime.now(UTC) - timedelta(hours=2, minutes=30)).timestamp())
        until = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        page = await client.get(_edge(emulator), "listing", since=since, until=until)
        assert [item["id"] for item in page["data"]] == list(reversed(middle))
    finally:
        client.close()


async def test_an_unreadable_since_is_graphs_invalid_parameter(emulator: Meta) -> None:
    client = _client(emulator)
    try:
        with pytest.raises(PermanentError, match="since") as caught:
            await client.get(_edge(emulator), "listing", since="last tuesday-ish")
        assert caught.value.code == "100"
    finally:
        client.close()


async def test_paging_by_next_reads_every_post_once(emulator: Meta) -> None:
    client = _client(emulator)
    try:
        seeded = _busy(emulator, 230)
        since = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp())
        params: dict[str, str | int] | None = {"since": since, "limit": 100, "fields": "id"}
        read: list[str] = []
        while params is not None:
            page = await client.get(_edge(emulator), "listing", **params)
            read += [item["id"] for item in page["data"]]
            params = _following(page)
        assert read == list(reversed(seeded))
    finally:
        client.close()


def test_the_next_page_comes_from_paging_next_without_the_token() -> None:
    cursor = {
        "data": [],
        "paging": {
            "cursors": {"after": "QVFI"},
            "next": "https://graph.facebook.com/v21.0/1/posts?access_token=EAAG&limit=100&after=QVFI",
        },
    }
    assert _following(cursor) == {"limit": "100", "after": "QVFI"}
    timed = {
        "data": [],
        "paging": {
            "next": "https://graph.facebook.com/v21.0/1/posts?limit=25&until=1700000000"
            "&__paging_token=enc_AdB&access_token=EAAG&appsecret_proof=abc"
        },
    }
    assert _following(timed) == {"limit": "25", "until": "1700000000", "__paging_token": "enc_AdB"}
    assert _following({"data": [], "paging": {"cursors": {"after": "QVFI"}}}) is None
    assert _following({"data": []}) is None


async def test_lookups_leave_the_event_loop_free(emulator: Meta) -> None:
    """facebook-sdk is synchronous: a long lookup must run in threads, not on the loop."""
    channel = _channel(emulator)
    try:
        [post] = channel.render(samples.version(channels=(channel.name,)))
        _busy(emulator, 450)
        lookup = asyncio.ensure_future(channel.find_published(post, "k:1"))
        ticks = 0
        while not lookup.done():
            ticks += 1
            await asyncio.sleep(0)
        assert await lookup is None
        assert ticks > 5  # the loop kept running while five pages were read
    finally:
        await channel.aclose()
