"""The recorder writes a batch of results only where this worker still holds the lease: a
delivery another worker claimed back (after a stall) keeps its row and gets no try from us, and
the rest of the batch is written."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.dispatch import claims
from broadcaster.dispatch.payload_cache import PayloadCache
from broadcaster.dispatch.recorder import AttemptRow, Recorder, Result
from broadcaster.dispatch.states import DeliveryState, Outcome
from broadcaster.storage.schema import deliveries
from channels.base import Receipt
from tests.dispatch.harness import Desk, FakeClock, add_contacts, attempt_rows, delivery_rows

WORKER = "recorder-test"
TOKEN = f"{WORKER}/1"
PHONES = ("+12025550101", "+12025550102", "+12025550103")


async def _claimed_three(engine: AsyncEngine, desk: Desk, clock: FakeClock) -> list[int]:
    await add_contacts(engine, PHONES, ())
    await desk.release(channels=["sms"])
    now = clock()
    async with engine.begin() as connection:
        jobs = await claims.claim(
            connection, "sms-live", 3, TOKEN, now, now + timedelta(seconds=60), PayloadCache()
        )
    return sorted(job.id for job in jobs)


def _delivered(delivery_id: int, version_id: int, clock: FakeClock) -> Result:
    now = clock()
    return Result(
        delivery_id=delivery_id,
        version_id=version_id,
        target="sms-live",
        attempt=1,
        state=DeliveryState.delivered,
        token=TOKEN,
        attempts=[AttemptRow(Outcome.delivered, now)],
        receipts=[Receipt("sms", "sms-live", f"SM{delivery_id}", posted_at=now)],
        delivered_at=now,
    )


async def _results(engine: AsyncEngine, ids: list[int], clock: FakeClock) -> list[Result]:
    versions = {row.id: row.version_id for row in await delivery_rows(engine)}
    return [_delivered(delivery_id, versions[delivery_id], clock) for delivery_id in ids]


async def _record(engine: AsyncEngine, results: list[Result], clock: FakeClock) -> None:
    recorder = Recorder(engine, WORKER, batch=10, clock=clock)
    for result in results:
        recorder.add(result)
    await recorder.flush()


async def test_a_result_whose_lease_was_taken_over_is_dropped_and_the_rest_written(
    engine: AsyncEngine, desk: Desk, clock: FakeClock
) -> None:
    ours, taken, also_ours = await _claimed_three(engine, desk, clock)
    async with engine.begin() as connection:
        await connection.execute(
            update(deliveries).where(deliveries.c.id == taken).values(lease_owner="other/7")
        )
    clock.advance(2)
    await _record(engine, await _results(engine, [ours, taken, also_ours], clock), clock)

    rows = {row.id: row for row in await delivery_rows(engine)}
    for delivery_id in (ours, also_ours):
        row = rows[delivery_id]
        assert (row.state, row.lease_owner, row.external_id) == (
            "delivered",
            None,
            f"SM{delivery_id}",
        )
        assert row.delivered_at == clock()
    assert (rows[taken].state, rows[taken].lease_owner) == ("in_flight", "other/7")
    tries = await attempt_rows(engine)
    assert sorted(t.delivery_id for t in tries) == [ours, also_ours]
    for attempt in tries:
        assert (attempt.number, attempt.worker, attempt.outcome) == (1, WORKER, "delivered")
        assert attempt.started_at == attempt.finished_at == clock()
