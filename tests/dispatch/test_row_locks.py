"""On PostgreSQL, transactions that lock many deliveries rows take them in id order, so a lease
renewal and a write of results over the same in-flight rows never deadlock (PostgreSQL would
break the circle only after a second, failing one of them: a big list stalled, and its claims
failed with "deadlock detected"). Each test holds the lowest row from outside, lets the
statement under test wait for it, and checks that meanwhile it holds none of the higher rows:
it waits at its first row, not half-way.

SQLite has no row locks (one writer at a time): nothing to order there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from broadcaster.dispatch import claims
from broadcaster.dispatch.recorder import Recorder
from broadcaster.storage.schema import deliveries
from tests.dispatch.harness import (
    PHONES,
    Desk,
    FakeClock,
    claim_list,
    delivered_results,
    delivery_rows,
)

WORKER = "lock-test"
TOKEN = f"{WORKER}/1"
WAIT = 10.0  # seconds; bounds a broken test only


@pytest.fixture
async def in_flight(engine: AsyncEngine, desk: Desk, clock: FakeClock) -> list[int]:
    """Three SMS deliveries claimed by WORKER, the lowest id stored last in the table (as rows
    updated later are), so that a statement taking rows in the table's order reaches it last."""
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks exist on PostgreSQL only; SQLite has one writer at a time")
    now = clock()
    ids = await claim_list(engine, desk, PHONES, TOKEN, now)
    assert len(ids) == 3
    async with engine.begin() as connection:
        await connection.execute(
            update(deliveries).where(deliveries.c.id == ids[0]).values(updated_at=now)
        )
        in_table_order = list(await connection.scalars(text("SELECT id FROM deliveries")))
    assert in_table_order.index(ids[0]) > in_table_order.index(ids[2])  # the premise
    return ids


@pytest.fixture
async def scanning(engine: AsyncEngine, in_flight: list[int]) -> AsyncIterator[AsyncEngine]:
    """An engine on the same database whose plans read the table in its own order, not by an
    index (which, on a table this small, would happen to go by id): as a big table's plans may."""
    scanning = create_async_engine(
        engine.url,
        connect_args={"server_settings": {"enable_indexscan": "off", "enable_bitmapscan": "off"}},
    )
    yield scanning
    await scanning.dispose()


@pytest.fixture
async def lowest_held(engine: AsyncEngine, in_flight: list[int]) -> AsyncIterator[asyncio.Event]:
    """The lowest row, locked by another transaction until the event is set."""
    release = asyncio.Event()
    locked = asyncio.Event()

    async def hold() -> None:
        async with engine.begin() as connection:
            await connection.execute(
                select(deliveries.c.id).where(deliveries.c.id == in_flight[0]).with_for_update()
            )
            locked.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.wait_for(locked.wait(), WAIT)
    yield release
    release.set()
    await holder


@dataclass
class Scene:
    in_flight: list[int]  # lowest id first
    scanning: AsyncEngine  # runs the statement under test
    lowest_held: asyncio.Event  # set: the outside transaction lets the lowest row go


@pytest.fixture
def scene(in_flight: list[int], scanning: AsyncEngine, lowest_held: asyncio.Event) -> Scene:
    return Scene(in_flight, scanning, lowest_held)


async def _waiting_for_a_row(engine: AsyncEngine) -> None:
    """Until some transaction waits for a row lock."""
    async with asyncio.timeout(WAIT):
        while True:
            async with engine.connect() as connection:
                waiting = await connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                )
            if waiting:
                return
            await asyncio.sleep(0.02)


async def _free(engine: AsyncEngine, ids: list[int]) -> bool:
    """Whether nobody holds any of these rows (locked and let go again at once)."""
    async with engine.connect() as connection:
        try:
            await connection.execute(
                select(deliveries.c.id).where(deliveries.c.id.in_(ids)).with_for_update(nowait=True)
            )
        except DBAPIError as error:
            if "could not obtain lock" not in str(error):
                raise
            return False
        finally:
            await connection.rollback()
    return True


async def _waits_at_its_first_row(
    engine: AsyncEngine, scene: Scene, statement: Callable[[AsyncConnection], Awaitable[object]]
) -> object:
    async def run() -> object:
        async with scene.scanning.begin() as connection:
            return await statement(connection)

    running = asyncio.create_task(run())
    await _waiting_for_a_row(engine)
    assert not running.done()
    assert await _free(engine, scene.in_flight[1:]), "it took higher rows before the lowest"
    scene.lowest_held.set()
    return await asyncio.wait_for(running, WAIT)


async def test_a_lease_renewal_takes_its_rows_in_id_order(
    engine: AsyncEngine, scene: Scene, clock: FakeClock
) -> None:
    until = clock() + timedelta(seconds=90)
    kept = await _waits_at_its_first_row(
        engine, scene, lambda connection: claims.renew(connection, WORKER, until)
    )
    assert kept == set(scene.in_flight)
    assert {row.lease_expires_at for row in await delivery_rows(engine)} == {until}


async def test_a_write_of_results_takes_its_rows_in_id_order(
    engine: AsyncEngine, scene: Scene, clock: FakeClock
) -> None:
    recorder = Recorder(scene.scanning, WORKER, batch=10, clock=clock)
    # Results arrive in any order.
    for result in await delivered_results(engine, scene.in_flight[::-1], TOKEN, clock()):
        recorder.add(result)

    async def flush(_connection: AsyncConnection) -> None:
        await recorder.flush()  # its own transaction: the one under test

    await _waits_at_its_first_row(engine, scene, flush)
    states = {row.id: row.state for row in await delivery_rows(engine)}
    assert [states[i] for i in scene.in_flight] == ["delivered"] * 3
