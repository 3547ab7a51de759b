"""When a post may have gone out (a 5xx after the platform created it, a timeout, a worker that
died mid-thread), the next try asks the platform before sending anything again: nothing is
posted twice and nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.targets import ConfiguredTarget, Directory
from channels.base import TargetMode
from channels.emulators.base import Fault, FaultKind
from channels.emulators.x import XEmulator
from channels.x import XChannel
from tests.dispatch.harness import (
    Desk,
    FakeClock,
    Platforms,
    attempt_rows,
    delivery_rows,
    fast_settings,
)


@pytest.mark.parametrize("platform", ["facebook", "sms", "x", "telegram", "mastodon", "webhook"])
async def test_a_post_made_before_a_5xx_is_found_not_posted_again(
    platform: str, desk: Desk, engine: AsyncEngine, platforms: Platforms, clock: FakeClock
) -> None:
    emulator = platforms.emulator(platform)
    emulator.add_fault(Fault(FaultKind.commit_then_error, status=500, method="POST"))
    channels = [platform]
    _alert, version = await desk.release(channels=channels)
    dispatcher = desk.dispatcher(platforms.directory)
    await dispatcher.drain()
    rows = await delivery_rows(engine, version)
    ambiguous = [row for row in rows if row.reconcile_part is not None]
    assert len(ambiguous) == 1 and ambiguous[0].state == "retry_wait"

    clock.advance(5)
    await dispatcher.drain()
    rows = await delivery_rows(engine, version)
    assert {row.state for row in rows} == {"delivered"}
    texts = [(e.data["text"], e.data.get("to")) for e in emulator.effects_of("post")]
    sent = sum(len(row.payload["posts"]) for row in rows)
    assert len(texts) == len(set(texts)) == sent, f"{platform} got a post twice"
    outcomes = [a.outcome for a in await attempt_rows(engine, ambiguous[0].id)]
    # Found part 1; a thread's later parts are then looked up, and sent if not found.
    assert outcomes[:2] == ["ambiguous", "reconciled"] and outcomes[-1] == "delivered"


async def test_a_timeout_is_reconciled_then_sent_once(
    desk: Desk, engine: AsyncEngine, platforms: Platforms, clock: FakeClock
) -> None:
    x = platforms.emulator("x")
    # The platform holds the request and drops it without posting; we give up first.
    x.add_fault(Fault(FaultKind.timeout, delay=3.0, method="POST", path="/2/tweets"))
    _alert, version = await desk.release(channels=["x"])
    dispatcher = desk.dispatcher(platforms.directory, fast_settings(request_timeout_seconds=0.3))
    await dispatcher.drain()
    [row] = await delivery_rows(engine, version)
    assert row.state == "retry_wait" and row.reconcile_part == 1
    clock.advance(5)
    await dispatcher.drain()
    [row] = await delivery_rows(engine, version)
    assert row.state == "delivered"
    texts = [post.data["text"] for post in x.effects_of("post")]
    assert len(texts) == len(set(texts)) == len(row.payload["posts"])
    outcomes = [a.outcome for a in await attempt_rows(engine, row.id)]
    assert outcomes == ["ambiguous", "not_found", "delivered"]


class _StallingX(XEmulator):
    """X that hangs on the third post of the session, as a worker's last moment before dying."""

    def __init__(self) -> None:
        self.stalled = asyncio.Event()
        self.creates = 0
        super().__init__()

    async def _create_tweet(self, request: web.Request, caller: object) -> web.Response:
        self.creates += 1
        if self.creates == 3:
            self.stalled.set()
            await asyncio.Event().wait()  # never answers, never posts
        return await super()._create_tweet(request, caller)  # type: ignore[arg-type]


async def test_a_worker_dying_mid_thread_is_resumed_without_reposting_a_part(
    desk: Desk, engine: AsyncEngine, clock: FakeClock
) -> None:
    x = _StallingX()
    await x.start()
    directory = Directory()
    directory.add(ConfiguredTarget(x.target("x-live", TargetMode.live), XChannel))
    desk.outbox.directory = directory
    settings = fast_settings()
    try:
        _alert, version = await desk.release_long(["x"])
        [row] = await delivery_rows(engine, version)
        parts = len(row.payload["posts"])
        assert parts >= 4

        doomed = desk.dispatcher(directory, settings, worker_id="doomed")
        drained = asyncio.create_task(doomed.drain())
        await asyncio.wait_for(x.stalled.wait(), 10)
        # The worker dies: its tasks stop and nothing more of it reaches the database.
        drained.cancel()
        await doomed.aclose()
        with contextlib.suppress(asyncio.CancelledError):
            await drained
        assert len(x.effects_of("post")) == 2

        survivor = desk.dispatcher(directory, settings, worker_id="survivor")
        await survivor.drain()
        [row] = await delivery_rows(engine, version)
        assert row.state == "in_flight", "claimed back before the lease lapsed"

        clock.advance(settings.worker.lease_seconds)
        await survivor.drain()
        [row] = await delivery_rows(engine, version)
        assert row.state == "delivered"
        posts = x.effects_of("post")
        assert len(posts) == parts, "a part was posted twice or lost"
        assert len({p.data["text"] for p in posts}) == parts
        for previous, post in itertools.pairwise(posts):
            assert post.data["reply_to"] == previous.data["id"], "the thread is broken"
        outcomes = [a.outcome for a in await attempt_rows(engine, row.id)]
        assert outcomes == ["abandoned", "reconciled", "reconciled", "not_found", "delivered"]
    finally:
        await directory.aclose()
        await x.stop()


@pytest.mark.parametrize("posted", [True, False], ids=["it-went-out", "it-did-not"])
async def test_out_of_tries_after_one_that_may_have_posted_it_looks_before_giving_up(
    posted: bool, desk: Desk, engine: AsyncEngine, platforms: Platforms, clock: FakeClock
) -> None:
    sms = platforms.emulator("sms")
    # The one allowed try ends not knowing: the platform posted then failed, or failed alone.
    kind = FaultKind.commit_then_error if posted else FaultKind.server_error
    sms.add_fault(Fault(kind, status=500, method="POST", times=1))
    _alert, version = await desk.release(channels=["sms"])
    dispatcher = desk.dispatcher(platforms.directory, fast_settings(max_attempts=1))
    for _ in range(3):
        await dispatcher.drain()
        clock.advance(30)
    rows = await delivery_rows(engine, version)
    assert rows, "no SMS deliveries were written"
    outcomes = {row.id: [a.outcome for a in await attempt_rows(engine, row.id)] for row in rows}
    unsure = [row for row in rows if "ambiguous" in outcomes[row.id]]
    assert len(unsure) == 1
    [row] = unsure
    # Never dead-lettered "may have posted": a try that only looks settled it.
    assert outcomes[row.id][-2] == ("reconciled" if posted else "not_found")
    if posted:
        assert row.state == "delivered" and row.external_id
    else:
        assert row.state == "dead"
        assert row.last_error.startswith("gave up after 1 try: ")
        assert row.last_error.endswith("; looked: part 1 did not go out")
    to_this_person = [e for e in sms.effects_of("post") if e.data.get("to") == row.recipient]
    assert len(to_this_person) == (1 if posted else 0)
