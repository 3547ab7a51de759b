"""Fan-out through the real adapters to the emulators: every channel gets exactly its post, an
exercise never touches a live account, and an Update or Cancel reaches everything the original
reached, while what had not gone out yet is never sent."""

from __future__ import annotations

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.dispatch import control
from broadcaster.dispatch.payload import post_from_json
from broadcaster.storage.schema import alert_versions, deliveries
from channels.base import Post
from tests.dispatch.harness import EIGHT, Desk, FakeClock, Platforms, delivery_rows

WHO = control.Who("admin", None, "test")


async def _version_state(engine: AsyncEngine, version_id: int) -> str:
    async with engine.connect() as connection:
        state = await connection.scalar(
            select(alert_versions.c.state).where(alert_versions.c.id == version_id)
        )
    return str(state)


async def test_every_channel_gets_exactly_the_rendered_post_with_a_link(
    desk: Desk, engine: AsyncEngine, platforms: Platforms
) -> None:
    _alert, version = await desk.release()
    await desk.dispatcher(platforms.directory).drain()
    rows = await delivery_rows(engine, version)
    assert {row.state for row in rows} == {"delivered"}, [(r.target, r.last_error) for r in rows]
    for row in rows:
        sent = [e.data["text"] for e in platforms.posts(row.channel)]
        for post in row.payload["posts"]:
            assert post["text"] in sent, f"{row.target}: post not on the platform"
        assert row.external_id
    linked = {row.channel for row in rows if row.external_url}
    assert {"x", "facebook", "mastodon", "telegram"} <= linked
    for name in EIGHT:  # one post per recipient (or per account): nothing twice
        texts = [(e.data["text"], e.data.get("to")) for e in platforms.posts(name)]
        assert len(texts) == len(set(texts)), name
        assert not platforms.posts(name, "exercise")
    assert await _version_state(engine, version) == "completed"


async def test_an_exercise_never_touches_a_live_account(
    desk: Desk, engine: AsyncEngine, platforms: Platforms
) -> None:
    _alert, version = await desk.release(exercise=True)
    await desk.dispatcher(platforms.directory).drain()
    assert {row.state for row in await delivery_rows(engine, version)} == {"delivered"}
    for name in EIGHT:
        assert platforms.posts(name, "exercise"), name
        assert not platforms.posts(name, "live"), name


async def test_the_dispatcher_refuses_an_exercise_row_aimed_at_a_live_target(
    desk: Desk, engine: AsyncEngine, platforms: Platforms
) -> None:
    """The outbox never writes such a row; if one appears anyway, it is not sent."""
    _alert, version = await desk.release(exercise=True, channels=["mastodon"])
    async with engine.begin() as connection:
        await connection.execute(
            deliveries.update()
            .where(deliveries.c.version_id == version)
            .values(target="mastodon-live", target_mode="live")
        )
    await desk.dispatcher(platforms.directory).drain()
    [row] = await delivery_rows(engine, version)
    assert row.state == "dead"
    assert "exercise targets only" in row.last_error
    assert not platforms.posts("mastodon", "live")
    assert not platforms.posts("mastodon", "exercise")


async def test_a_cancel_supersedes_what_has_not_gone_out_and_it_is_never_sent(
    desk: Desk, engine: AsyncEngine, platforms: Platforms, clock: FakeClock
) -> None:
    async with engine.begin() as connection:
        await control.pause(connection, platforms.directory, "x-live", WHO, "drill", clock())
    alert, original = await desk.release(channels=["x", "mastodon"])
    dispatcher = desk.dispatcher(platforms.directory)
    await dispatcher.drain()  # mastodon goes out; x is held
    states = {row.target: row.state for row in await delivery_rows(engine, original)}
    assert states == {"x-live": "held", "mastodon-live": "delivered"}

    cancel = await desk.cancel(alert)
    states = {row.target: row.state for row in await delivery_rows(engine, original)}
    assert states == {"x-live": "superseded", "mastodon-live": "delivered"}
    retractions = await delivery_rows(engine, cancel)
    assert [(r.target, r.kind) for r in retractions] == [("mastodon-live", "retract")]

    async with engine.begin() as connection:
        await control.resume(connection, platforms.directory, "x-live", WHO, clock())
    await dispatcher.drain()
    assert not platforms.posts("x"), "a superseded delivery was sent after all"
    [retraction] = await delivery_rows(engine, cancel)
    assert retraction.state == "delivered"
    mastodon = platforms.emulator("mastodon")
    [original_post, reply] = mastodon.effects_of("post")
    assert reply.data["reply_to"] == original_post.data["id"]
    assert "CANCELLED" in reply.data["text"]
    assert await _version_state(engine, cancel) == "completed"


