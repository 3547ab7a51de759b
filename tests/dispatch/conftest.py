"""Fixtures for dispatcher tests: emulators for the eight template channels, a desk, a clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.dispatch.harness import Desk, FakeClock, Platforms, add_contacts, start_platforms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def platforms() -> AsyncIterator[Platforms]:
    started = await start_platforms()
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def desk(engine: AsyncEngine, platforms: Platforms, clock: FakeClock) -> Desk:
    await add_contacts(engine)
    made = Desk(engine, platforms.directory, clock)
    await made.people()
    return made
