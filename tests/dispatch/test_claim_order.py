"""A claim takes a target's longest-due deliveries first, whatever their state: a lapsed lease
(its worker died), then retries and new deliveries by when they fell due; never one not yet
due. On SQLite the three states are read by one statement (claims wait on the one connection)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.dispatch import claims
from broadcaster.dispatch.claims import Claimed
from broadcaster.dispatch.payload_cache import PayloadCache
from broadcaster.storage.schema import deliveries
from tests.dispatch.harness import Desk, FakeClock, add_contacts, attempt_rows, delivery_rows

SIX_PHONES = tuple(f"+1202555010{n}" for n in range(1, 7))


async def _claim(engine: AsyncEngine, limit: int, token: str, now: datetime) -> list[Claimed]:
    """One claim of the SMS list's target, in a transaction of its own."""
    async with engine.begin() as connection:
        return await claims.claim(
            connection, "sms-live", limit, token, now, now + timedelta(seconds=60), PayloadCache()
        )


async def _list_of_six(desk: Desk, engine: AsyncEngine) -> list[int]:
    await add_contacts(engine, SIX_PHONES, ())
    _alert, version_id = await desk.release(channels=["sms"])
    rows = [row for row in await delivery_rows(engine, version_id) if row.target == "sms-live"]
    assert len(rows) == 6
    return [row.id for row in rows]


async def test_the_longest_due_go_first_across_states(
    engine: AsyncEngine, desk: Desk, clock: FakeClock
) -> None:
    lapsed, early_retry, queued_1, later_retry, queued_2, queued_3 = await _list_of_six(
        desk, engine
    )
    now = clock()
    async with engine.begin() as connection:
        await connection.execute(
            update(deliveries)
            .where(deliveries.c.id == lapsed)
            .values(
                state="in_flight",
                lease_owner="another-worker/4",
                lease_expires_at=now - timedelta(seconds=5),
                next_attempt_at=None,
                attempts=1,
            )
        )
        for delivery_id, due in ((early_retry, -60), (later_retry, 60)):
            await connection.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(state="retry_wait", next_attempt_at=now + timedelta(seconds=due))
            )
        for delivery_id in (queued_1, queued_2, queued_3):
            await connection.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(next_attempt_at=now - timedelta(seconds=1))
            )

    picks: list[str] = []

    def count_picks(_c: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            picks.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count_picks)
    try:
        first = await _claim(engine, 3, "test-worker/1", now)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count_picks)
    assert [job.id for job in first] == sorted([lapsed, early_retry, queued_1])
    by_id = {job.id: job for job in first}
    assert by_id[lapsed].previous_owner == "another-worker"
    assert by_id[lapsed].reconcile_part == 1  # it may have gone out: looked up first
    if engine.dialect.name == "sqlite":
        # The three states in one statement (the payloads are read once, and cached after).
        assert len([sql for sql in picks if "deliveries.state" in sql]) == 1

    rest = await _claim(engine, 10, "test-worker/2", now)
    # What is left and due: the two queued ones; the retry due in a minute stays where it is.
    assert [job.id for job in rest] == [queued_2, queued_3]
    states = {row.id: row.state for row in await delivery_rows(engine)}
    assert states[later_retry] == "retry_wait"
    abandoned = [row for row in await attempt_rows(engine, lapsed) if row.outcome == "abandoned"]
    assert len(abandoned) == 1 and abandoned[0].worker == "another-worker"


async def test_a_claim_returns_the_longest_due_first_when_the_limit_cuts(
    engine: AsyncEngine, desk: Desk, clock: FakeClock
) -> None:
    ids = await _list_of_six(desk, engine)
    now = clock()
    async with engine.begin() as connection:
        # The newest delivery fell due first (a retry), the others in id order after it.
        await connection.execute(
            update(deliveries)
            .where(deliveries.c.id == ids[-1])
            .values(state="retry_wait", next_attempt_at=now - timedelta(seconds=30))
        )
    taken = await _claim(engine, 2, "test-worker/1", now)
    assert {job.id for job in taken} == {ids[-1], ids[0]}
