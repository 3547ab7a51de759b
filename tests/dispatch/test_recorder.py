"""The recorder writes a batch of results only where this worker still holds the lease: a
delivery another worker claimed back (after a stall) keeps its row and gets no try from us, and
the rest of the batch is written."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.dispatch.recorder import Recorder, Result
from broadcaster.storage.schema import deliveries
from tests.dispatch.harness import (
    PHONES,
    Desk,
    FakeClock,
    attempt_rows,
    claim_list,
    delivered_results,
    delivery_rows,
)

WORKER = "recorder-test"
TOKEN = f"{WORKER}/1"


async def _record(engine: AsyncEngine, results: list[Result], clock: FakeClock) -> None:
    recorder = Recorder(engine, WORKER, batch=10, clock=clock)
    for result in results:
        recorder.add(result)
    await recorder.flush()


async def test_a_result_whose_lease_was_taken_over_is_dropped_and_the_rest_written(
    engine: AsyncEngine, desk: Desk, clock: FakeClock
) -> None:
    ours, taken, also_ours = await claim_list(engine, desk, PHONES, TOKEN, clock())
    async with engine.begin() as connection:
        await connection.execute(
            update(deliveries).where(deliveries.c.id == taken).values(lease_owner="other/7")
        )
    clock.advance(2)
    results = await delivered_results(engine, [ours, taken, also_ours], TOKEN, clock())
    await _record(engine, results, clock)

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
