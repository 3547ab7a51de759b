"""The outbox at release: one delivery per target and recipient, in the approving transaction,
exercise alerts on exercise targets only, paused targets held, nothing silently dropped."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.errors import WorkflowError
from broadcaster import contacts
from broadcaster.storage.schema import channel_state
from tests.dispatch.harness import EMAILS, PHONES, Desk, Platforms, delivery_rows

ACCOUNT_TARGETS = {"x", "facebook", "mastodon", "telegram", "webhook", "cap"}


async def test_release_writes_one_delivery_per_live_target_and_recipient(
    desk: Desk, engine: AsyncEngine
) -> None:
    _alert, version = await desk.release()
    rows = await delivery_rows(engine, version)
    by_target: dict[str, list[str | None]] = {}
    for row in rows:
        by_target.setdefault(row.target, []).append(row.recipient)
    assert {f"{name}-live" for name in ACCOUNT_TARGETS} <= set(by_target)
    assert sorted(map(str, by_target["sms-live"])) == sorted(PHONES)
    assert sorted(map(str, by_target["email-live"])) == sorted(EMAILS)
    assert all(row.target_mode == "live" and row.state == "queued" for row in rows)
    assert len({row.idempotency_key for row in rows}) == len(rows) == 12
    assert all(row.payload["posts"] and row.payload["mode"] == "live" for row in rows)


async def test_an_exercise_reaches_exercise_targets_only(desk: Desk, engine: AsyncEngine) -> None:
    _alert, version = await desk.release(exercise=True)
    rows = await delivery_rows(engine, version)
    assert len(rows) == 12
    assert {row.target.rsplit("-", 1)[1] for row in rows} == {"exercise"}
    assert all("EXERCISE" in row.payload["posts"][0]["text"] for row in rows)


async def test_fifty_concurrent_approvals_write_one_set(desk: Desk, engine: AsyncEngine) -> None:
    assert desk.officer is not None
    content = desk.service.from_template("boil-water", desk.values("boil-water", "Hill"), None)
    drafted = await desk.service.draft(desk.officer, content)
    await desk.service.submit(desk.officer, drafted.alert_id)

    async def approve() -> bool:
        try:
            await desk.approve(drafted.alert_id)
        except WorkflowError:
            return False
        return True

    outcomes = await asyncio.gather(*(approve() for _ in range(50)))
    assert outcomes.count(True) == 1
    assert len(await delivery_rows(engine)) == 12


async def test_went_out_answers_from_the_deliveries(desk: Desk, engine: AsyncEngine) -> None:
    _alert, version = await desk.release()
    async with engine.connect() as connection:
        assert not await desk.outbox.went_out(connection, version)
    await desk.dispatcher(desk.outbox.directory).drain()
    async with engine.connect() as connection:
        assert await desk.outbox.went_out(connection, version)


async def test_opted_out_numbers_get_nothing(desk: Desk, engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await contacts.opt_out(connection, PHONES[0], source="keyword STOP")
    _alert, version = await desk.release(channels=["sms"])
    rows = await delivery_rows(engine, version)
    assert sorted(str(row.recipient) for row in rows) == sorted(PHONES[1:])


async def test_a_paused_target_is_held_at_release(desk: Desk, engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            channel_state.insert().values(
                channel="x", target="x-live", paused=True, breaker_state="closed"
            )
        )
    _alert, version = await desk.release(channels=["x", "mastodon"])
    states = {row.target: row.state for row in await delivery_rows(engine, version)}
    assert states == {"x-live": "held", "mastodon-live": "queued"}


async def test_a_missing_contact_list_is_a_visible_dead_delivery(
    desk: Desk, engine: AsyncEngine, platforms: Platforms
) -> None:
    configured = platforms.directory.targets["sms-live"]
    platforms.directory.targets["sms-live"] = type(configured)(
        configured.target, configured.channel_class, ("nobody-imported-this",)
    )
    _alert, version = await desk.release(channels=["sms"])
    [row] = await delivery_rows(engine, version)
    assert row.state == "dead"
    assert "nobody-imported-this" in row.last_error
