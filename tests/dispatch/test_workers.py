"""Workers serving for real (`run`, not `drain`): several share one outbox without claiming a
delivery twice, PostgreSQL wakes them with NOTIFY, and stopping hands back what was not started
and records what was in flight as "may have posted"."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.dispatch.dispatcher import Dispatcher
from broadcaster.dispatch.wake import Wakeup
from broadcaster.outbox import Outbox
from broadcaster.settings import ConfigError, Settings, WorkerSettings
from channels.emulators.base import Fault, FaultKind
from tests.dispatch.harness import (
    PUBLIC_BASE,
    Desk,
    Platforms,
    add_contacts,
    delivery_rows,
    fast_settings,
)


async def _until_settled(engine: AsyncEngine, within: float = 20.0) -> None:
    """Other tasks do the work: look at the outbox until nothing is left open."""
    deadline = time.monotonic() + within
    rows = await delivery_rows(engine)
    while any(row.state not in ("delivered", "dead") for row in rows):
        assert time.monotonic() < deadline, [(r.target, r.state) for r in rows]
        await asyncio.sleep(0.05)
        rows = await delivery_rows(engine)


async def test_two_workers_share_one_outbox_and_never_claim_the_same_delivery(
    desk: Desk, engine: AsyncEngine, platforms: Platforms
) -> None:
    settings = fast_settings(poll_interval_seconds=0.05, channels={"sms": {"concurrency": 2}})
    workers = [
        Dispatcher(
            engine,
            platforms.directory,
            settings,
            worker_id=f"worker-{n}",
            public_base=PUBLIC_BASE,
        )
        for n in range(2)
    ]
    stop = asyncio.Event()
    running = [asyncio.create_task(worker.run(stop)) for worker in workers]
    try:
        for n in range(8):
            await desk.release(channels=["sms", "mastodon", "webhook"], area=f"Block {n}")
        await _until_settled(engine)
    finally:
        stop.set()
        await asyncio.gather(*running)
    rows = await delivery_rows(engine)
    assert len(rows) == 8 * 5
    assert {row.state for row in rows} == {"delivered"}
    assert {row.attempts for row in rows} == {1}, "a delivery was claimed twice"
    for name in ("sms", "mastodon", "webhook"):
        texts = [(e.data["text"], e.data.get("to")) for e in platforms.posts(name)]
        assert len(texts) == len(set(texts)), name


async def test_an_alert_released_during_a_long_list_goes_out_at_once(
    desk: Desk, engine: AsyncEngine, platforms: Platforms
) -> None:
    # A busy lane's rounds skip the quiet lanes; a release must still be looked for at once,
    # not at the next poll (half a minute here).
    await add_contacts(engine, [f"+1202555{n:04d}" for n in range(600)], [])
    settings = Settings(
        worker=WorkerSettings(lease_seconds=60.0),
        dispatch=fast_settings(
            poll_interval_seconds=30.0, claim_batch=20, channels={"sms": {"concurrency": 2}}
        ).dispatch,
    )
    worker = desk.dispatcher(platforms.directory, settings)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        _alert, the_list = await desk.release(channels=["sms"], area="The whole county")
        for _ in range(1000):
            if len(platforms.posts("sms")) >= 50:  # well under way
                break
            await asyncio.sleep(0.01)
        _alert, urgent = await desk.release(channels=["mastodon"], area="Riverside")
        deadline = time.monotonic() + 10.0
        while not platforms.posts("mastodon"):
            assert time.monotonic() < deadline, "the second alert waited for the list"
            await asyncio.sleep(0.01)
        open_sms = [r for r in await delivery_rows(engine, the_list) if r.state != "delivered"]
        assert open_sms, "the list was over before the second alert went out"
        await _until_settled(engine, within=60.0)
    finally:
        stop.set()
        await running
    assert {row.state for row in await delivery_rows(engine, urgent)} == {"delivered"}
    assert len(platforms.posts("sms")) == 600


async def test_postgresql_workers_are_woken_by_notify(
    desk: Desk, engine: AsyncEngine, platforms: Platforms
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite has one process and a shared Wakeup")
    # Polling every half minute: only the notification can explain a prompt delivery.
    settings = Settings(
        worker=WorkerSettings(lease_seconds=60.0),
        dispatch=fast_settings(poll_interval_seconds=30.0).dispatch,
    )
    worker = Dispatcher(
        engine, platforms.directory, settings, worker_id="listener", public_base=PUBLIC_BASE
    )
    # The releasing side has a Wakeup of its own, as a web process separate from the worker.
    desk.outbox = Outbox(platforms.directory, public_base=PUBLIC_BASE, wake=Wakeup())
    desk.service.on_release = desk.outbox.on_release
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0.5)  # listening
        await desk.release(channels=["mastodon"])
        await _until_settled(engine, within=10.0)
    finally:
        stop.set()
        await running


async def test_stopping_hands_back_what_never_started_and_keeps_what_was_in_flight(
    desk: Desk, engine: AsyncEngine, platforms: Platforms
) -> None:
    webhook = platforms.emulator("webhook")
    # The partner hangs on the first request; the others wait for its one slot.
    webhook.add_fault(Fault(FaultKind.timeout, delay=30.0, method="POST"))
    settings = Settings(
        worker=WorkerSettings(lease_seconds=4.0, heartbeat_seconds=0.5),  # 2 s to finish
        dispatch=fast_settings(
            request_timeout_seconds=1.0, channels={"webhook": {"concurrency": 1}}
        ).dispatch,
    )
    worker = Dispatcher(
        engine, platforms.directory, settings, worker_id="leaving", public_base=PUBLIC_BASE
    )
    for n in range(3):
        await desk.release(channels=["webhook"], area=f"Block {n}")
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    for _ in range(200):
        if webhook.effects_of("fault"):
            break
        await asyncio.sleep(0.05)
    stop.set()  # SIGTERM
    await asyncio.wait_for(running, 30)
    rows = await delivery_rows(engine)
    in_flight = [row for row in rows if row.reconcile_part is not None]
    handed_back = [row for row in rows if row.reconcile_part is None]
    assert len(in_flight) == 1 and in_flight[0].state == "retry_wait"
    assert in_flight[0].attempts == 1  # it was tried: the next try looks before sending
    assert [(row.state, row.attempts, row.lease_owner) for row in handed_back] == [
        ("queued", 0, None)
    ] * 2


def test_a_lease_shorter_than_a_request_is_refused_at_start(platforms: Platforms) -> None:
    settings = Settings(
        worker=WorkerSettings(lease_seconds=10.0, heartbeat_seconds=2.0),
        dispatch=fast_settings(request_timeout_seconds=15.0).dispatch,
    )
    with pytest.raises(ConfigError, match=r"worker\.lease_seconds = 10 is too short"):
        Dispatcher(
            None,  # type: ignore[arg-type]  # refused before the engine is used
            platforms.directory,
            settings,
            worker_id="w",
            public_base=PUBLIC_BASE,
        )


async def test_a_hanging_platform_holds_up_no_other(
    desk: Desk, engine: AsyncEngine, platforms: Platforms
) -> None:
    mastodon = platforms.emulator("mastodon")
    # Every post to Mastodon hangs for longer than this test waits.
    mastodon.add_fault(Fault(FaultKind.timeout, delay=30.0, method="POST", times=0))
    worker = Dispatcher(
        engine,
        platforms.directory,
        Settings(
            worker=WorkerSettings(lease_seconds=6.0, heartbeat_seconds=0.5),  # 3 s to stop
            dispatch=fast_settings(channels={"mastodon": {"concurrency": 1}}).dispatch,
        ),
        worker_id="busy",
        public_base=PUBLIC_BASE,
    )
    for n in range(5):
        await desk.release(channels=["mastodon", "webhook", "sms"], area=f"Block {n}")
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        deadline = time.monotonic() + 10
        while True:  # the other platforms' deliveries all go out while Mastodon hangs
            rows = await delivery_rows(engine)
            others = [row for row in rows if row.channel != "mastodon"]
            if all(row.state == "delivered" for row in others):
                break
            assert time.monotonic() < deadline, [(r.target, r.state) for r in others]
            await asyncio.sleep(0.05)
        assert not mastodon.effects_of("post")
    finally:
        mastodon.faults.clear()
        stop.set()
        await asyncio.wait_for(running, 30)