async def test_an_update_reaches_every_target_and_recipient_the_original_reached(
    desk: Desk, engine: AsyncEngine, platforms: Platforms
) -> None:
    alert, original = await desk.release()
    dispatcher = desk.dispatcher(platforms.directory)
    await dispatcher.drain()
    before = {name: len(platforms.emulator(name).effects) for name in EIGHT}

    update = await desk.update(alert)
    rows = await delivery_rows(engine, update)
    reached = {(r.target, r.recipient) for r in await delivery_rows(engine, original)}
    assert {(r.target, r.recipient) for r in rows} == reached
    assert {r.kind for r in rows} == {"retract"}
    await dispatcher.drain()
    rows = await delivery_rows(engine, update)
    assert {r.state for r in rows} == {"delivered"}, [(r.target, r.last_error) for r in rows]
    assert all(r.retracts_delivery_id is not None for r in rows)
    for name in EIGHT:
        assert len(platforms.emulator(name).effects) > before[name], f"{name} got no correction"
    sms_texts = [e.data["text"] for e in platforms.posts("sms")]
    assert sum("CORRECTION" in text for text in sms_texts) == 3  # each person, once

    cancel = await desk.cancel(alert)
    await dispatcher.drain()
    rows = await delivery_rows(engine, cancel)
    assert len(rows) == len(reached)
    assert {r.state for r in rows} == {"delivered"}, [(r.target, r.last_error) for r in rows]
    # The cancel retracts what the update put out, the latest thing on each target.
    update_ids = {r.id for r in await delivery_rows(engine, update)}
    assert {r.retracts_delivery_id for r in rows} <= update_ids


async def test_a_post_the_platform_has_but_we_cannot_find_is_still_cancelled(
    desk: Desk, engine: AsyncEngine, platforms: Platforms
) -> None:
    """X refuses the text as a duplicate, yet it is not among the account's top-level posts
    (here: it already stands as a reply). The delivery is dead, but counts as gone out: the
    Cancel still reaches X, as a post of its own."""
    alert, original = await desk.release(channels=["x"])
    [row] = await delivery_rows(engine, original)
    first = post_from_json(row.payload["posts"][0])
    x = platforms.directory.adapter("x-live")
    elsewhere = await x.publish(Post(text="An unrelated post from the county."), "setup:1")
    await x.publish(first, "setup:2", reply_to=elsewhere)  # the same words, as a reply
    dispatcher = desk.dispatcher(platforms.directory)
    await dispatcher.drain()
    [row] = await delivery_rows(engine, original)
    assert row.state == "dead" and "duplicate" in row.last_error
    assert row.reconcile_part == 1  # "may have gone out"

    cancel = await desk.cancel(alert)
    await dispatcher.drain()
    [retraction] = await delivery_rows(engine, cancel)
    assert retraction.state == "delivered", retraction.last_error
    assert any("CANCELLED" in post.data["text"] for post in platforms.posts("x"))


async def test_a_version_is_not_asked_about_while_its_deliveries_are_still_held(
    desk: Desk, engine: AsyncEngine, platforms: Platforms
) -> None:
    """Whether a version is finished is asked of the database only once this worker holds
    none of its deliveries (asking meant reading a whole list's states every second); then
    it is completed."""
    _alert, version = await desk.release(channels=["sms"])
    dispatcher = desk.dispatcher(platforms.directory)
    assert await dispatcher.claim_round() == 3
    dispatcher._unsettled.add(version)
    asked: list[str] = []

    def count(_c: object, _cursor: object, statement: str, *_rest: object) -> None:
        asked.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        await dispatcher._settle()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert asked == []
    assert await _version_state(engine, version) == "released"

    await dispatcher.tries.join()
    await dispatcher.recorder.flush()
    await dispatcher._settle()
    assert await _version_state(engine, version) == "completed"
