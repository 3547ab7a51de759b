"""The version cache: a release's tries, all starting at once, read their version once."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.dispatch.versions import VersionCache
from tests.dispatch.harness import Desk

PUBLIC_BASE = "https://alerts.example.org"


def _count_version_reads(engine: AsyncEngine) -> tuple[list[str], Any]:
    reads: list[str] = []

    def count(_c: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if "FROM alert_versions" in statement:
            reads.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    return reads, count


async def test_tries_asking_at_once_share_one_read(engine: AsyncEngine, desk: Desk) -> None:
    _alert, version_id = await desk.release(channels=["x", "sms"])
    cache = VersionCache(engine, PUBLIC_BASE)
    reads, count = _count_version_reads(engine)
    try:
        answers = await asyncio.gather(*(cache.get(version_id) for _ in range(8)))
        again = await cache.get(version_id)  # remembered: a released version never changes
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert len(reads) == 1
    assert all(answer is answers[0] for answer in answers) and again is answers[0]
    assert answers[0] is not None and answers[0].released
    assert answers[0].version is not None and answers[0].version.version_id == version_id


async def test_one_asker_stopping_leaves_the_others_their_answer(
    engine: AsyncEngine, desk: Desk
) -> None:
    _alert, version_id = await desk.release(channels=["x"])
    cache = VersionCache(engine, PUBLIC_BASE)
    stopped = asyncio.ensure_future(cache.get(version_id))
    waiting = asyncio.ensure_future(cache.get(version_id))
    await asyncio.sleep(0)  # both are waiting for the one read
    stopped.cancel()
    info = await waiting
    assert stopped.cancelled()
    assert info is not None and info.released


async def test_a_read_that_failed_is_tried_again_by_the_next_asker(
    engine: AsyncEngine, desk: Desk
) -> None:
    _alert, version_id = await desk.release(channels=["x"])
    cache = VersionCache(engine, PUBLIC_BASE)
    failing = True

    def refuse(*_args: Any) -> None:
        if failing:
            raise ConnectionError("the database went away")

    event.listen(engine.sync_engine, "before_cursor_execute", refuse)
    try:
        answers = await asyncio.gather(
            cache.get(version_id), cache.get(version_id), return_exceptions=True
        )
        assert all(isinstance(answer, ConnectionError) for answer in answers)
        failing = False
        info = await cache.get(version_id)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", refuse)
    assert info is not None and info.released


async def test_an_unknown_version_is_none(engine: AsyncEngine, desk: Desk) -> None:
    cache = VersionCache(engine, PUBLIC_BASE)
    assert await cache.get(987_654) is None
